"""Publishing avatar streams into a Janus VideoRoom (the SFU), one publisher per avatar.

With ``telepresence serve --janus URL`` a receiver publishes every sender's avatar stream it
renders into the Janus VideoRoom of the sender's room, as one publisher per sender. The stream
is the one direct viewers get (telepresence/streams.py): Janus is one more subscriber of its
single encode. Viewers subscribe from Janus; senders keep their data channels (and their own
video seats) to the receiver that renders them.

Rooms and secrets: a telepresence room ``R`` is the VideoRoom :func:`janus_room` (a 48-bit hash
of the name), created with a room secret and a pin derived from the Janus secret the receivers
hold (``--janus-secret``: Janus's ``token_auth_secret`` and the VideoRoom's ``admin_key``).
Every request to Janus needs a signed token; a viewer admitted by telepresence gets one with the
room's pin from :meth:`JanusBridge.room_media`. Only a participant with the room's publisher
token (derived from the secret; the VideoRoom's ``allowed`` list, which Janus checks for
publishers only) may join as a publisher: a viewer's pin subscribes, never publishes. A
publisher's display name is signed too, and viewers are told only signed feeds. Two receivers
with the same secret publish into one room, and every viewer of it sees every avatar.

Janus restarts: a receiver notices its session is gone (the long poll fails) and publishes
again into a new session with the same feed ids; viewers resubscribe (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from telepresence.config import SfuConfig
from telepresence.encode import CODECS, negotiated_video_codecs, watch_rtcp
from telepresence.janus_api import JanusError, JanusGone, JanusHandle, JanusSession, signed_token
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.tracks import PublishedTrack

log = logging.getLogger(__name__)

LISTING_S = 0.5  # /media answers from a room listing at most this old
SYNC_S = 0.5  # how often the bridge compares what it publishes with who is sending
RETRY_S = (0.5, 5.0)  # reconnecting to Janus: first and longest wait
OWN_TOKEN_TTL_S = 120.0  # the receiver signs a fresh token for every request
ROOM_EXISTS = 427


class SfuUnavailable(RuntimeError):
    """The receiver has no session with Janus right now (it is reconnecting)."""


def janus_room(room: str) -> int:
    """The VideoRoom id of telepresence room ``room``: the same on every receiver, and within
    JavaScript's safe integers."""
    return int.from_bytes(hashlib.sha256(b"telepresence room " + room.encode()).digest()[:6])


