"""The receive buffer hands a frame over when its marked last packet arrives, not one frame
later (aiortc's waits for the next frame's first packet)."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from telepresence.jitter import MarkerJitterBuffer


def _packet(seq: int, timestamp: int, marker: bool, data: bytes) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]  # what the depayloader leaves
    return packet


def _frames(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, bytes] | None]:
    out = []
    for packet in packets:
        _, frame = buffer.add(packet)
        out.append((frame.timestamp, frame.data) if frame is not None else None)
    return out


PACKETS = [
    _packet(10, 3000, False, b"a1"),
    _packet(11, 3000, True, b"a2"),  # frame A complete
    _packet(12, 6000, False, b"b1"),
    _packet(13, 6000, False, b"b2"),
    _packet(14, 6000, True, b"b3"),  # frame B complete
    _packet(15, 9000, True, b"c1"),
]


def test_a_frame_leaves_with_its_marked_packet() -> None:
    ours = _frames(MarkerJitterBuffer(capacity=512, is_video=True), PACKETS)
    assert ours == [None, (3000, b"a1a2"), None, None, (6000, b"b1b2b3"), (9000, b"c1")]
    theirs = _frames(JitterBuffer(capacity=512, is_video=True), PACKETS)
    assert theirs[1] is None and theirs[2] == (3000, b"a1a2")  # one frame late


def test_a_missing_packet_holds_the_frame_back() -> None:
    buffer = MarkerJitterBuffer(capacity=512, is_video=True)
    out = _frames(buffer, [PACKETS[0], PACKETS[1], PACKETS[2], PACKETS[4]])  # 13 is lost
    assert out == [None, (3000, b"a1a2"), None, None]
    out = _frames(buffer, [PACKETS[3]])  # the retransmission arrives
    assert out == [(6000, b"b1b2b3")]
