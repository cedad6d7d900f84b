"""A debug barcode of the rendered expression frame's seq, drawn in the top rows of a frame.

Lets a receiver measure end-to-end latency (capture of a code -> decoded video showing it)
through a lossy video codec: 2 calibration cells (black, white) then 32 bits, MSB first.
"""

from __future__ import annotations

import numpy as np

BITS = 32
CELLS = BITS + 2
HEIGHT = 8


def draw_seq(rgb: np.ndarray, seq: int) -> None:
    """Stamp ``seq`` into rgb [H, W, 3] uint8 in place."""
    cell = rgb.shape[1] // CELLS
    values = [0, 255] + [0 if (seq >> (BITS - 1 - i)) & 1 else 255 for i in range(BITS)]
    for i, value in enumerate(values):
        rgb[:HEIGHT, i * cell : (i + 1) * cell] = value


def read_seq(luma: np.ndarray) -> int | None:
    """The seq stamped in a decoded frame's luma [H, W] (uint8), or None if there is none."""
    cell = luma.shape[1] // CELLS
    if cell < 2 or luma.shape[0] < HEIGHT:
        return None
    centers = [
        float(luma[2 : HEIGHT - 2, i * cell + cell // 4 : (i + 1) * cell - cell // 4].mean())
        for i in range(CELLS)
    ]
    black, white = centers[0], centers[1]
    if white - black < 80:
        return None
    threshold = 0.5 * (black + white)
    seq = 0
    for value in centers[2:]:
        seq = (seq << 1) | (1 if value < threshold else 0)
    return seq
