"""What ``npga eval --media DIR`` writes: side-by-side image grids and comparison videos.

A grid has one row per camera and three columns: ground truth, the avatar, and the absolute
error (x4, so that small errors are visible). A video shows ground truth | avatar of one camera
over the split's timesteps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from npga.closing import Closing
from npga.video import VideoWriter, to_uint8

ERROR_GAIN = 4.0
GRIDS_PER_SPLIT = 4
VIDEO_FPS = 10.0


def comparison_grid(truth: Tensor, rendered: Tensor) -> np.ndarray:
    """[C, H, W, 3] ground truth and renders -> [C*H, 3*W, 3] uint8."""
    error = ((rendered - truth).abs() * ERROR_GAIN).clamp(0, 1)
    rows = [np.concatenate([to_uint8(x[i].numpy()) for x in (truth, rendered, error)], axis=1)
            for i in range(truth.shape[0])]  # fmt: skip
    return np.concatenate(rows, axis=0)


class MediaSink(Closing):
    """Collects the frames one split evaluates; writes grids at once and videos on close."""

    def __init__(self, directory: Path, name: str, video_cameras: list[str]) -> None:
        self.directory = directory
        self.name = name
        self.video_cameras = video_cameras
        self.grids_written = 0
        self._videos: dict[str, VideoWriter] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, timestep: int, cameras: list[str], truth: Tensor, rendered: Tensor):
        if self.grids_written < GRIDS_PER_SPLIT:
            path = self.directory / f"{self.name}_t{timestep:05d}.png"
            Image.fromarray(comparison_grid(truth, rendered)).save(path)
            self.grids_written += 1
        for camera in self.video_cameras:
            if camera not in cameras:
                continue
            i = cameras.index(camera)
            pair = np.concatenate((to_uint8(truth[i].numpy()), to_uint8(rendered[i].numpy())), 1)
            if camera not in self._videos:
                height, width = pair.shape[:2]
                path = self.directory / f"{self.name}_{camera}.mp4"
                self._videos[camera] = VideoWriter(
                    path, width + width % 2, height + height % 2, VIDEO_FPS
                )
            writer = self._videos[camera]
            pad = ((0, pair.shape[0] % 2), (0, pair.shape[1] % 2), (0, 0))
            writer.write(np.pad(pair, pad, constant_values=255))

    def close(self) -> None:
        for writer in self._videos.values():
            writer.close()
        self._videos.clear()
