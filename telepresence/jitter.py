"""A video receive buffer that hands a frame to the decoder when its last packet arrives.

aiortc's ``JitterBuffer`` only knows a frame is complete when the first packet of the *next*
frame arrives (a new RTP timestamp), so every received frame waits one frame interval: ~35 ms
at 30 fps, more when the sender sends less often. The sender marks a frame's last packet (the
RTP marker bit, RFC 6184 for H.264 and RFC 7741 for VP8; aiortc and browsers set it): this
buffer releases a frame as soon as its packets are contiguous up to the marked one, and
otherwise behaves as aiortc's.
"""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

VIDEO_CAPACITY = 512  # packets, as aiortc's video receiver


class MarkerJitterBuffer(JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if self._origin is not None:
            timestamp = None
            for count in range(self.capacity):
                packet = self._packets[(self._origin + count) % self.capacity]
                if packet is None or (timestamp is not None and packet.timestamp != timestamp):
                    break
                timestamp = packet.timestamp
                if packet.marker:
                    first = self._origin
                    parts = [
                        self._packets[(first + i) % self.capacity]._data  # type: ignore[union-attr]
                        for i in range(count + 1)
                    ]
                    self.remove(count + 1)
                    return JitterFrame(data=b"".join(parts), timestamp=timestamp)
        return super()._remove_frame(sequence_number)


def decode_on_marker(receiver: RTCRtpReceiver) -> None:
    """Give a video ``receiver`` (before it receives) the marker-aware buffer."""
    receiver._RTCRtpReceiver__jitter_buffer = MarkerJitterBuffer(  # type: ignore[attr-defined]
        capacity=VIDEO_CAPACITY, is_video=True
    )
