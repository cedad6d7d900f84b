"""A debug barcode of the rendered expression frame's seq, drawn in the top rows of a frame.

Lets a receiver measure end-to-end latency (capture of a code -> decoded video showing it)
through a lossy video codec. Two rows of 17 cells, 8 pixels high: two calibration cells
(black, white), then the 32 bits of the seq, most significant first (black = 1).
"""

from __future__ import annotations

import numpy as np

BITS = 32
CELLS_PER_ROW = 17
ROW_HEIGHT = 8
HEIGHT = 2 * ROW_HEIGHT


def _cells(width: int) -> list[tuple[slice, slice]]:
    """(rows, columns) of every cell, row-major."""
    cell = width // CELLS_PER_ROW
    return [
        (slice(r * ROW_HEIGHT, (r + 1) * ROW_HEIGHT), slice(c * cell, (c + 1) * cell))
        for r in range(2)
        for c in range(CELLS_PER_ROW)
    ]


def draw_seq(rgb: np.ndarray, seq: int) -> None:
    """Stamp ``seq`` into rgb [H, W, 3] uint8 in place."""
    values = [0, 255] + [0 if (seq >> (BITS - 1 - i)) & 1 else 255 for i in range(BITS)]
    for (rows, columns), value in zip(_cells(rgb.shape[1]), values, strict=True):
        rgb[rows, columns] = value


def read_seq(luma: np.ndarray) -> int | None:
    """The seq stamped in a decoded frame's luma [H, W] (uint8), or None if there is none."""
    if luma.shape[1] // CELLS_PER_ROW < 3 or luma.shape[0] < HEIGHT:
        return None
    means = []
    for rows, columns in _cells(luma.shape[1]):
        inner_rows = slice(rows.start + 2, rows.stop - 2)
        inner_columns = slice(columns.start + 1, columns.stop - 1)
        means.append(float(luma[inner_rows, inner_columns].mean()))
    black, white = means[0], means[1]
    if white - black < 80:
        return None
    threshold = 0.5 * (black + white)
    seq = 0
    for value in means[2:]:
        seq = (seq << 1) | (1 if value < threshold else 0)
    return seq
