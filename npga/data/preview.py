"""``npga data preview``: a contact sheet of a capture (rows: cameras, columns: timesteps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from npga.data.capture import CaptureDataset

GAP = 2  # white pixels between tiles


def contact_sheet(capture: CaptureDataset, columns: int) -> np.ndarray:
    """-> [rows * (H + GAP), columns * (W + GAP), 3] uint8: every camera of the capture at
    ``columns`` timesteps spread evenly over it."""
    steps = capture.timesteps
    spread = np.linspace(0, len(steps) - 1, min(columns, len(steps))).round().astype(int)
    picks = [steps[i] for i in spread]
    height, width = capture.cameras.height, capture.cameras.width
    rows = len(capture.camera_names)
    sheet = np.full((rows * (height + GAP), len(picks) * (width + GAP), 3), 255, np.uint8)
    for j, timestep in enumerate(picks):
        images = capture.frame(int(timestep)).images.numpy()  # [C, H, W, 3]
        for i in range(rows):
            tile = (images[i] * 255.0 + 0.5).astype(np.uint8)
            y, x = i * (height + GAP), j * (width + GAP)
            sheet[y : y + height, x : x + width] = tile
    return sheet


def write_contact_sheet(root: Path, out: Path, *, columns: int = 8, resolution: int = 128) -> str:
    """Writes the sheet to ``out``; returns a one-line description."""
    capture = CaptureDataset(root, resolution=resolution, cache=False)
    sheet = contact_sheet(capture, columns)
    Image.fromarray(sheet).save(out)
    shown = min(columns, len(capture))
    return f"{len(capture.camera_names)} cameras x {shown} timesteps -> {out}"
