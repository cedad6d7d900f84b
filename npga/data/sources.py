"""Where a capture's pixels come from: PNG files per (timestep, camera), or one video per camera.

``frames/<t:05d>/<camera>.png`` (+ ``masks/<t:05d>/<camera>.png``), or ``videos/<camera>.mp4``
(+ ``mask_videos/<camera>.mp4``) whose i-th frame is timestep i.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from npga.data.layout import FRAMES_DIR, MASKS_DIR, CaptureError, frame_path

VIDEOS_DIR = "videos"
MASK_VIDEOS_DIR = "mask_videos"


def _check_png(path: Path, width: int, height: int, rgb: bool) -> None:
    """Existence, decodable header and size of one PNG (pixels are decoded on load)."""
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
    except (UnidentifiedImageError, OSError) as error:
        raise CaptureError(f"{path}: not a readable image ({error})") from None
    if size != (width, height):
        raise CaptureError(
            f"{path}: image is {size[0]}x{size[1]}, cameras.json says {width}x{height}"
        )
    if rgb and mode not in ("RGB", "RGBA"):
        raise CaptureError(f"{path}: expected an RGB image, got mode {mode}")


class PngFrames:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.has_masks = (root / MASKS_DIR).is_dir()
        frames = root / FRAMES_DIR
        steps = []
        for entry in frames.iterdir():
            if not entry.name.isdigit():
                raise CaptureError(f"{entry}: frame folders are named by timestep (00000, ...)")
            steps.append(int(entry.name))
        if not steps:
            raise CaptureError(f"{frames}: no timesteps")
        self.timesteps = sorted(steps)

    def validate(self, cameras: list[str], width: int, height: int) -> None:
        for t in self.timesteps:
            for name in cameras:
                _check_png(frame_path(self.root, t, name), width, height, rgb=True)
                if self.has_masks:
                    _check_png(frame_path(self.root, t, name, masks=True), width, height, False)

    def read(self, timestep: int, camera: str, mask: bool) -> Image.Image:
        path = frame_path(self.root, timestep, camera, masks=mask)
        try:
            with Image.open(path) as file:
                return file.convert("L" if mask else "RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise CaptureError(f"{path}: not a readable image ({error})") from None


def decode(path: Path, gray: bool = False) -> Iterator[np.ndarray]:
    """Every frame of a video: [H, W, 3] (or [H, W] if ``gray``) uint8."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="gray" if gray else "rgb24")
    except av.FFmpegError as error:
        raise CaptureError(f"{path}: cannot decode ({error})") from None


def probe(path: Path) -> tuple[tuple[int, int], int]:
    """A video's (width, height) and frame count (counted by decoding when not stored)."""
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            size, count = (stream.codec_context.width, stream.codec_context.height), stream.frames
    except (av.FFmpegError, IndexError) as error:
        raise CaptureError(f"{path}: cannot decode ({error})") from None
    return size, count if count > 0 else sum(1 for _ in decode(path))


class VideoFrames:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.has_masks = (root / MASK_VIDEOS_DIR).is_dir()
        self.timesteps: list[int] = []

    def path(self, camera: str, mask: bool) -> Path:
        return self.root / (MASK_VIDEOS_DIR if mask else VIDEOS_DIR) / f"{camera}.mp4"

    def validate(self, cameras: list[str], width: int, height: int) -> None:
        """Every video opens, has the calibrated size and as many frames as the others."""
        expected: tuple[int, Path] | None = None
        for name in cameras:
            for mask in (False, True) if self.has_masks else (False,):
                path = self.path(name, mask)
                size, count = probe(path)
                if size != (width, height):
                    raise CaptureError(
                        f"{path}: video is {size[0]}x{size[1]}, cameras.json says {width}x{height}"
                    )
                if expected is None:
                    expected = (count, path)
                elif count != expected[0]:
                    raise CaptureError(
                        f"{path}: {count} frames, but {expected[1]} has {expected[0]}"
                    )
        if expected is None or expected[0] == 0:
            raise CaptureError(f"{self.root / VIDEOS_DIR}: videos have no frames")
        self.timesteps = list(range(expected[0]))

    def frames(self, camera: str, mask: bool) -> Iterator[Image.Image]:
        for pixels in decode(self.path(camera, mask), gray=mask):
            yield Image.fromarray(pixels)
