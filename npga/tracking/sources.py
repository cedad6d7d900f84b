"""Frame sources for tracking: a video file (PyAV), a folder of images, or a camera (OpenCV)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


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
    def __init__(self, path: Path) -> None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                length = stream.frames or None
        except (av.error.FFmpegError, IndexError, OSError) as error:
            raise SourceError(f"{path}: cannot open as a video ({error})") from None
        super().__init__(str(path), length)
        self.path = path

    def frames(self) -> Iterator[Frame]:
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                for index, frame in enumerate(container.decode(stream)):
                    timestamp = float(frame.time) if frame.time is not None else index / 30.0
                    yield Frame(frame.to_ndarray(format="rgb24"), timestamp)
        except av.error.FFmpegError as error:
            raise SourceError(f"{self.path}: video stream broke off ({error})") from None


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
