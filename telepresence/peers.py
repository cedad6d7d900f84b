"""aiortc peer setup: one RTCPeerConnection per participant, its data channels and video seats."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from npga.codes import decode_frame
from npga.framing import FRAMINGS, Framer
from telepresence.avatars import AvatarRegistry
from telepresence.config import Limits, ServerConfig
from telepresence.encode import CODECS, negotiated_video_codecs, watch_rtcp
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.scheduler import RenderScheduler
from telepresence.sctp_guard import limit_message_size
from telepresence.streams import StreamHub
from telepresence.tracks import AvatarTrack
from telepresence.turn import TurnProbe, ice_servers_json

log = logging.getLogger(__name__)

ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The ctrl channel's message types (docs/protocol.md; served to the web client by /api/config).
CTRL_REQUESTS = ("calibrate", "stats", "avatar", "framing")  # client -> server
CTRL_REPLIES = ("ack", "stats", "avatar", "framing", "seats", "error")  # server -> client
CONNECT_TIMEOUT_S = 30.0
MAX_REPORTED_LATENCY_MS = 60_000.0


class OfferError(Exception):
    """A refused offer: ``status`` and a one-line message for the JSON answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OfferRequest:
    sdp: str
    type: str
    role: str
    avatar: str | None
    token: str | None
    see_self: bool
    framing: str = "auto"

    @classmethod
    def parse(cls, body: Any, limits: Limits) -> OfferRequest:
        """A JSON offer body, checked before aiortc sees it: SDP size and media sections are
        bounded (one data section and ``video_seats`` video sections at most)."""
        if not isinstance(body, dict):
            raise OfferError("offer must be a JSON object")
        sdp, kind, role = body.get("sdp"), body.get("type"), body.get("role", "viewer")
        if not isinstance(sdp, str) or not sdp.strip():
            raise OfferError("offer needs 'sdp' (a non-empty string)")
        if kind != "offer":
            raise OfferError("'type' must be \"offer\"")
        if len(sdp) > limits.max_sdp_bytes:
            raise OfferError(
                f"SDP offer of {len(sdp)} bytes; at most {limits.max_sdp_bytes}", status=413
            )
        if not sdp.lstrip().startswith("v=0") or "\nm=" not in sdp:
            raise OfferError("malformed SDP offer: needs 'v=0' and at least one 'm=' section")
        sections = sdp.count("\nm=")
        if sections > limits.video_seats + 1:
            raise OfferError(
                f"SDP offer with {sections} media sections; at most {limits.video_seats + 1} "
                f"(one data channel section and {limits.video_seats} video seats)"
            )
        if role not in ("sender", "viewer"):
            raise OfferError('\'role\' must be "sender" or "viewer"')
        avatar, token = body.get("avatar"), body.get("token")
        if avatar is not None and not isinstance(avatar, str):
            raise OfferError("'avatar' must be a string")
        if token is not None and not isinstance(token, str):
            raise OfferError("'token' must be a string")
        see_self = body.get("see_self", role == "sender")
        if not isinstance(see_self, bool):
            raise OfferError("'see_self' must be true or false")
        framing = body.get("framing", "auto")
        if framing not in FRAMINGS:
            raise OfferError(f"'framing' must be one of {', '.join(map(repr, FRAMINGS))}")
        return cls(sdp, kind, role, avatar, token, see_self, framing)


