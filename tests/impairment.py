"""A user-space network impairment for the tests: loss, delay and jitter between one WebRTC
client and the server, with no root tools (this kernel has no ``netem``).

``ImpairedServer`` is an HTTP front for a real server. Every offer that passes through it gets
a ``UdpImpairment``: a relay with two UDP ports on loopback, one that the client sees as the
server's only ICE candidate and one that the server sees as the client's only one. The offer's
and the answer's candidates are rewritten to those ports, so the relay is the only ICE path:
every STUN check, DTLS record, RTP and SCTP packet crosses it, in both directions, and each is
dropped with probability ``loss`` or held for ``delay ± jitter`` (uniform). Packets leave in
the order they came (a queue, as on a real path: jitter does not reorder them).

``outage(seconds)`` drops everything in both directions for a while (a dead Wi-Fi).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import aiohttp
import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer

from telepresence.probe import FrameProbe
from telepresence.sender import TelepresenceClient
from telepresence.sources import SendOptions, synthetic_frames

CANDIDATE = re.compile(r"^a=candidate:.*$", re.MULTILINE)
HOST_CANDIDATE = re.compile(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host")


@dataclass
class Impairment:
    """Loss (a probability per packet) and one-way delay of each direction."""

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # the delay is uniform in delay ± jitter

    def hold_s(self, rng: random.Random) -> float:
        return max(0.0, self.delay_ms + rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1e3


@dataclass
class _Direction:
    """One way through the relay: a queue that keeps packets in order."""

    impairment: Impairment
    rng: random.Random
    last_due: float = 0.0
    forwarded: int = 0
    dropped: int = 0

    def due(self, now: float, outage_until: float) -> float | None:
        """When a packet that arrives now leaves, or None (dropped)."""
        if now < outage_until or self.rng.random() < self.impairment.loss:
            self.dropped += 1
            return None
        self.forwarded += 1
        self.last_due = max(now + self.impairment.hold_s(self.rng), self.last_due)
        return self.last_due


class _Port(asyncio.DatagramProtocol):
    def __init__(self, on_packet: object) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_packet(data, addr)  # type: ignore[operator]


@dataclass
class UdpImpairment:
    """The relay of one peer connection (see the module docstring)."""

    impairment: Impairment
    server_address: tuple[str, int]  # the server's ICE host candidate
    seed: int = 0
    client_address: tuple[str, int] | None = None  # learnt from the first packet
    outage_until: float = 0.0
    _client_side: _Port | None = None
    _server_side: _Port | None = None
    _up: _Direction = field(init=False)
    _down: _Direction = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._up = _Direction(self.impairment, random.Random(rng.random()))
        self._down = _Direction(self.impairment, random.Random(rng.random()))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, client_side = await loop.create_datagram_endpoint(
            lambda: _Port(self._from_client), local_addr=("127.0.0.1", 0)
        )
        _, server_side = await loop.create_datagram_endpoint(
            lambda: _Port(self._from_server), local_addr=("127.0.0.1", 0)
        )
        self._client_side, self._server_side = client_side, server_side

    @property
    def client_facing_port(self) -> int:
        assert self._client_side is not None and self._client_side.transport is not None
        return int(self._client_side.transport.get_extra_info("sockname")[1])

    @property
    def server_facing_port(self) -> int:
        assert self._server_side is not None and self._server_side.transport is not None
        return int(self._server_side.transport.get_extra_info("sockname")[1])

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds

    def counts(self) -> dict[str, int]:
        up, down = self._up, self._down
        return {"up_forwarded": up.forwarded, "up_dropped": up.dropped,
                "down_forwarded": down.forwarded, "down_dropped": down.dropped}  # fmt: skip

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client_address = addr
        self._forward(self._up, self._server_side, data, self.server_address)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.client_address is not None:  # the client's checks come first
            self._forward(self._down, self._client_side, data, self.client_address)

    def _forward(
        self, way: _Direction, port: _Port | None, data: bytes, to: tuple[str, int]
    ) -> None:
        now = time.monotonic()
        due = way.due(now, self.outage_until)
        if due is None or port is None or port.transport is None:
            return
        asyncio.get_running_loop().call_later(due - now, _deliver, port.transport, data, to)

    def close(self) -> None:
        for port in (self._client_side, self._server_side):
            if port is not None and port.transport is not None:
                port.transport.close()


def _deliver(transport: asyncio.DatagramTransport, data: bytes, to: tuple[str, int]) -> None:
    if not transport.is_closing():  # the relay may be closed while packets are held
        transport.sendto(data, to)


def rewrite_candidates(sdp: str, port: int) -> str:
    """``sdp`` with every ICE candidate replaced by one host candidate at 127.0.0.1:``port``."""
    line = f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
    sections = sdp.split("\r\nm=")
    rewritten = []
    for section in sections:
        if CANDIDATE.search(section):
            section = CANDIDATE.sub("", section, count=0)
            section = re.sub(r"(\r\n)+", "\r\n", section)
            section = section.rstrip("\r\n") + "\r\n" + line
        rewritten.append(section)
    return "\r\nm=".join(rewritten).rstrip("\r\n") + "\r\n"


def server_candidate(sdp: str) -> tuple[str, int]:
    found = HOST_CANDIDATE.search(sdp)
    if found is None:
        raise ValueError("the answer has no UDP host candidate")
    return found.group(1), int(found.group(2))


@dataclass
class ImpairedServer:
    """An HTTP front for ``upstream``: offers get a relay each (``relays``, newest last)."""

    upstream: str
    impairment: Impairment
    relays: list[UdpImpairment] = field(default_factory=list)
    url: str = ""
    outage_until: float = 0.0  # offers are refused too while the network is down

    async def _offer(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.outage_until:
            return web.json_response({"error": "network down (impairment outage)"}, status=502)
        body = await request.json()
        relay = UdpImpairment(self.impairment, ("127.0.0.1", 0), seed=len(self.relays))
        await relay.start()
        body["sdp"] = rewrite_candidates(body["sdp"], relay.server_facing_port)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.upstream}{request.path}", json=body) as response,
        ):
            answer = await response.json(content_type=None)
        if response.status != 200:
            relay.close()
            return web.json_response(answer, status=response.status)
        relay.server_address = server_candidate(answer["sdp"])
        answer["sdp"] = rewrite_candidates(answer["sdp"], relay.client_facing_port)
        self.relays.append(relay)
        return web.json_response(answer)

    async def _forward(self, request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.upstream}{request.path_qs}") as response,
        ):
            return web.Response(
                body=await response.read(),
                status=response.status,
                content_type=response.content_type,
            )

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds
        for relay in self.relays:
            relay.outage(seconds)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ImpairedServer]:
        app = web.Application()
        app.router.add_post("/api/rooms/{room}/offer", self._offer)
        app.router.add_get("/{path:.*}", self._forward)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self.url = str(server.make_url("")).rstrip("/")
        try:
            yield self
        finally:
            await server.close()
            for relay in self.relays:
                relay.close()


@dataclass
class SessionReport:
    """One sender watching its own avatar through an impaired path."""

    connect_s: float  # offer -> peer connected (ICE, DTLS and SCTP over the relay)
    first_frame_s: float  # offer -> first decoded video frame
    seconds: float  # the measured span (sending)
    frames_decoded: int
    avatar_frames: int  # distinct expression frames seen in the video (stamped seqs)
    frame_times: list[tuple[int, float, float]]  # (seq, capture, decode), time.time()
    reconnects: int
    relay_counts: dict[str, int]
    outage_end: float | None = None  # time.time() when a total outage ended

    @property
    def first_capture(self) -> float:
        return min(capture for _, capture, _ in self.frame_times)

    def avatar_fps_between(self, start_s: float, end_s: float) -> float:
        """Distinct avatar frames a second, of those captured in [start, end) s."""
        first = self.first_capture
        count = sum(start_s <= capture - first < end_s for _, capture, _ in self.frame_times)
        return count / (end_s - start_s)

    @property
    def recovery_s(self) -> float | None:
        """From the end of the outage to the first frame shown that was captured after it."""
        if self.outage_end is None:
            return None
        shown = [t for _, capture, t in self.frame_times if capture >= self.outage_end]
        return min(shown) - self.outage_end if shown else float("inf")

    @property
    def fps(self) -> float:
        return self.frames_decoded / self.seconds

    @property
    def avatar_fps(self) -> float:
        return self.avatar_frames / self.seconds

    def latency_p(self, percent: float, start_s: float = 0.0, end_s: float = 1e9) -> float | None:
        """The ``percent`` percentile of e2e latency (ms) of frames captured in [start, end) s
        after the first capture."""
        if not self.frame_times:
            return None
        first = self.first_capture
        chosen = [1e3 * (shown - capture) for _, capture, shown in self.frame_times
                  if start_s <= capture - first < end_s]  # fmt: skip
        return float(np.percentile(chosen, percent)) if chosen else None

    def summary(self) -> dict[str, float | int | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "connect_s": round(self.connect_s, 2),
            "first_frame_s": round(self.first_frame_s, 2),
            "fps": round(self.fps, 1),
            "avatar_fps": round(self.avatar_fps, 1),
            "p50_ms": rounded(self.latency_p(50)),
            "p95_ms": rounded(self.latency_p(95)),
            "p95_first_10s_ms": rounded(self.latency_p(95, 0, 10)),
            "p95_after_10s_ms": rounded(self.latency_p(95, 10)),
            "p95_last_20s_ms": rounded(self.latency_p(95, max(0.0, self.seconds - 20))),
            "reconnects": self.reconnects,
            **({"recovery_s": rounded(self.recovery_s)} if self.outage_end else {}),
            **self.relay_counts,
        }


async def impaired_session(
    upstream: str,
    impairment: Impairment,
    seconds: float,
    expression_dim: int,
    outage: tuple[float, float] | None = None,
) -> SessionReport:
    """A sender of room "impaired" on ``upstream`` (a server with ``stamp_frames``) through
    ``impairment`` for ``seconds``; ``outage``: (start, length) s of a total outage."""
    probe = FrameProbe()
    front = ImpairedServer(upstream, impairment)
    async with front.running():
        client = TelepresenceClient(
            front.url, "impaired", "sender", seats=1, see_self=True, on_frame=probe,
            reconnect=True,
        )  # fmt: skip
        started = time.monotonic()
        try:
            await client.connect(timeout=30.0)
            connect_s = time.monotonic() - started
            await client.wait_channels()
            first_frame_s, outage_done, outage_end = None, outage is None, None
            send_start = time.monotonic()
            async for frame in synthetic_frames(expression_dim, SendOptions(seconds=seconds)):
                if first_frame_s is None and probe.frames:
                    first_frame_s = time.monotonic() - started
                if not outage_done and outage and time.monotonic() - send_start >= outage[0]:
                    front.outage(outage[1])
                    outage_done, outage_end = True, time.time() + outage[1]
                probe.sent(frame.seq, frame.timestamp)
                client.send_frame(frame)
            await asyncio.sleep(0.5)  # the last frames in flight
            counts: dict[str, int] = {}
            for relay in front.relays:
                for key, value in relay.counts().items():
                    counts[key] = counts.get(key, 0) + value
            return SessionReport(
                connect_s=connect_s,
                first_frame_s=first_frame_s if first_frame_s is not None else float("nan"),
                seconds=seconds,
                frames_decoded=probe.frames,
                avatar_frames=len(probe.distinct_seqs),
                frame_times=probe.frame_times(),
                reconnects=client.stats.reconnects,
                relay_counts=counts,
                outage_end=outage_end,
            )
        finally:
            await client.close()
            probe.close()
