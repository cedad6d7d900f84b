"""Short-lived TURN credentials (the TURN REST API scheme coturn calls ``use-auth-secret``), and
a probe of whether the TURN servers answer.

username = "<expiry unix time>:<user>", password = base64(HMAC-SHA1(secret, username)). coturn,
configured with the same ``static-auth-secret``, accepts them until the expiry.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import struct
import time
from typing import Any

log = logging.getLogger(__name__)


def turn_credentials(
    secret: str, user: str, ttl_s: float, now: float | None = None
) -> tuple[str, str]:
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_json(
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    turn_secret: str | None,
    user: str,
    ttl_s: float,
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a client (browser or Python) with fresh TURN credentials."""
    servers: list[dict[str, Any]] = [{"urls": url} for url in stun_urls]
    if turn_urls and turn_secret is not None:
        username, credential = turn_credentials(turn_secret, user, ttl_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers


# ---------------------------------------------------------------- is the TURN server there?

PROBE_EVERY_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 1.0
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_MAGIC_COOKIE = 0x2112A442


def turn_address(url: str) -> tuple[str, int, str]:
    """``turn:host[:port][?transport=udp|tcp]`` or ``turns:...`` -> (host, port, "udp"|"tcp")."""
    scheme, _, rest = url.partition(":")
    where, _, query = rest.partition("?")
    transport = "tcp" if scheme == "turns" or "transport=tcp" in query else "udp"
    if where.startswith("["):  # an IPv6 literal
        host, _, port = where[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = where.partition(":")
    return host, int(port) if port else (5349 if scheme == "turns" else 3478), transport


class _StunAnswer(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self.transaction = transaction
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if _is_binding_success(data, self.transaction) and not self.answered.done():
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable
        if not self.answered.done():
            self.answered.set_result(False)


def _is_binding_success(data: bytes, transaction: bytes) -> bool:
    if len(data) < 20:
        return False
    kind, _, cookie = struct.unpack("!HHI", data[:8])
    ours = cookie == STUN_MAGIC_COOKIE and data[8:20] == transaction
    return kind == STUN_BINDING_SUCCESS and ours


async def stun_answers(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Does the TURN server at ``url`` answer a STUN binding request within ``timeout``?
    (TURN servers answer binding requests without credentials.)"""
    host, port, transport = turn_address(url)
    transaction = os.urandom(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction
    try:
        async with asyncio.timeout(timeout):
            if transport == "tcp":  # a TLS (turns:) server is only checked for a listener
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    if url.startswith("turns:"):
                        return True
                    writer.write(request)
                    return _is_binding_success(await reader.readexactly(20), transaction)
                finally:
                    writer.close()
            loop = asyncio.get_running_loop()
            datagrams, protocol = await loop.create_datagram_endpoint(
                lambda: _StunAnswer(transaction), remote_addr=(host, port)
            )
            try:
                datagrams.sendto(request)
                return await protocol.answered
            finally:
                datagrams.close()
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return False


class TurnProbe:
    """Which of the server's TURN URLs answer, checked every ``PROBE_EVERY_SECONDS``: the
    server's own peers gather relay candidates only from those (aioice waits ~5 s for a TURN
    server that does not answer, on every offer). Clients still get every URL."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self.reachable: tuple[str, ...] = urls  # until the first check says otherwise

    async def check(self) -> None:
        answers = await asyncio.gather(*(stun_answers(url) for url in self.urls))
        reachable = tuple(url for url, ok in zip(self.urls, answers, strict=True) if ok)
        for url in self.urls:
            if (url in reachable) != (url in self.reachable):
                state = "answers again" if url in reachable else "does not answer"
                log.warning("TURN server %s %s: the server's peers %s it", url, state,
                            "use" if url in reachable else "skip")  # fmt: skip
        self.reachable = reachable

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_SECONDS)
            await self.check()
