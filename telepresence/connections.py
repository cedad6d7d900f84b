"""The HTTP server's connections: at most ``Limits.max_connections`` open at once.

aiohttp accepts every TCP connection and keeps it until it is idle for ``keepalive_timeout``
(``Limits.idle_connection_seconds``). Without a cap, a client that opens thousands of
half-open connections holds thousands of file descriptors and handlers. ``CappedAppRunner``
wraps aiohttp's connection factory: a connection over the cap is closed as soon as it is
accepted (the client sees a reset and may retry; nothing is parsed), and counted in
``/metrics`` as ``refusals_total{status="connection_cap"}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from telepresence.metrics import Metrics
from telepresence.rooms import TokenBucket

log = logging.getLogger("telepresence.refused")


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _CappedFactory:
    """aiohttp's ``web.Server`` (the protocol factory) with a cap on open connections; every
    other attribute is the server's own."""

    def __init__(self, server: web.Server, cap: int, metrics: Metrics) -> None:
        self._server = server
        self._cap = cap
        self._metrics = metrics
        self._log_bucket = TokenBucket(1.0)

    def __call__(self) -> asyncio.Protocol:
        if len(self._server.connections) < self._cap:
            return self._server()
        self._metrics.inc("refusals_total", status="connection_cap")
        if self._log_bucket.take():
            log.warning("refused a connection: %d open, the cap", self._cap)
        return _Refused()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class CappedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server accepts at most ``max_connections`` at once."""

    def __init__(
        self, app: web.Application, max_connections: int, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections
        self._metrics = metrics

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _CappedFactory(server, self._max_connections, self._metrics)  # type: ignore[return-value]
