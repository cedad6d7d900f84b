from __future__ import annotations

import numpy as np
import pytest

from telepresence.stamp import draw_seq, read_seq


@pytest.mark.parametrize("width", [64, 256, 512])
@pytest.mark.parametrize("seq", [0, 1, 123456, 2**32 - 1])
def test_stamped_seq_survives_noise(width: int, seq: int) -> None:
    rgb = np.full((width, width, 3), 200, np.uint8)
    draw_seq(rgb, seq)
    luma = rgb[..., 0].astype(float) + np.random.default_rng(0).normal(0, 12, (width, width))
    assert read_seq(np.clip(luma, 0, 255).astype(np.uint8)) == seq


def test_unstamped_frame_reads_none() -> None:
    assert read_seq(np.full((64, 64), 128, np.uint8)) is None
