"""Python sender/viewer client: an aiortc peer that sends expression frames and receives avatars."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from npga.codes import ExpressionFrame, encode_frame
from npga.tracking import ExpressionBasis
from telepresence.jitter import decode_on_marker

FrameCallback = Callable[[int, av.VideoFrame], None]
RECONNECT_S = (0.5, 5.0)  # reconnecting: the first and the longest wait between offers


class ClientError(RuntimeError):
    """The server refused us or could not be reached; one line."""


@dataclass
class ClientStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: dict[int, int] = field(default_factory=dict)  # per seat
    ctrl_errors: list[str] = field(default_factory=list)
    seats: list[dict[str, Any]] = field(default_factory=list)
    framing: str | None = None  # the framing the server last confirmed
    server: dict[str, Any] = field(default_factory=dict)  # the last ctrl stats reply
    reconnects: int = 0  # new peer connections after a lost one (``reconnect=True``)


async def receive_frames(
    seat: int, track: MediaStreamTrack, stats: ClientStats, on_frame: FrameCallback | None
) -> None:
    """Decode ``track`` (seat ``seat``) until it ends: counted in ``stats``, each video frame
    handed to ``on_frame``."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            stats.frames_received[seat] = stats.frames_received.get(seat, 0) + 1
            if on_frame is not None and isinstance(frame, av.VideoFrame):
                on_frame(seat, frame)


