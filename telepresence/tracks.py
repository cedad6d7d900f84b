"""Video tracks: seat ``i`` of a viewer shows the i-th visible sender's avatar stream, and an
SFU publisher (telepresence/janus.py) sends one sender's stream.

A track sends each encoded frame of the stream its seat shows as soon as the stream's encoder
hands it over (telepresence/streams.py); it has no clock of its own. Its RTP timestamps follow
the capture times of the frames it sends (streams.RtpClock), so a receiver plays them out as
they were captured. When the seat changes hands (a sender joins or leaves), the track moves to
the new sender's stream and waits for its keyframe.
"""

from __future__ import annotations

import asyncio

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from telepresence.encode import VIDEO_TIME_BASE
from telepresence.rooms import Participant, RoomRegistry
from telepresence.streams import AvatarStream, RtpClock, StreamHub, Subscription

SEAT_CHECK_S = 0.25  # how often a track with nothing to send looks whose seat it shows


class EncodedTrack(MediaStreamTrack):
    """Sends the packets of the stream :meth:`_shown` names, in ``codec`` ("h264" or "vp8":
    what its peer negotiated)."""

    kind = "video"

    def __init__(self, codec: str) -> None:
        super().__init__()
        self.codec = codec
        self._clock = RtpClock()
        self._stream: AvatarStream | None = None
        self._subscription: Subscription | None = None

    def _shown(self) -> AvatarStream:
        raise NotImplementedError

    def _follow(self, stream: AvatarStream) -> Subscription:
        if self._stream is not None and self._subscription is not None:
            self._stream.unsubscribe(self._subscription)
        self._stream, self._subscription = stream, stream.subscribe(self.codec)
        return self._subscription

    def request_keyframe(self) -> None:
        """A PLI/FIR from this track's receiver."""
        if self._stream is not None and self._subscription is not None:
            self._stream.request_keyframe(self._subscription)

    def set_bitrate(self, bitrate: int) -> None:
        """A REMB estimate from this track's receiver (bits/s)."""
        if self._stream is not None and self._subscription is not None:
            self._stream.set_bitrate(self._subscription, bitrate)

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            stream = self._shown()
            subscription = self._subscription
            if stream is not self._stream or subscription is None:
                subscription = self._follow(stream)
            try:
                encoded = await asyncio.wait_for(subscription.queue.get(), SEAT_CHECK_S)
            except TimeoutError:
                continue
            packet = av.Packet(bytes(encoded.packet))  # shared with the other viewers
            packet.pts = self._clock.stamp(encoded.frame.captured, stream)
            packet.time_base = VIDEO_TIME_BASE
            return packet

    def stop(self) -> None:
        if self._stream is not None and self._subscription is not None:
            self._stream.unsubscribe(self._subscription)
        self._stream = self._subscription = None
        super().stop()


class AvatarTrack(EncodedTrack):
    """Seat ``seat`` of ``viewer``: the stream of the sender in that seat now."""

    def __init__(
        self, hub: StreamHub, rooms: RoomRegistry, viewer: Participant, seat: int, codec: str
    ) -> None:
        super().__init__(codec)
        self._hub = hub
        self._rooms = rooms
        self._viewer = viewer
        self._seat = seat

    def _shown(self) -> AvatarStream:
        """The stream this seat shows now (the blank one for an empty seat)."""
        room = self._rooms.room_of(self._viewer)
        if room is not None:
            visible = room.visible_to(self._viewer)
            if self._seat < len(visible) and visible[self._seat].stream is not None:
                stream = visible[self._seat].stream
                assert stream is not None
                return stream
        return self._hub.blank


class PublishedTrack(EncodedTrack):
    """One sender's stream, always (what an SFU publisher sends)."""

    def __init__(self, stream: AvatarStream, codec: str) -> None:
        super().__init__(codec)
        self._published = stream

    def _shown(self) -> AvatarStream:
        return self._published
