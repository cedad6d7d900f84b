"""Avatar streams: each sender's newest rendered frame, encoded once per codec for all viewers.

The render worker publishes a frame into its sender's :class:`AvatarStream` as soon as it is
rendered. For every codec that some viewer receives, one :class:`StreamEncoder` task encodes each
new frame once (the newest wins if encoding falls behind) and hands the packet to every
:class:`Subscription` (one per viewer track showing that sender). N viewers cost one encode.

A decoder needs every frame since the last keyframe, so a subscription gets every packet from a
keyframe on. A new subscriber asks for a keyframe; so does one whose queue overflowed (it skips
to the next keyframe). Requests are coalesced: one keyframe serves everyone who asked. The
bitrate is the lowest of the viewers' estimates (REMB), within the encoder's bounds.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import av
import numpy as np

from telepresence.encode import VideoEncoder
from telepresence.metrics import Metrics
from telepresence.timeline import FrameTimeline

VIDEO_CLOCK_RATE = 90_000
QUEUE_FRAMES = 8  # a viewer further behind than this skips to the next keyframe
MAX_CAPTURE_STEP_S = 5.0  # a capture-time step beyond this (or backwards) uses the server clock


def blank_image(size: int, level: int = 235) -> np.ndarray:
    """A flat light-grey yuv420p image [size*3/2, size] (an empty seat)."""
    image = np.full((size * 3 // 2, size), 128, dtype=np.uint8)
    image[:size] = level
    return image


class RtpClock:
    """90 kHz timestamps that follow the capture times of what they stamp, always increasing.

    A step between two frames of one source is their capture-time difference (the sender's
    clock), so a receiver plays frames out as they were captured; a new source, a missing
    capture time or an implausible step falls back to the server's monotonic clock.
    """

    def __init__(self) -> None:
        self._pts: int | None = None
        self._captured: float | None = None
        self._source: object = None
        self._at = 0.0

    def stamp(self, captured: float | None, source: object = None) -> int:
        now = time.monotonic()
        if self._pts is None:
            pts = 0
        else:
            step = now - self._at
            same = captured is not None and self._captured is not None and source is self._source
            if same and 0.0 < captured - self._captured < MAX_CAPTURE_STEP_S:  # type: ignore[operator]
                step = captured - self._captured  # type: ignore[operator]
            pts = self._pts + max(1, round(step * VIDEO_CLOCK_RATE))
        self._pts, self._captured, self._source, self._at = pts, captured, source, now
        return pts


@dataclass(frozen=True)
class AvatarFrame:
    """One rendered frame of a sender's avatar."""

    image: np.ndarray  # [H*3/2, W] uint8 yuv420p
    avatar_id: str
    seq: int | None  # the expression frame it shows (None: the neutral face)
    captured: float | None  # that frame's capture time (the sender's time.time())
    version: int  # counts the stream's frames


@dataclass(frozen=True)
class EncodedFrame:
    packet: av.Packet  # shared by every subscriber: copy before changing it
    frame: AvatarFrame
    keyframe: bool


@dataclass(eq=False)
class Subscription:
    """One viewer track's feed of one stream in one codec."""

    codec: str
    queue: asyncio.Queue[EncodedFrame] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    needs_keyframe: bool = True  # until a keyframe arrives, later frames cannot be decoded
    bitrate: int | None = None  # the viewer's estimate (REMB), bits/s

    def offer(self, encoded: EncodedFrame) -> bool:
        """Queue ``encoded``; False if this viewer must wait for a keyframe (it fell behind)."""
        if self.needs_keyframe and not encoded.keyframe:
            return True
        if self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.needs_keyframe = True
            return False
        self.needs_keyframe = False
        self.queue.put_nowait(encoded)
        return True


def _timed_encode(
    encoder: VideoEncoder, image: np.ndarray, pts: int
) -> tuple[list[av.Packet], float]:
    """Encode worker: the packets and the CPU time this thread spent (contention-free)."""
    began = time.thread_time()
    packets = encoder.encode(image, pts)
    return packets, time.thread_time() - began


