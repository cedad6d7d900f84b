"""A Python viewer whose avatars come from Janus (``telepresence send --view-only`` when the
room's media lives in an SFU; telepresence/janus.py).

It asks the receiver where the room's media lives (``GET /api/rooms/R/media``), subscribes to
the room's signed feeds in one multistream subscription (seat i = the i-th feed), and keeps
watching: when the feeds change (a sender joins or leaves) or Janus goes away (a restart), it
subscribes again, as soon as the receivers have published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from telepresence.janus_api import JanusError, JanusHandle, JanusSession
from telepresence.jitter import decode_on_marker
from telepresence.sender import ClientError, ClientStats, FrameCallback, receive_frames

log = logging.getLogger(__name__)

FOLLOW_S = 1.0  # how often the viewer asks whether the room's feeds changed
RETRY_S = 0.5

MediaFetcher = Callable[[], Awaitable[dict[str, Any]]]


def _published(feed: dict[str, Any]) -> tuple[int, str]:
    """A feed as published: its id and generation (a feed published again has a new one)."""
    return int(feed["feed"]), str(feed.get("generation", ""))


class JanusViewer:
    """A view-only participant receiving up to ``seats`` avatars of a room from Janus."""

    def __init__(
        self, fetch_media: MediaFetcher, seats: int = 1, on_frame: FrameCallback | None = None
    ) -> None:
        self.fetch_media = fetch_media  # the receiver's answer for the room's "sfu" media
        self.seats = seats
        self.on_frame = on_frame
        self.stats = ClientStats()
        self.pc: RTCPeerConnection | None = None
        self.subscriptions = 0  # how many times it subscribed (1 + resubscriptions)
        self.feeds: list[dict[str, Any]] = []
        self._session: JanusSession | None = None
        self._handle: JanusHandle | None = None
        self._receivers: list[asyncio.Task[None]] = []
        self._follow: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def connect(self, timeout: float = 20.0) -> None:
        """Subscribe to the room's feeds now (ClientError if that fails), then keep following."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                media = await self.fetch_media()
                if media.get("feeds"):
                    await self._subscribe(media)
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await self._connected.wait()
                    break
            except (JanusError, TimeoutError) as error:
                await self._unsubscribe()
                if time.monotonic() > deadline:
                    raise ClientError(f"cannot subscribe through Janus: {error}") from None
            except ClientError:  # the receiver answers 503 while it reconnects to Janus
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise ClientError(f"no avatar to watch in this room within {timeout:g} s")
            await asyncio.sleep(RETRY_S)
        self._follow = asyncio.create_task(self._keep_following())

    async def _subscribe(self, media: dict[str, Any]) -> None:
        token = str(media["token"])
        session = self._session = await JanusSession.open(str(media["url"]), lambda: token)
        handle = await session.attach()
        self.feeds = list(media["feeds"])[: self.seats]
        event = await handle.message(
            {
                "request": "join",
                "ptype": "subscriber",
                "room": media["room"],
                "pin": media["pin"],
                "streams": [{"feed": feed["feed"]} for feed in self.feeds],
            }
        )
        if event.jsep is None or event.jsep.get("type") != "offer":
            raise JanusError("Janus answered the subscription without an SDP offer")
        seat_of_mid = {
            str(stream.get("mid")): next(
                (i for i, f in enumerate(self.feeds) if f["feed"] == stream.get("feed_id")), 0
            )
            for stream in event.data.get("streams", [])
        }
        self.stats.seats = [
            {"seat": i, "participant": feed["participant"]} for i, feed in enumerate(self.feeds)
        ]
        pc = self.pc = RTCPeerConnection()
        self._connected.clear()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self._connected.set()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
            seat = seat_of_mid.get(str(transceiver.mid) if transceiver else "", 0)
            receiving = receive_frames(seat, track, self.stats, self.on_frame)
            self._receivers.append(asyncio.ensure_future(receiving))

        await pc.setRemoteDescription(RTCSessionDescription(event.jsep["sdp"], "offer"))
        for transceiver in pc.getTransceivers():
            decode_on_marker(transceiver.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        await handle.message(
            {"request": "start"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp}
        )
        self.subscriptions += 1
        self._handle = handle

    def _healthy(self) -> bool:
        session, pc, handle = self._session, self.pc, self._handle
        return (
            session is not None
            and not session.gone.is_set()
            and handle is not None
            and not handle.hung_up.is_set()
            and pc is not None
            and pc.connectionState not in ("failed", "closed")
        )

    async def _keep_following(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_S)
            try:
                media = await self.fetch_media()
            except ClientError:
                continue  # the receiver itself is reconnecting to Janus
            wanted = [_published(feed) for feed in media.get("feeds", [])][: self.seats]
            if self._healthy() and wanted == [_published(feed) for feed in self.feeds]:
                continue
            log.info("resubscribing: feeds %s -> %s", [_published(f) for f in self.feeds], wanted)
            await self._unsubscribe()
            if wanted:
                try:
                    await self._subscribe(media)
                except Exception as error:  # Janus or aiortc: tried again a second later
                    log.info("resubscribing failed (%s); retrying", error)
                    await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
        self._receivers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        await self._unsubscribe()
