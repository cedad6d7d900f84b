"""Generated video clips for the tests: a synthetic performer, another person, and writers for
the untidy files real devices make."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from npga.data import CaptureDataset
from npga.video import VideoWriter


def front_frames(capture: Path) -> list[np.ndarray]:
    """A capture's front camera: one RGB frame [H, W, 3] uint8 per timestep."""
    data = CaptureDataset(capture)
    return [
        (data.image(t, data.front_camera).numpy() * 255 + 0.5).astype(np.uint8)
        for t in data.timesteps
    ]


def other_person(frame: np.ndarray) -> np.ndarray:
    """Another face: the frame [H, W, 3] stretched sideways by 35 % (other proportions) and
    tinted."""
    h, w = frame.shape[:2]
    wide = cv2.resize(frame, (int(w * 1.35), h), interpolation=cv2.INTER_LINEAR)
    x0 = (wide.shape[1] - w) // 2
    tinted = wide[:, x0 : x0 + w].astype(np.float32) * np.array([0.8, 0.95, 1.1])
    return np.clip(tinted, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """An H.264 mp4 of ``frames`` [H, W, 3] uint8."""
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width, height, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_rotated_mp4(path: Path, frames: list[np.ndarray]) -> Path:
    """A portrait clip as phones store it: the frames [H, W, 3] turned on their side, with a
    display rotation of 90 degrees that turns them back."""
    stored = [np.ascontiguousarray(np.rot90(f, -1)) for f in frames]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = stored[0].shape[1], stored[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(90)
        for frame in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_webm(path: Path, frames: list[np.ndarray]) -> Path:
    """VP8 in WebM, what a browser's MediaRecorder writes."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_out_of_order(path: Path, frames: list[np.ndarray]) -> Path:
    """MPEG-4 with B-frames muxed with their decode times as presentation times (a broken
    muxer, as in some AVIs): frames decode in display order, their timestamps do not."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.max_b_frames = 2
        packets = []
        for frame in frames:
            packets += stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
        packets += stream.encode()
        for i, packet in enumerate(packets):
            packet.pts = packet.dts = max(packet.dts, 0) if i else 0
            container.mux(packet)
    return path


def write_variable_rate(path: Path, frames: list[np.ndarray]) -> Path:
    """An mp4 whose frames come at an irregular rate, as phones record in low light: gaps of
    1/30 s and 1/15 s in turn. -> the path; the presentation times are ``variable_times``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        for frame, seconds in zip(frames, variable_times(len(frames)), strict=True):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = round(seconds * 90000)
            picture.time_base = Fraction(1, 90000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path


def variable_times(count: int) -> np.ndarray:
    """[count] seconds: the frame times of :func:`write_variable_rate`."""
    return np.concatenate(([0.0], np.cumsum(np.where(np.arange(count - 1) % 2, 2, 1) / 30)))