def _derived(secret: str, purpose: str, *parts: str) -> str:
    message = "\n".join((purpose, *parts)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def room_pin(secret: str, room: str) -> str:
    """What a participant needs to join the VideoRoom (given to admitted viewers)."""
    return _derived(secret, "room pin", room)


def room_secret(secret: str, room: str) -> str:
    """What editing the VideoRoom needs (kicking, destroying): only receivers have it."""
    return _derived(secret, "room secret", room)


def publisher_token(secret: str, room: str) -> str:
    """The VideoRoom's one ``allowed`` token: what joining it as a publisher needs."""
    return _derived(secret, "publisher", room)


FEED_FIELDS = ("participant", "receiver", "avatar", "generation")


def feed_display(secret: str, room: str, feed: int, **fields: str) -> str:
    """A publisher's display name: who it shows (FEED_FIELDS; ``generation`` changes with every
    publish, so viewers notice a feed published again under its id), signed with the secret."""
    who = [fields[key] for key in FEED_FIELDS]
    signature = _derived(secret, "feed", room, str(feed), *who)
    return json.dumps({**fields, "signature": signature}, separators=(",", ":"))


def signed_feed(secret: str, room: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """A ``listparticipants`` entry as a feed for viewers, or None if no holder of the secret
    joined it."""
    try:
        display = json.loads(str(entry.get("display", "")))
        feed = int(entry["id"])
        who = [str(display[key]) for key in FEED_FIELDS]
        expected = _derived(secret, "feed", room, str(feed), *who)
        if not hmac.compare_digest(expected, str(display["signature"])):
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return {"feed": feed, **dict(zip(FEED_FIELDS, who, strict=True))}


class _Publisher:
    """One sender's avatar stream published into its VideoRoom: a handle and a sendonly peer."""

    def __init__(
        self,
        participant: Participant,
        handle: JanusHandle,
        pc: RTCPeerConnection,
        avatar: str,
        generation: str,
    ) -> None:
        self.participant, self.handle, self.pc = participant, handle, pc
        self.avatar = avatar  # what its display name says (the sender may switch avatars)
        self.generation = generation

    @property
    def alive(self) -> bool:
        return not self.handle.hung_up.is_set() and self.pc.connectionState not in (
            "failed",
            "closed",
        )

    async def close(self) -> None:
        with contextlib.suppress(JanusError):
            await self.handle.request({"request": "unpublish"})
        await self.handle.detach()
        await _close_peer(self.pc)


async def _close_peer(pc: RTCPeerConnection) -> None:
    """Close a publisher's peer and stop its tracks (aiortc leaves them running: a live
    PublishedTrack would stay subscribed to its stream)."""
    for sender in pc.getSenders():
        if sender.track is not None:
            sender.track.stop()
    await pc.close()


class JanusBridge:
    """A receiver's link to Janus: keeps every sending participant's avatar published into its
    room's VideoRoom, across Janus restarts, and answers viewers where a room's media is."""

    def __init__(
        self, config: SfuConfig, rooms: RoomRegistry, metrics: Metrics, ice: list[RTCIceServer]
    ) -> None:
        self.config = config
        self.rooms = rooms
        self.metrics = metrics
        self.receiver = secrets.token_hex(4)  # this process: part of its feeds' ids
        self._ice = ice
        self._session: JanusSession | None = None
        self._control: JanusHandle | None = None  # rooms and listings
        self._publishers: dict[str, _Publisher] = {}  # participant id -> its publisher
        self._rooms_made: set[str] = set()
        self._listings: dict[str, tuple[float, asyncio.Future[list[dict[str, Any]]]]] = {}
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()  # set while a session with Janus is up

    def _token(self) -> str:
        return signed_token(self.config.secret, OWN_TOKEN_TTL_S)

    def wake(self) -> None:
        """Someone joined or left: publish or unpublish soon."""
        self._wake.set()

    def feed_id(self, participant: str) -> int:
        """The feed id of a participant's publisher: the same after a Janus restart."""
        digest = hashlib.sha256(f"{self.receiver}/{participant}".encode()).digest()
        return int.from_bytes(digest[:6]) or 1

    async def run(self) -> None:
        """Connect, publish, and reconnect whenever Janus goes away (until cancelled: then
        everything is unpublished)."""
        wait, said = RETRY_S[0], ""
        while True:
            try:
                session = await JanusSession.open(self.config.url, self._token)
            except Exception as error:  # JanusError mostly; whatever it is, retry
                if str(error) != said:  # one line per new state, not one per retry
                    log.warning("SFU: %s; retrying", error)
                    said = str(error)
                self.metrics.inc("sfu_errors_total", kind="connect")
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_S[1])
                continue
            log.info("SFU: connected to Janus at %s", self.config.url)
            wait, said = RETRY_S[0], ""
            try:
                self._session, self._control = session, await session.attach()
                self.connected.set()
                await self._keep_published(session)
            except Exception as error:  # a session that fails is started again
                log.warning("SFU: %s; reconnecting", error or type(error).__name__)
                self.metrics.inc("sfu_errors_total", kind="session")
            finally:
                self.connected.clear()
                self._session = self._control = None
                await self._unpublish_all()
                self._rooms_made.clear()
                await session.close()
            await asyncio.sleep(RETRY_S[0])

    async def _keep_published(self, session: JanusSession) -> None:
        while not session.gone.is_set():
            await self._sync(session)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SYNC_S):
                    await self._wake.wait()
        raise JanusError("the Janus session ended (did Janus restart?)")

    async def _sync(self, session: JanusSession) -> None:
        sending = {
            p.id: p for p in self.rooms.participants() if p.publishing and p.stream is not None
        }
        for participant_id, gone in list(self._publishers.items()):
            if participant_id not in sending or not gone.alive:
                self._publishers.pop(participant_id, None)
                await gone.close()
        for participant_id, participant in sending.items():
            publisher = self._publishers.get(participant_id)
            if publisher is not None and publisher.avatar != participant.avatar_id:
                await self._rename(publisher)
            if publisher is None:
                try:
                    self._publishers[participant_id] = await self._publish(session, participant)
                except JanusGone:
                    raise
                except Exception as error:  # aiortc or Janus: tried again at the next sync
                    log.warning("SFU: cannot publish %s: %s", participant_id, error)
                    self.metrics.inc("sfu_errors_total", kind="publish")

    async def _ensure_room(self, room: str) -> None:
        if room in self._rooms_made or self._control is None:
            return
        secret = self.config.secret
        try:
            await self._control.request(
                {
                    "request": "create",
                    "room": janus_room(room),
                    "admin_key": secret,
                    "secret": room_secret(secret, room),
                    "pin": room_pin(secret, room),
                    "allowed": [publisher_token(secret, room)],  # publishers only (433 else)
                    "is_private": True,  # not listed to whoever asks Janus for its rooms
                    "publishers": self.config.max_publishers,
                    "videocodec": "vp8,h264",
                    "description": f"telepresence room {room}",
                }
            )
        except JanusError as error:
            if f"({ROOM_EXISTS})" not in str(error):  # another receiver, or before a reconnect
                raise
        self._rooms_made.add(room)

    async def _publish(self, session: JanusSession, participant: Participant) -> _Publisher:
        assert participant.stream is not None
        await self._ensure_room(participant.room)
        room, secret = participant.room, self.config.secret
        feed = self.feed_id(participant.id)
        generation = secrets.token_hex(4)
        handle = await session.attach()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice))
        try:
            await handle.message(
                {
                    "request": "join",
                    "ptype": "publisher",
                    "room": janus_room(room),
                    "pin": room_pin(secret, room),
                    "token": publisher_token(secret, room),
                    "id": feed,
                    "display": self._display(participant, generation),
                }
            )
            track = PublishedTrack(participant.stream, "vp8")
            sender = pc.addTransceiver(track, direction="sendonly").sender
            await pc.setLocalDescription(await pc.createOffer())
            event = await handle.message(
                {"request": "publish"},
                jsep={"type": "offer", "sdp": pc.localDescription.sdp},
            )
            if event.jsep is None or event.jsep.get("type") != "answer":
                raise JanusError("Janus answered the publish request without an SDP answer")
            codecs = negotiated_video_codecs(event.jsep["sdp"])
            track.codec = CODECS.get(next(iter(codecs.values()), ""), "vp8")
            await pc.setRemoteDescription(RTCSessionDescription(event.jsep["sdp"], "answer"))
            watch_rtcp(sender, track.request_keyframe, track.set_bitrate)
        except BaseException:
            await _close_peer(pc)
            await handle.detach()
            raise
        self.metrics.inc("sfu_publishers_total")
        log.info("SFU: publishing %s as feed %d in room %r", participant.id, feed, room)
        return _Publisher(participant, handle, pc, participant.avatar_id or "", generation)

    def _display(self, participant: Participant, generation: str) -> str:
        return feed_display(
            self.config.secret,
            participant.room,
            self.feed_id(participant.id),
            participant=participant.id,
            receiver=self.receiver,
            avatar=participant.avatar_id or "",
            generation=generation,
        )

    async def _rename(self, publisher: _Publisher) -> None:
        """The sender switched avatars: its feed's display name says so (viewers' labels)."""
        participant = publisher.participant
        try:
            await publisher.handle.message(
                {
                    "request": "configure",
                    "display": self._display(participant, publisher.generation),
                }
            )
        except JanusError as error:
            log.warning("SFU: cannot rename %s's feed: %s", participant.id, error)
            return
        publisher.avatar = participant.avatar_id or ""

    async def _participants(self, room: str) -> list[dict[str, Any]]:
        if self._control is None:
            raise SfuUnavailable("the receiver is reconnecting to the SFU")
        try:
            answer = await self._control.request(
                {"request": "listparticipants", "room": janus_room(room)}
            )
        except JanusError as error:
            if "(426)" in str(error):  # no such room: nobody publishes in it yet
                return []
            raise
        return list(answer.get("participants", []))

    async def _list_feeds(self, room: str) -> list[dict[str, Any]]:
        try:
            entries = await self._participants(room)
        except JanusError as error:
            raise SfuUnavailable(str(error)) from None
        feeds = [
            feed
            for entry in entries
            if entry.get("publisher")  # its media flows
            and (feed := signed_feed(self.config.secret, room, entry)) is not None
        ]
        return sorted(feeds, key=lambda feed: feed["feed"])  # the same order at every poll

    async def _feeds(self, room: str) -> list[dict[str, Any]]:
        """The room's signed feeds, listed at most once per LISTING_S however many viewers ask
        (each one polls every second)."""
        now = time.monotonic()
        cached = self._listings.get(room)
        if cached is None or now - cached[0] >= LISTING_S:
            for stale in [r for r, (at, _) in self._listings.items() if now - at >= LISTING_S]:
                del self._listings[stale]
            cached = self._listings[room] = (now, asyncio.ensure_future(self._list_feeds(room)))
        return await asyncio.shield(cached[1])

    async def room_media(self, room: str) -> dict[str, Any]:
        """Where viewers of ``room`` get its avatars: Janus's URL, the VideoRoom, its pin, a
        token for the viewer, and the signed feeds (from every receiver)."""
        feeds = await self._feeds(room)
        return {
            "kind": "janus",
            "url": self.config.viewer_url,
            "room": janus_room(room),
            "pin": room_pin(self.config.secret, room),
            "token": signed_token(self.config.secret, self.config.token_ttl_s),
            "token_ttl": self.config.token_ttl_s,
            "feeds": feeds,
        }

    async def _unpublish_all(self) -> None:
        publishers = list(self._publishers.values())
        self._publishers.clear()
        for publisher in publishers:
            with contextlib.suppress(JanusError):
                await publisher.close()