class TelepresenceClient:
    """One participant. ``seats`` recvonly video transceivers are offered (DESIGN: the server
    attaches one avatar track to each; a ``seats`` ctrl message says who is in which)."""

    def __init__(
        self,
        server: str,
        room: str,
        role: str,
        *,
        avatar: str | None = None,
        token: str | None = None,
        seats: int = 1,
        see_self: bool | None = None,
        framing: str = "auto",
        ice_servers: tuple[str, ...] = (),
        on_frame: FrameCallback | None = None,
        prefer_h264: bool = True,
        ice_from_server: bool = False,
        relay_only: bool = False,
        reconnect: bool = False,
    ) -> None:
        self.server = server.rstrip("/")
        self.room = room
        self.role = role
        self.avatar = avatar
        self.token = token
        self.seats = seats
        self.see_self = see_self if see_self is not None else role == "sender"
        self.framing = framing
        self.on_frame = on_frame
        self.prefer_h264 = prefer_h264
        self.stats = ClientStats()
        self.participant: str | None = None
        self.ice_servers = [RTCIceServer(urls=url) for url in ice_servers]
        self.ice_from_server = ice_from_server  # GET /api/ice (TURN credentials) before offering
        self.relay_only = relay_only  # iceTransportPolicy "relay": media only through TURN
        # a lost connection (ICE consent failed: see ice.check_consent) is offered again, with
        # backoff, until it is back or the client is closed
        self.reconnect = reconnect
        self.pc = self._new_peer_connection()
        self._receivers: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    def _new_peer_connection(self) -> RTCPeerConnection:
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=self.ice_servers, iceTransportPolicy=policy)
        )
        self._expr = pc.createDataChannel("expr", ordered=False, maxRetransmits=0)
        self._ctrl = pc.createDataChannel("ctrl")
        self._ctrl.on("message", self._on_ctrl)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_state(pc))
        return pc

    async def fetch_encoder(self, avatar: str) -> ExpressionBasis:
        data = await self._get_json(f"/api/avatars/{avatar}/encoder")
        return ExpressionBasis.from_json(data)

    async def fetch_avatars(self) -> list[dict[str, Any]]:
        data = await self._get_json("/api/avatars")
        return list(data["avatars"])

    async def fetch_room_media(self) -> dict[str, Any] | None:
        """Where the room's avatars come from for a viewer: None (this receiver: offer to it)
        or the SFU's details (telepresence/janus_viewer.py subscribes there)."""
        query = urllib.parse.urlencode({"token": self.token} if self.token else {})
        data = await self._get_json(f"/api/rooms/{self.room}/media?{query}")
        media = data.get("sfu")
        return media if isinstance(media, dict) else None

    async def _get_json(self, path: str) -> Any:
        try:
            async with aiohttp.ClientSession() as http, http.get(self.server + path) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    raise ClientError(
                        f"{self.server}{path} answered HTTP {response.status} without a JSON "
                        "object: is this a telepresence server?"
                    )
                if response.status != 200:
                    raise ClientError(f"{path}: {data.get('error', response.status)}")
                return data
        except aiohttp.ClientError as error:
            raise ClientError(f"cannot reach {self.server}: {error}") from None

    async def fetch_ice_servers(self) -> list[RTCIceServer]:
        query = urllib.parse.urlencode(
            {"room": self.room, "role": self.role, **({"token": self.token} if self.token else {})}
        )
        data = await self._get_json(f"/api/ice?{query}")
        return [RTCIceServer(**server) for server in data["iceServers"]]

    async def connect(self, timeout: float = 20.0) -> None:
        if self.ice_from_server:
            self.ice_servers = await self.fetch_ice_servers()
            await self.pc.close()
            self.pc = self._new_peer_connection()
        capabilities = RTCRtpReceiver.getCapabilities("video")
        codecs = capabilities.codecs if capabilities is not None else []
        if self.prefer_h264:  # the server sends tuned x264 packets; VP8 stays as a fallback
            codecs = sorted(codecs, key=lambda c: c.mimeType != "video/H264")
        for _ in range(self.seats):
            transceiver = self.pc.addTransceiver("video", direction="recvonly")
            transceiver.setCodecPreferences(codecs)
            decode_on_marker(transceiver.receiver)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {
            "sdp": self.pc.localDescription.sdp,
            "type": "offer",
            "role": self.role,
            "avatar": self.avatar,
            "token": self.token,
            "see_self": self.see_self,
            "framing": self.framing,
        }
        url = f"{self.server}/api/rooms/{self.room}/offer"
        try:
            async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
                answer = await response.json(content_type=None)
        except aiohttp.ClientError as error:
            raise ClientError(f"cannot reach {self.server}: {error}") from None
        except ValueError:
            raise ClientError(
                f"{url} answered HTTP {response.status} without JSON: is this a telepresence "
                "server?"
            ) from None
        if not isinstance(answer, dict):
            raise ClientError(f"{url} answered HTTP {response.status} without a JSON object")
        if response.status != 200:
            raise ClientError(f"offer refused ({response.status}): {answer.get('error')}")
        self.participant = answer["participant"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise ClientError(
                f"no WebRTC connection to {self.server} within {timeout:g} s"
            ) from None

    @property
    def channels_open(self) -> bool:
        return self._expr.readyState == "open" and self._ctrl.readyState == "open"

    async def wait_channels(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.channels_open:
            if time.monotonic() > deadline:
                raise ClientError("data channels did not open")
            await asyncio.sleep(0.02)

    def send_frame(self, frame: ExpressionFrame) -> int:
        """Send one expression frame if the channel is open; returns its size in bytes."""
        data = encode_frame(frame)
        return self.send_raw(data)

    def send_raw(self, data: bytes | str) -> int:
        if self._expr.readyState != "open":
            return 0
        self._expr.send(data)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        return len(data)

    def send_ctrl(self, message: dict[str, Any] | str) -> None:
        if self._ctrl.readyState == "open":
            self._ctrl.send(message if isinstance(message, str) else json.dumps(message))

    def _on_ctrl(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, json.JSONDecodeError):
            return
        if data.get("type") == "error":
            self.stats.ctrl_errors.append(str(data.get("error")))
        elif data.get("type") == "seats":
            self.stats.seats = list(data.get("seats", []))
        elif data.get("type") == "framing":
            self.stats.framing = str(data.get("framing"))
        elif data.get("type") == "stats":
            self.stats.server = data

    def own_seat(self) -> int | None:
        """The seat that shows this client's own avatar, once the server has said (seats)."""
        for seat in self.stats.seats:
            if seat.get("participant") == self.participant:
                return int(seat.get("seat", 0))
        return None

    def _on_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc:  # a connection given up for a new one
            return
        if pc.connectionState == "connected":
            self._connected.set()
        elif self._should_reconnect(pc.connectionState):
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    def _should_reconnect(self, state: str) -> bool:
        """A connection that was up is lost, and nobody closed the client."""
        lost = state in ("failed", "closed") and self._connected.is_set()
        return lost and self.reconnect and not self._closed and self._reconnecting is None

    async def _reconnect(self) -> None:
        """Offer again until connected: waits RECONNECT_S[0] s, doubling to RECONNECT_S[1]."""
        wait, longest = RECONNECT_S
        while not self._closed:
            await self.pc.close()
            self.pc = self._new_peer_connection()
            self._connected = asyncio.Event()
            try:
                await self.connect(timeout=10.0)
                await self.wait_channels()
            except ClientError:
                await asyncio.sleep(wait)
                wait = min(2 * wait, longest)
                continue
            self.stats.reconnects += 1
            break
        self._reconnecting = None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            return
        transceivers = [t for t in self.pc.getTransceivers() if t.kind == "video"]
        seat = next((i for i, t in enumerate(transceivers) if t.receiver.track is track), 0)
        self._receivers.append(asyncio.ensure_future(self._receive(seat, track)))

    async def _receive(self, seat: int, track: MediaStreamTrack) -> None:
        await receive_frames(seat, track, self.stats, self.on_frame)

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        await self.pc.close()
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