class PeerManager:
    def __init__(
        self,
        config: ServerConfig,
        avatars: AvatarRegistry,
        rooms: RoomRegistry,
        metrics: Metrics,
        streams: StreamHub,
        renderer: RenderScheduler,
    ) -> None:
        self.streams = streams  # every sender's avatar stream, encoded once for all viewers
        self.renderer = renderer  # woken by frames and seat changes; its level is in stats
        self.turn = TurnProbe(config.turn_urls)  # which TURN servers the peers gather from
        self.config = config
        self.avatars = avatars
        self.rooms = rooms
        self.metrics = metrics
        self._peers: dict[str, tuple[RTCPeerConnection, Participant]] = {}
        self._watchdogs: dict[str, asyncio.Task[None]] = {}  # close peers that never connect
        self._closing: set[asyncio.Task[None]] = set()  # peers being closed for misbehaving

    @property
    def active(self) -> int:
        """Peers that hold a session slot (connecting or connected)."""
        return len(self._peers)

    @property
    def connected(self) -> int:
        return sum(pc.connectionState == "connected" for pc, _ in self._peers.values())

    async def handle_offer(self, room_name: str, request: OfferRequest) -> dict[str, str]:
        if not ROOM_NAME.fullmatch(room_name):  # no trailing newline ('$' would allow one)
            raise OfferError("room names are 1-64 letters, digits, '-' or '_'")
        avatar_id = None
        if request.role == "sender":
            avatar_id = request.avatar or self.avatars.default_id
            try:
                self.avatars.get(avatar_id)
            except KeyError as error:
                raise OfferError(str(error.args[0]), status=404) from None
        participant = self.rooms.join(room_name, request.role, avatar_id, request.see_self)
        if avatar_id is not None:
            participant.framer = Framer(self.avatars.get(avatar_id).head, request.framing)
            participant.stream = self.streams.open(participant.id)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers(participant.id)))
        self._peers[participant.id] = (pc, participant)
        self._wire(pc, participant)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(request.sdp, request.type))
        except Exception as error:  # aiortc raises ValueError, KeyError, ... on bad SDP
            await self.close(participant.id)
            self.metrics.inc("errors_total", kind="sdp")
            raise OfferError(f"malformed SDP offer: {error or type(error).__name__}") from None
        if pc.sctp is not None:
            limit_message_size(pc.sctp, lambda held: self._oversize(participant.id, held))
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        tracks = [
            AvatarTrack(self.streams, self.rooms, participant, seat, "vp8")
            for seat in range(min(len(video), self.config.limits.video_seats))
        ]
        try:
            senders = [pc.addTrack(track) for track in tracks]
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # an offer aiortc parsed but cannot answer
            await self.close(participant.id)
            self.metrics.inc("errors_total", kind="sdp")
            raise OfferError(f"cannot answer this offer: {error or type(error).__name__}") from None
        codecs = negotiated_video_codecs(pc.localDescription.sdp)
        for track, sender in zip(tracks, senders, strict=True):
            mid = next(t.mid for t in pc.getTransceivers() if t.sender is sender)
            track.codec = CODECS.get(codecs.get(mid, ""), "vp8")
            watch_rtcp(sender, track.request_keyframe, track.set_bitrate)
        participant.seats = len(tracks)
        self.renderer.wake()  # its seats may show an avatar nobody watched until now
        self.metrics.inc("video_tracks_total", len(tracks))
        self._watchdogs[participant.id] = asyncio.create_task(
            self._close_if_never_connected(participant.id)
        )
        self.metrics.inc("sessions_total", role=request.role)
        return {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "participant": participant.id,
        }

    def _oversize(self, participant_id: str, held: int) -> None:
        """A peer sent a data-channel message over the advertised max-message-size: its
        association is closed (aborted) with the peer."""
        self.metrics.inc("errors_total", kind="oversize")
        log.warning("peer %s: data-channel message over %d bytes: closed", participant_id, held)
        closing = asyncio.create_task(self.close(participant_id))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close_if_never_connected(self, participant_id: str) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        entry = self._peers.get(participant_id)
        if entry is not None and entry[0].connectionState != "connected":
            await self.close(participant_id)

    def _ice_servers(self, user: str) -> list[RTCIceServer]:
        """The server's own STUN/TURN servers (TURN credentials minted for this peer)."""
        config = self.config
        servers = ice_servers_json(
            config.ice_servers,
            self.turn.reachable,
            config.turn_secret,
            f"server-{user}",
            config.turn_ttl_s,
        )
        return [RTCIceServer(**server) for server in servers]

    def _wire(self, pc: RTCPeerConnection, participant: Participant) -> None:
        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(participant.id)

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if channel.label == "expr":
                channel.on("message", lambda message: self._on_expr(participant, message))
            elif channel.label == "ctrl":
                participant.send_ctrl = lambda msg: _send_json(channel, msg)
                channel.on("message", lambda message: self._on_ctrl(participant, message))
                channel.on("open", lambda: self._announce(participant))
                if channel.readyState == "open":
                    self._announce(participant)
            else:
                self.metrics.inc("errors_total", kind="channel")
                channel.close()

    def _announce(self, participant: Participant) -> None:
        room = self.rooms.room_of(participant)
        if room is not None:
            self.rooms.announce(room)
        self.renderer.wake()

    def _error(self, participant: Participant, kind: str, message: str) -> None:
        self.metrics.inc("errors_total", kind=kind)
        if participant.send_ctrl is not None:
            participant.send_ctrl({"type": "error", "kind": kind, "error": message})

    def _on_expr(self, participant: Participant, message: Any) -> None:
        limits = self.config.limits
        if not participant.expr_rate.take():
            self.metrics.inc("frames_dropped_total", reason="rate")
            self._rate_error(participant, "expr", limits.max_messages_per_second)
            return
        if not isinstance(message, bytes):
            self._error(participant, "expr", "expr messages must be binary expression frames")
            return
        if len(message) > limits.max_message_bytes:
            self._error(
                participant,
                "expr",
                f"message of {len(message)} bytes exceeds {limits.max_message_bytes}",
            )
            return
        if not participant.publishing:
            self._error(participant, "expr", "viewers cannot send expression frames")
            return
        assert participant.avatar_id is not None
        dim = self.avatars.get(participant.avatar_id).expression_dim
        try:
            frame = decode_frame(message, expected_dim=dim)
        except ValueError as error:
            self._error(participant, "expr", str(error))
            return
        if participant.accept(frame):
            self.metrics.inc("frames_received_total")
            if self.streams.timeline is not None:
                self.streams.timeline.mark(participant.id, frame.seq, "received")
            self.renderer.wake()
        else:
            self.metrics.inc("frames_dropped_total", reason="stale")

    def _rate_error(self, participant: Participant, channel: str, rate: float) -> None:
        now = time.monotonic()
        if now - participant.rate_errors_at.get(channel, 0.0) > 1.0:  # at most once a second
            participant.rate_errors_at[channel] = now
            self._error(
                participant, "rate", f"over {rate:g} {channel} messages/s: extra messages dropped"
            )

    def _on_ctrl(self, participant: Participant, message: Any) -> None:
        if not participant.ctrl_rate.take():
            self.metrics.inc("ctrl_dropped_total", reason="rate")
            self._rate_error(participant, "ctrl", self.config.limits.max_ctrl_per_second)
            return
        if not isinstance(message, str) or len(message) > self.config.limits.max_message_bytes:
            self._error(participant, "ctrl", "ctrl messages are JSON text of at most 1 KiB")
            return
        try:
            request = json.loads(message)
        except json.JSONDecodeError as error:
            self._error(participant, "ctrl", f"ctrl message is not JSON ({error})")
            return
        kind = request.get("type") if isinstance(request, dict) else None
        reply = participant.send_ctrl or (lambda _: None)
        if kind == "calibrate":
            reply({"type": "ack", "of": "calibrate"})  # senders calibrate their own neutral
        elif kind == "stats":
            self._observe_client_latency(participant, request)
            reply(
                {
                    "type": "stats",
                    "participant": participant.id,
                    "frames_accepted": participant.frames_accepted,
                    "frames_dropped": participant.frames_dropped,
                    "rendered_seq": _shown_seq(participant),
                    "render": self.renderer.load.describe(),
                }
            )
        elif kind == "avatar":
            self._switch_avatar(participant, request.get("avatar"))
        elif kind == "framing":
            self._switch_framing(participant, request.get("framing"))
        else:
            self._error(participant, "ctrl", f"unknown ctrl message type {kind!r}")

    def _observe_client_latency(self, participant: Participant, request: dict[str, Any]) -> None:
        """A stats request may carry the client's end-to-end latency of its own avatar
        (``e2e_ms``: measured from stamped frames, or ``estimated`` from its parts): it goes
        into the ``client_e2e_ms`` or ``client_e2e_estimate_ms`` histogram of /metrics."""
        latency = request.get("e2e_ms")
        if latency is None:
            return
        valid = isinstance(latency, int | float) and not isinstance(latency, bool)
        if not valid or not 0.0 <= latency <= MAX_REPORTED_LATENCY_MS:  # NaN fails too
            self._error(participant, "ctrl", f"'e2e_ms' must be 0-{MAX_REPORTED_LATENCY_MS:g}")
            return
        estimated = request.get("estimated") is True
        self.metrics.observe("client_e2e_estimate_ms" if estimated else "client_e2e_ms", latency)

    def _switch_avatar(self, participant: Participant, avatar_id: Any) -> None:
        if participant.role != "sender":
            self._error(participant, "ctrl", "only senders choose an avatar")
            return
        try:
            avatar = self.avatars.get(str(avatar_id))
        except KeyError as error:
            self._error(participant, "ctrl", str(error.args[0]))
            return
        participant.avatar_id = avatar.id
        mode = participant.framer.mode if participant.framer is not None else "auto"
        participant.framer = Framer(avatar.head, mode)
        participant.latest = None  # codes of the old avatar's space mean nothing to the new one
        self._announce(participant)
        if participant.send_ctrl is not None:
            participant.send_ctrl(
                {"type": "avatar", "avatar": avatar.id, "expression_dim": avatar.expression_dim}
            )

    def _switch_framing(self, participant: Participant, mode: Any) -> None:
        if participant.framer is None:
            self._error(participant, "ctrl", "only senders choose a framing")
            return
        if mode not in FRAMINGS:
            self._error(participant, "ctrl", f"framing must be one of {', '.join(FRAMINGS)}")
            return
        participant.framer = Framer(participant.framer.head, str(mode))
        if participant.send_ctrl is not None:
            participant.send_ctrl({"type": "framing", "framing": mode})

    async def close(self, participant_id: str) -> None:
        watchdog = self._watchdogs.pop(participant_id, None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        entry = self._peers.pop(participant_id, None)
        if entry is None:
            return
        pc, participant = entry
        participant.send_ctrl = None
        self.rooms.leave(participant)
        participant.stream = None
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        await self.streams.close(participant_id)
        try:
            await pc.close()
        except Exception as error:  # a peer aiortc half set up from a hostile offer
            log.warning("closing peer %s failed: %r", participant_id, error)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(pid) for pid in list(self._peers)))


def _shown_seq(participant: Participant) -> int | None:
    """The seq of the expression frame its avatar video shows now (None: neutral or none)."""
    frame = participant.stream.frame if participant.stream is not None else None
    return frame.seq if frame is not None else None


def _send_json(channel: RTCDataChannel, message: dict[str, Any]) -> None:
    if channel.readyState == "open":
        channel.send(json.dumps(message))