class StreamEncoder:
    """One codec of one stream: encodes each new frame once, in the encode workers."""

    def __init__(self, stream: AvatarStream, codec: str, executor: ThreadPoolExecutor) -> None:
        self.stream = stream
        self.codec = codec
        self.encoder = VideoEncoder(codec, stream.size, stream.size, stream.fps)
        self.subscribers: set[Subscription] = set()
        self._executor = executor
        self._wake = asyncio.Event()
        self._keyframe_wanted = False
        self._clock = RtpClock()
        self._encoded_version = -1
        self.task = asyncio.create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    def request_keyframe(self) -> None:
        """Coalesced: the next encode (of a new frame, or the current one again) is a keyframe."""
        self._keyframe_wanted = True
        self.encoder.request_keyframe()
        self._wake.set()

    def update_bitrate(self) -> None:
        estimates = [s.bitrate for s in self.subscribers if s.bitrate is not None]
        if estimates:
            self.encoder.set_target_bitrate(min(estimates))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        metrics, timeline, owner = self.stream.metrics, self.stream.timeline, self.stream.owner
        while True:
            await self._wake.wait()
            self._wake.clear()
            frame = self.stream.frame
            if frame is None or (
                frame.version == self._encoded_version and not self._keyframe_wanted
            ):
                continue
            self._keyframe_wanted = False
            self._encoded_version = frame.version
            pts = self._clock.stamp(frame.captured)
            if timeline is not None:
                timeline.mark(owner, frame.seq, "encode_start")
            began = time.perf_counter()
            packets, cpu_seconds = await loop.run_in_executor(
                self._executor, _timed_encode, self.encoder, frame.image, pts
            )
            metrics.observe("encode_ms", (time.perf_counter() - began) * 1e3)
            metrics.observe("encode_cpu_ms", cpu_seconds * 1e3)
            metrics.inc("encodes_total", codec=self.codec)
            if timeline is not None:
                timeline.mark(owner, frame.seq, "encode_end")
            for packet in packets:  # x264 zerolatency and realtime VP8: one packet per frame
                encoded = EncodedFrame(packet, frame, bool(packet.is_keyframe))
                behind = [s for s in self.subscribers if not s.offer(encoded)]
                if behind:
                    metrics.inc("viewer_resyncs_total", len(behind))
                    self.request_keyframe()


class AvatarStream:
    """A sender's avatar video: the newest frame and its encoders, one per codec in use."""

    def __init__(
        self,
        owner: str,
        size: int,
        fps: float,
        executor: ThreadPoolExecutor,
        metrics: Metrics,
        timeline: FrameTimeline | None = None,
    ) -> None:
        self.owner = owner  # the sender's participant id (timeline marks)
        self.size, self.fps = size, fps
        self.metrics, self.timeline = metrics, timeline
        self.frame: AvatarFrame | None = None
        self._executor = executor
        self._encoders: dict[str, StreamEncoder] = {}

    def publish(
        self, image: np.ndarray, avatar_id: str, seq: int | None, captured: float | None
    ) -> None:
        """On the loop: a newly rendered frame (image [size*3/2, size] yuv420p)."""
        version = self.frame.version + 1 if self.frame is not None else 0
        self.frame = AvatarFrame(image, avatar_id, seq, captured, version)
        for encoder in self._encoders.values():
            encoder.wake()

    def subscribe(self, codec: str) -> Subscription:
        encoder = self._encoders.get(codec)
        if encoder is None:
            encoder = self._encoders[codec] = StreamEncoder(self, codec, self._executor)
        subscription = Subscription(codec)
        encoder.subscribers.add(subscription)
        encoder.request_keyframe()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        encoder = self._encoders.get(subscription.codec)
        if encoder is not None:
            encoder.subscribers.discard(subscription)
            encoder.update_bitrate()

    def request_keyframe(self, subscription: Subscription) -> None:
        encoder = self._encoders.get(subscription.codec)
        if encoder is not None:
            subscription.needs_keyframe = True
            encoder.request_keyframe()

    def set_bitrate(self, subscription: Subscription, bitrate: int) -> None:
        subscription.bitrate = bitrate
        encoder = self._encoders.get(subscription.codec)
        if encoder is not None:
            encoder.update_bitrate()

    @property
    def viewers(self) -> int:
        return sum(len(e.subscribers) for e in self._encoders.values())

    async def close(self) -> None:
        """Stop the encoder tasks and wait for them."""
        tasks = [encoder.task for encoder in self._encoders.values()]
        self._encoders.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class StreamHub:
    """Every sender's stream, the empty-seat stream, and the encode workers they share."""

    def __init__(
        self,
        size: int,
        fps: float,
        metrics: Metrics,
        timeline: FrameTimeline | None = None,
        workers: int = 2,
    ) -> None:
        self.size, self.fps, self.metrics, self.timeline = size, fps, metrics, timeline
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encode")
        self._streams: dict[str, AvatarStream] = {}
        self.blank = AvatarStream("", size, fps, self._executor, metrics)
        self.blank.publish(blank_image(size), "", None, None)

    def open(self, participant_id: str) -> AvatarStream:
        stream = AvatarStream(
            participant_id, self.size, self.fps, self._executor, self.metrics, self.timeline
        )
        self._streams[participant_id] = stream
        return stream

    async def close(self, participant_id: str) -> None:
        stream = self._streams.pop(participant_id, None)
        if stream is not None:
            await stream.close()

    async def close_all(self) -> None:
        streams = [*self._streams.values(), self.blank]
        self._streams.clear()
        await asyncio.gather(*(stream.close() for stream in streams))
        self._executor.shutdown(wait=True, cancel_futures=True)
