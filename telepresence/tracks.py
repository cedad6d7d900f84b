"""Video tracks that show the newest rendered frame of the sender in one of a client's seats."""

from __future__ import annotations

import asyncio
import math
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from telepresence.encode import X264Encoder
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.timeline import FrameTimeline

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


def blank_frame(size: int, level: int = 235) -> np.ndarray:
    """A flat light-grey yuv420p image [size*3/2, size] (an empty seat)."""
    image = np.full((size * 3 // 2, size), 128, dtype=np.uint8)
    image[:size] = level
    return image


def _timed_encode(
    encoder: X264Encoder, image: np.ndarray, pts: int
) -> tuple[list[av.Packet], float]:
    start = time.perf_counter()
    packets = encoder.encode(image, pts)
    return packets, time.perf_counter() - start


class AvatarTrack(MediaStreamTrack):
    """Seat ``seat`` of ``viewer``: paced at ``fps`` from an absolute monotonic schedule.

    Sends raw frames (aiortc encodes them, VP8) unless :meth:`use_encoder` gave it an H.264
    encoder: then it sends pre-encoded packets, encoded in a worker thread.
    """

    kind = "video"

    def __init__(
        self,
        rooms: RoomRegistry,
        viewer: Participant,
        seat: int,
        fps: float,
        size: int,
        metrics: Metrics | None = None,
        timeline: FrameTimeline | None = None,
    ) -> None:
        super().__init__()
        self._timeline = timeline
        self._rooms = rooms
        self._viewer = viewer
        self._seat = seat
        self._fps = fps
        self._blank = blank_frame(size)
        self._start: float | None = None
        self._index = 0
        self.encoder: X264Encoder | None = None
        self._metrics = metrics

    def use_encoder(self, encoder: X264Encoder) -> None:
        self.encoder = encoder

    def _current_image(self) -> tuple[np.ndarray, Participant | None]:
        """The seat's newest render and whose it is (None: the seat is empty)."""
        room = self._rooms.room_of(self._viewer)
        if room is not None:
            visible = room.visible_to(self._viewer)
            if self._seat < len(visible) and visible[self._seat].rendered is not None:
                shown = visible[self._seat]
                assert shown.rendered is not None
                return shown.rendered, shown
        return self._blank, None

    def _mark(self, shown: Participant | None, stage: str) -> None:
        if self._timeline is not None and shown is not None:
            self._timeline.mark(shown.id, shown.rendered_seq, stage)

    async def recv(self) -> av.VideoFrame | av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            # next slot on the absolute schedule; a slow consumer skips slots, never queues
            self._index = max(self._index + 1, math.floor((now - self._start) * self._fps))
            delay = self._start + self._index / self._fps - now
            if delay > 0:
                await asyncio.sleep(delay)
        pts = round(self._index * VIDEO_CLOCK_RATE / self._fps)
        image, shown = self._current_image()
        self._mark(shown, "encode_start")
        if self.encoder is not None:
            loop = asyncio.get_running_loop()
            packets, seconds = await loop.run_in_executor(
                None, _timed_encode, self.encoder, image, pts
            )
            self._mark(shown, "encode_end")
            if self._metrics is not None:
                self._metrics.observe("encode_ms", seconds * 1e3)
            if packets:  # x264 with zerolatency emits one packet per frame
                return packets[0]
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame
