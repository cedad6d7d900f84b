"""Property-based fuzzing of the HTTP API and of the ctrl and expr channels (issue 23).

One real server (with the avatar-creation routes and a token secret) runs on its own event
loop in a thread for the whole module; hypothesis sends it thousands of generated requests
and data-channel messages. Every answer must be a 2xx/3xx/4xx, never a 5xx, the server must
log no traceback and no error, and /healthz must keep answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aioice.ice
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_fixtures import TEST_SERVER_CONFIG, small_registry
from telepresence.app import METRICS, create_app, server_runner
from telepresence.auth import mint_token
from telepresence.ice import restrict_host_addresses
from telepresence.sender import TelepresenceClient
from test_hostile_connections import _healthz_ms

T = TypeVar("T")
SECRET = "fuzz-secret"
LIMITS = replace(TEST_SERVER_CONFIG.limits, max_ctrl_per_second=1e6, max_messages_per_second=1e6)
PATHS = [
    "/", "/healthz", "/metrics", "/api/config", "/api/avatars", "/api/avatars/anna/encoder",
    "/api/avatars/{x}/encoder", "/api/ice", "/api/rooms/{x}/offer", "/api/rooms/{x}/media",
    "/api/jobs/{x}", "/api/avatars/{x}", "/static/{x}", "/{x}",
]  # fmt: skip
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


# The server's thread uses the random module (aiortc, aioice) while hypothesis draws examples
# here; hypothesis takes that for a strategy that uses it. Ours do not.
RANDOM_IN_SERVER_THREAD = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)


class _Faults(logging.Handler):
    """Every log record at ERROR or above, or with a traceback, of any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@dataclass
class _Served:
    url: str
    loop: asyncio.AbstractEventLoop
    app: object
    faults: _Faults
    requests: int = 0
    healthz_ms: list[float] = field(default_factory=list)  # timed every 20th fuzz request

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Served]:
    store: Path = tmp_path_factory.mktemp("fuzz-store")
    config = replace(TEST_SERVER_CONFIG, secret=SECRET, limits=LIMITS, avatar_store=store, port=0)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        app = create_app(config, small_registry())
        runner = server_runner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        holder.update(app=app, runner=runner, url=f"http://127.0.0.1:{port}")
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    assert started.is_set()
    faults = _Faults()
    logging.getLogger().addHandler(faults)
    try:
        yield _Served(str(holder["url"]), loop, holder["app"], faults)
    finally:
        logging.getLogger().removeHandler(faults)
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"]))
    path = draw(st.sampled_from(PATHS)).replace(
        "{x}", draw(st.text(alphabet="abcAZ09-_.%/~ \\\x00é", min_size=0, max_size=30))
    )
    query = draw(st.dictionaries(st.sampled_from(["room", "role", "token", "x"]), TEXT, max_size=3))
    if "token" in query and draw(st.booleans()):  # a real token for some other room or role
        room = draw(st.sampled_from(["r1", "r2"]))
        role = draw(st.sampled_from(["sender", "viewer"]))
        query["token"] = mint_token(SECRET, room, role, draw(st.integers(1, 60)))
    headers = {}
    content_type = draw(st.sampled_from([None, "application/json", "text/plain",
                                         "application/json; charset=x-nope", "video/webm",
                                         "multipart/form-data; boundary=x"]))  # fmt: skip
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.integers(0, 9)) == 0:
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br", "nope"]))
    body_kind = draw(st.sampled_from(["none", "json", "bytes"]))
    body: bytes | None = None
    if body_kind == "json":
        body = json.dumps(draw(JSON)).encode()
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=300))
    return method, path, {"Connection": "close", **headers}, body  # type: ignore[return-value]


async def _request(
    base: str, method: str, path: str, headers: dict[str, str], body: bytes | None, query: dict
) -> int:
    async with aiohttp.ClientSession() as http, http.request(
        method, base + path, params=query, headers=headers, data=body,
        skip_auto_headers=["Content-Type"] if "Content-Type" not in headers else [],
    ) as response:  # fmt: skip
        await response.read()
        return response.status


async def _timed_healthz(base: str) -> float:
    async with aiohttp.ClientSession() as http:
        return await _healthz_ms(http, base)


