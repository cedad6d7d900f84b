"""One log line per refused HTTP request (a 4xx), rate-limited, never a traceback.

An operator sees who was refused and why; a client that floods the server with bad requests
costs at most ``LINES_PER_SECOND`` lines a second, and the lines it did not get are counted in
the next one.

Requests that aiohttp itself cannot parse (a malformed request line or header, a
``Content-Encoding`` the body does not have, broken chunked framing; also in a body a handler
left unread, which aiohttp discards after the answer) are the client's fault, but aiohttp logs
each at ERROR with a traceback. ``quiet_client_faults`` turns those records into the same
one-line refusals; any other exception keeps its traceback (a real server fault).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from telepresence.metrics import Metrics
from telepresence.rooms import TokenBucket

log = logging.getLogger("telepresence.refused")
LINES_PER_SECOND = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RefusalLog:
    """The aiohttp middleware that logs refusals (one per app: it holds the rate limit)."""

    def __init__(self, metrics: Metrics, lines_per_second: float = LINES_PER_SECOND) -> None:
        self.metrics = metrics  # every refusal counts: refusals_total{status}
        self.bucket = TokenBucket(lines_per_second)
        self.unlogged = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:  # aiohttp's own refusals (404, 405, 413 ...)
            if 400 <= error.status < 500:
                self.refused(request, error.status, error.reason)
            raise
        if 400 <= response.status < 500:
            self.refused(request, response.status, _error_text(response))
        return response

    def refused(self, request: web.Request, status: int, why: str) -> None:
        path = request.path if len(request.path) <= 120 else request.path[:120] + "…"
        self._line(f"{request.method} {path} from {request.remote}", status, why)

    def _line(self, what: str, status: int, why: str) -> None:
        self.metrics.inc("refusals_total", status=str(status))
        if not self.bucket.take():
            self.unlogged += 1
            return
        more = f" (+{self.unlogged} more not logged)" if self.unlogged else ""
        self.unlogged = 0
        log.info("refused %s: %d %s%s", what, status, why[:200], more)

    def quiet_client_faults(self, app: web.Application) -> None:
        """While ``app`` runs, aiohttp's records of requests it could not parse are refusals."""

        def client_fault(record: logging.LogRecord) -> bool:
            error = record.exc_info[1] if record.exc_info else None
            if not isinstance(error, HttpProcessingError | RequestPayloadError):
                return True  # kept, with its traceback
            status = getattr(error, "code", 400) or 400
            message = str(getattr(error, "message", "") or error).strip().replace("\n", " ")
            self._line(f"a malformed request ({record.getMessage()})", status, message)
            return False

        async def filtering(app: web.Application) -> AsyncIterator[None]:
            server_log = logging.getLogger("aiohttp.server")
            server_log.addFilter(client_fault)
            yield
            server_log.removeFilter(client_fault)

        app.cleanup_ctx.append(filtering)


def _error_text(response: web.StreamResponse) -> str:
    text = getattr(response, "text", None)
    if not isinstance(text, str):
        return response.reason or ""
    try:
        return str(json.loads(text).get("error", ""))
    except (ValueError, AttributeError):
        return text[:200]
