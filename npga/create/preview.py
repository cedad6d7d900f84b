"""The previews ``npga create`` writes next to the bundle: ``preview.png`` (ground truth |
avatar at held-out frames, one pair per row) and ``preview.mp4`` (the avatar driven through the
capture's frames in time order, beside the video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from npga.data import CaptureDataset
from npga.eval.evaluate import render_timestep
from npga.model import GaussianAvatar
from npga.tracking.capture import CaptureTracking
from npga.video import VideoWriter, to_uint8

GRID_ROWS = 6
VIDEO_FRAMES = 150
VIDEO_FPS = 15.0


def _pair(avatar: GaussianAvatar, dataset: CaptureDataset, tracking: CaptureTracking, t: int):
    frame = dataset.frame(t)
    rendered = render_timestep(avatar, tracking, t, frame.cameras)
    truth = to_uint8(frame.images[0].numpy())
    return np.concatenate((truth, to_uint8(rendered[0].numpy())), axis=1)


def write_previews(
    avatar: GaussianAvatar, dataset: CaptureDataset, tracking: CaptureTracking, out: Path
) -> None:
    """preview.png and preview.mp4 into ``out`` (see the module doc)."""
    avatar = avatar.eval()
    tracked = set(tracking.timesteps.tolist())
    test = [t for t in dataset.splits.test_timesteps if t in tracked]
    picks = np.linspace(0, len(test) - 1, min(GRID_ROWS, len(test))) if test else np.zeros(0)
    rows = [_pair(avatar, dataset, tracking, test[round(float(i))]) for i in picks]
    if rows:
        Image.fromarray(np.concatenate(rows, axis=0)).save(out / "preview.png")
    timesteps = [t for t in dataset.timesteps if t in tracked]
    chosen = np.linspace(0, len(timesteps) - 1, min(VIDEO_FRAMES, len(timesteps)))
    first = _pair(avatar, dataset, tracking, timesteps[0])
    height, width = first.shape[:2]
    with VideoWriter(out / "preview.mp4", width + width % 2, height + height % 2, VIDEO_FPS) as v:
        for i in chosen:
            pair = _pair(avatar, dataset, tracking, timesteps[round(float(i))])
            v.write(np.pad(pair, ((0, height % 2), (0, width % 2), (0, 0)), constant_values=255))
