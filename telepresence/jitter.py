"""The video receive path of the Python client: frames leave on their last packet, and lost
packets are recovered or skipped instead of stalling the stream.

aiortc's receiver (1.16) has three habits that cost latency, the last two only under loss:

- Its ``JitterBuffer`` only knows a frame is complete when the first packet of the *next* frame
  arrives (a new RTP timestamp), so every frame waits one frame interval (~35 ms at 30 fps).
  The sender marks a frame's last packet (the RTP marker bit, RFC 6184 for H.264 and RFC 7741
  for VP8): ``MarkerJitterBuffer`` releases a frame once its packets are contiguous up to the
  marked one.
- It NACKs a lost packet once, when the gap appears. A lost retransmission leaves a hole that
  holds back every later frame until the buffer overflows (512 packets: ~17 s of small
  frames). ``RepeatingNackGenerator`` asks again every ``RENACK_S`` while packets are missing,
  ``NACK_TRIES`` times; a hole still open after ``HOLE_GIVE_UP_S`` is skipped (to the next
  frame) and a keyframe is requested.
- It hands the decoder one frame per received packet. When a retransmission fills a hole,
  the frames queued behind it would then leave one per packet, so the delay the hole added
  would never drain: every frame that is complete leaves at once.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

VIDEO_CAPACITY = 512  # packets, as aiortc's video receiver
RENACK_S = 0.12  # a missing packet is asked for again after this (a round trip and a margin)
NACK_TRIES = 8  # ... at most this often
HOLE_GIVE_UP_S = 1.0  # a hole open this long is skipped (and a keyframe requested)


class MarkerJitterBuffer(JitterBuffer):
    """Frames leave on their marked packet; complete frames queued behind a filled hole are
    kept in ``ready`` (all of them leave together); a hole older than ``HOLE_GIVE_UP_S`` is
    skipped."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch, is_video)
        self.ready: list[JitterFrame] = []
        self._hole_since: float | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is None and self._hole_expired():
            pli, frame = True, self._remove_frame(packet.sequence_number)
        if frame is not None:
            self._hole_since = None
            while (more := self._marked_frame()) is not None:
                self.ready.append(more)
        return pli, frame

    def _hole_expired(self) -> bool:
        """Whether the packet the buffer waits for has been missing for ``HOLE_GIVE_UP_S``;
        if so, it is skipped (to the end of the next marked frame)."""
        if self._origin is None or self._packets[self._origin % self.capacity] is not None:
            self._hole_since = None
            return False
        now = time.monotonic()
        if self._hole_since is None:
            self._hole_since = now
            return False
        if now - self._hole_since <= HOLE_GIVE_UP_S or not self._skip_hole():
            return False
        self._hole_since = None
        return True

    def take_ready(self) -> list[JitterFrame]:
        frames, self.ready = self.ready, []
        return frames

    def _skip_hole(self) -> bool:
        """Drop everything up to the end of the first marked frame after the hole (its start
        may be what is lost); False if nothing after the hole has arrived."""
        assert self._origin is not None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is not None and packet.marker:
                self.remove(count + 1)
                return True
        return False

    def _marked_frame(self) -> JitterFrame | None:
        if self._origin is None:
            return None
        timestamp = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (timestamp is not None and packet.timestamp != timestamp):
                return None
            timestamp = packet.timestamp
            if packet.marker:
                parts = [
                    self._packets[(self._origin + i) % self.capacity]._data  # type: ignore[union-attr]
                    for i in range(count + 1)
                ]
                self.remove(count + 1)
                return JitterFrame(data=b"".join(parts), timestamp=timestamp)
        return None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        return self._marked_frame() or super()._remove_frame(sequence_number)


class RepeatingNackGenerator(NackGenerator):
    """aiortc's NACK bookkeeping, asking again for packets still missing (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.tries: dict[int, int] = {}
        self._last_nack = 0.0

    def add(self, packet: RtpPacket) -> bool:
        missed = super().add(packet)
        for seq in [s for s in self.tries if s not in self.missing]:
            del self.tries[seq]
        now = time.monotonic()
        if not self.missing or (not missed and now - self._last_nack < RENACK_S):
            return missed
        for seq in list(self.missing):
            self.tries[seq] = self.tries.get(seq, 0) + 1
            if self.tries[seq] > NACK_TRIES:  # given up: the buffer skips the hole
                self.missing.discard(seq)
                del self.tries[seq]
        self._last_nack = now
        return bool(self.missing)


class _DrainingQueue(queue.Queue[Any]):
    """The receiver's decoder queue: after each frame, the frames the buffer has ready too."""

    def __init__(self, receiver: RTCRtpReceiver, buffer: MarkerJitterBuffer) -> None:
        super().__init__()
        self.receiver = receiver
        self.buffer = buffer

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if item is None:  # the decoder thread's stop sign
            return
        codec = item[0]
        mapper = self.receiver._RTCRtpReceiver__timestamp_mapper  # type: ignore[attr-defined]
        for frame in self.buffer.take_ready():
            frame.timestamp = mapper.map(frame.timestamp)
            super().put((codec, frame), block, timeout)


def decode_on_marker(receiver: RTCRtpReceiver) -> None:
    """Give a video ``receiver`` (before it receives) this module's buffer, NACKs and queue."""
    buffer = MarkerJitterBuffer(capacity=VIDEO_CAPACITY, is_video=True)
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__nack_generator = RepeatingNackGenerator()  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_queue = _DrainingQueue(receiver, buffer)  # type: ignore[attr-defined]