def _assert_no_faults(served: _Served) -> None:
    faults = [f"{r.name}: {r.getMessage()[:200]}" for r in served.faults.records]
    assert not faults, faults[:5]


@RANDOM_IN_SERVER_THREAD
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests(), query=st.dictionaries(st.sampled_from(["room", "role", "token"]), TEXT))
def test_the_http_api_never_answers_5xx(
    served: _Served, request: tuple[str, str, dict[str, str], bytes | None], query: dict
) -> None:
    method, path, headers, body = request
    try:
        status = served.run(_request(served.url, method, path, headers, body, query))
    except aiohttp.InvalidURL:
        return  # the client library refuses to send it; nothing reached the server
    except aiohttp.ClientResponseError as error:  # an answer aiohttp's client cannot read back
        status = error.status  # (a 400 with a body to a HEAD request)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        status = 0  # the server closed a connection it could not parse: no 5xx
    assert isinstance(status, int) and status < 500, (method, path[:80], headers, status)
    _assert_no_faults(served)
    served.requests += 1
    if served.requests % 20 == 0:  # the server stays responsive while it is fuzzed
        served.healthz_ms.append(served.run(_timed_healthz(served.url)))


CTRL = st.one_of(
    JSON.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["calibrate", "stats", "avatar", "framing", "seats", "x"])},
        optional={"avatar": JSON, "framing": JSON, "e2e_ms": JSON, "estimated": JSON},
    ).map(json.dumps),
    TEXT,
)
EXPR = st.one_of(st.binary(max_size=200), TEXT)


@pytest.fixture(scope="module")
def peers(served: _Served) -> Iterator[list[TelepresenceClient]]:
    """A sender and a viewer connected to the fuzzed server (ICE on loopback)."""
    host_addresses = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])

    async def connect() -> list[TelepresenceClient]:
        clients = [  # made on the server's loop: aiortc binds a peer to the running loop
            TelepresenceClient(
                served.url, "r1", role, token=mint_token(SECRET, "r1", role, 600), seats=1
            )
            for role in ("sender", "viewer")
        ]
        for client in clients:
            await client.connect()
            await client.wait_channels()
        return clients

    clients = served.run(connect(), timeout=60)
    yield clients

    async def close() -> None:
        await asyncio.gather(*(client.close() for client in clients))

    served.run(close(), timeout=30)
    aioice.ice.get_host_addresses = host_addresses


@RANDOM_IN_SERVER_THREAD
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(channel=st.sampled_from(["ctrl", "expr"]), who=st.integers(0, 1), data=st.data())
def test_the_ctrl_and_expr_channels_survive_any_message(
    served: _Served, peers: list[TelepresenceClient], channel: str, who: int, data: st.DataObject
) -> None:
    client = peers[who]
    message = data.draw(CTRL if channel == "ctrl" else EXPR)

    async def send() -> None:
        if channel == "ctrl":
            client.send_ctrl(message if isinstance(message, str) else message.decode())
        else:
            client.send_raw(message)

    served.run(send())
    _assert_no_faults(served)


def test_after_the_fuzz_every_peer_is_served(
    served: _Served, peers: list[TelepresenceClient]
) -> None:
    """Runs after the fuzz tests (file order): the peers still get answers, /healthz is fast."""

    async def check() -> tuple[float, int]:
        sender = peers[0]
        before = len(sender.stats.ctrl_errors)
        sender.send_ctrl({"type": "stats"})
        deadline = time.monotonic() + 10
        while sender.stats.server.get("participant") != sender.participant:
            assert time.monotonic() < deadline, "no stats reply after the fuzz"
            await asyncio.sleep(0.05)
        return await _timed_healthz(served.url), before

    healthz_ms, _ = served.run(check())
    assert healthz_ms < 100
    during = sorted(served.healthz_ms)
    assert len(during) >= 40, "the HTTP fuzz did not run first"
    assert during[-1] < 100, f"/healthz took up to {during[-1]:.0f} ms while fuzzed"
    assert all(client.pc.connectionState == "connected" for client in peers)
    metrics = served.app[METRICS]  # type: ignore[index]
    assert metrics.counter("errors_total", kind="ctrl") > 0  # the fuzz reached the handlers
    _assert_no_faults(served)
