"""Writing rendered frames to video files with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from npga.closing import Closing

# Encoder options of the codecs VideoWriter is used with (constant quality, yuv420p).
CODEC_OPTIONS = {
    "libx264": {"crf": "18", "preset": "veryfast"},  # H.264: .mp4, .mov, .mkv
    "libvpx-vp9": {"crf": "20", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
}


class VideoWriter(Closing):
    """H.264 (yuv420p) writer for frames [H, W, 3] uint8; use as a context manager.
    ``codec="libvpx-vp9"`` writes VP9 instead (for .webm)."""

    def __init__(
        self, path: str | Path, width: int, height: int, fps: float, codec: str = "libx264"
    ) -> None:
        if codec not in CODEC_OPTIONS:
            raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODEC_OPTIONS)})")
        if codec == "libx264" and (width % 2 or height % 2):
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
        self._container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        stream = self._container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)  # every codec of CODEC_OPTIONS is one
        self._stream = stream
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = dict(CODEC_OPTIONS[codec])

    def write(self, frame: np.ndarray) -> None:
        """frame [H, W, 3] uint8 RGB."""
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (any shape [..., 3]) to uint8."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
