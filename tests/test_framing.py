"""The avatar is always framed: translations far beyond the frame are absorbed (npga/framing.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from npga.bundle import AvatarBundle, load_bundle
from npga.framing import Framer, HeadFrame, frontal_camera
from npga.geometry import axis_angle_to_quat
from npga.model import HeadPose

DEMO = Path(__file__).resolve().parents[1] / "npga" / "assets" / "demo"
SIZE = 96
FPS = 30.0


@pytest.fixture(scope="module")
def demo() -> AvatarBundle:
    return load_bundle(DEMO)


def sweep(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations [T, 4] (a nod and a shake) and translations [T, 3] metres: ±1 m sideways, ±0.5 m
    up and down, and 0.6 m toward and 1 m away from the camera, in a few seconds."""
    t = np.arange(frames) / FPS
    depth = np.sin(2 * math.pi * t / 4)
    translation = np.stack(
        [np.sin(2 * math.pi * t / 3), 0.5 * np.sin(2 * math.pi * t / 2.1),
         np.where(depth > 0, -0.6, 1.0) * np.abs(depth)],
        axis=1,
    )  # fmt: skip
    angles = np.stack([0.3 * np.sin(t * 2.0), 0.5 * np.sin(t * 1.3), np.zeros_like(t)], axis=1)
    rotation = axis_angle_to_quat(torch.from_numpy(angles).float()).numpy()
    return rotation, translation.astype(np.float32)


def silhouettes(demo: AvatarBundle, mode: str, frames: int) -> np.ndarray:
    """Alpha > 0.5 of each frame: [T, H, W] bool."""
    head = HeadFrame.of_avatar(demo.avatar)
    framer = Framer(head, mode)
    camera = frontal_camera(head, SIZE)
    rotation, translation = sweep(frames)
    codes = torch.zeros(1, demo.config.expression_dim)
    cache = demo.avatar.inference_cache()
    masks = []
    with torch.inference_mode():
        for i in range(frames):
            shown = framer.translation(rotation[i], translation[i], i / FPS)
            pose = HeadPose(torch.from_numpy(rotation[i : i + 1]), torch.from_numpy(shown[None]))
            result = demo.avatar.render(codes, camera, pose, cache=cache)
            masks.append(result.alpha[0, 0, ..., 0].numpy() > 0.5)
    return np.stack(masks)


def test_auto_framing_keeps_the_head_in_the_image_at_one_size(demo: AvatarBundle) -> None:
    masks = silhouettes(demo, "auto", 150)
    margin = round(0.02 * SIZE)
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # [T, H], [T, W]
    assert rows.all(axis=0).sum() > 0  # the head is there in every frame
    assert not rows[:, :margin].any(), "the top of the head left the image"
    assert not cols[:, :margin].any() and not cols[:, -margin:].any(), "the head left sideways"
    assert rows[:, -1].all(), "the neck's cut end showed above the bottom edge"
    widths = np.array([np.flatnonzero(c).ptp() for c in cols])
    median = np.median(widths)
    assert np.all(np.abs(widths - median) <= 0.25 * median), (widths.min(), widths.max(), median)


def test_free_framing_lets_the_same_sweep_leave_the_image(demo: AvatarBundle) -> None:
    masks = silhouettes(demo, "free", 60)
    assert not masks[40:].any(axis=(1, 2)).all()  # gone (or cut) in some frame: what auto fixes


def test_fixed_framing_holds_the_head_still(demo: AvatarBundle) -> None:
    masks = silhouettes(demo, "fixed", 20)
    centres = np.array([np.argwhere(m).mean(axis=0) for m in masks])
    assert np.abs(centres - centres.mean(axis=0)).max() < 0.08 * SIZE


def test_a_bad_framing_name_is_refused(demo: AvatarBundle) -> None:
    with pytest.raises(ValueError, match="framing must be one of auto, fixed, free"):
        Framer(HeadFrame.of_avatar(demo.avatar), "zoom")
