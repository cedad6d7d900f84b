"""Frame sources for tracking: a video file (PyAV), a folder of images, or a camera (OpenCV)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_FPS = 30.0  # when a video states no usable frame rate


class SourceError(ValueError):
    """A frame source that cannot be opened or read; one line naming it."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # [H, W, 3] uint8
    timestamp: float  # seconds


class FrameSource:
    """Iterable of frames with a known length where the source has one."""

    def __init__(self, description: str, length: int | None) -> None:
        self.description = description
        self.length = length

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError


class VideoFileSource(FrameSource):
    """A video file, decoded as it is meant to be shown.

    Real files are untidy, so timestamps and orientation are not taken at face value:
    - a frame's timestamp is its presentation time where that is known and later than the
      previous frame's; otherwise (missing, repeated or out-of-order timestamps, as in AVIs with
      B-frames) the previous one plus one frame at the stream's rate;
    - the display rotation a phone records (a display matrix of 90, 180 or 270 degrees) is
      applied, so a portrait clip comes out portrait.
    """

    def __init__(self, path: Path) -> None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                length = stream.frames or None
                rate = stream.average_rate or stream.guessed_rate
        except (av.error.FFmpegError, IndexError, OSError) as error:
            raise SourceError(
                f"{path}: cannot open as a video: not a video file, or a truncated or damaged "
                f"one ({_reason(error)})"
            ) from None
        super().__init__(str(path), length)
        self.path = path
        self.fps = float(rate) if rate and 1 <= float(rate) <= 1000 else DEFAULT_FPS

    def frames(self) -> Iterator[Frame]:
        previous = -math.inf
        step = 1.0 / self.fps
        index = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    time = frame.time
                    if time is None or not math.isfinite(time) or time <= previous:
                        time = previous + step if index else 0.0
                    previous = time
                    index += 1
                    yield Frame(upright(frame.to_ndarray(format="rgb24"), frame.rotation), time)
        except av.error.FFmpegError as error:
            raise SourceError(
                f"{self.path}: the video stream broke off after {index} frames "
                f"(truncated or damaged file: {_reason(error)})"
            ) from None
        if index == 0:
            raise SourceError(f"{self.path}: the video has no decodable frames")


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame [H, W, 3] turned by its display rotation (degrees counter-clockwise)."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _reason(error: BaseException) -> str:
    """The gist of a PyAV error: its message without the path it repeats."""
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(error).__name__


class ImageFolderSource(FrameSource):
    def __init__(self, folder: Path, fps: float) -> None:
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        super().__init__(str(folder), len(self.files))
        self.fps = fps

    def frames(self) -> Iterator[Frame]:
        from PIL import Image, UnidentifiedImageError

        for index, file in enumerate(self.files):
            try:
                with Image.open(file) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                raise SourceError(f"{file}: cannot read image ({error})") from None
            yield Frame(rgb, index / self.fps)


class CameraSource(FrameSource):
    """A local camera; stops with a clear error when the camera goes away."""

    def __init__(self, index: int, max_frames: int | None) -> None:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # we report a failed open ourselves
        import cv2

        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise SourceError(f"camera {index}: cannot open (no such device or it is busy)")
        super().__init__(f"camera {index}", max_frames)
        self.index = index

    def frames(self) -> Iterator[Frame]:
        import cv2

        start = time.monotonic()
        count = 0
        try:
            while self.length is None or count < self.length:
                ok, bgr = self._capture.read()
                if not ok:
                    raise SourceError(
                        f"camera {self.index}: stopped delivering frames after {count}"
                    )
                count += 1
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - start)
        finally:
            self._capture.release()


def open_source(spec: str, *, fps: float = 30.0, max_frames: int | None = None) -> FrameSource:
    """A camera index ("0"), a folder of images, or a video file."""
    if spec.isdigit():
        return CameraSource(int(spec), max_frames)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps)
    if path.is_file():
        return VideoFileSource(path)
    raise SourceError(f"{spec}: no such file, folder or camera index")
