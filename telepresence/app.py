"""``create_app(config)``: the aiohttp application (docs/architecture.md §7)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiortc import RTCIceServer

from npga.bundle import BundleError, load_bundle
from npga.framing import FRAMINGS
from npga.render import resolve_device
from telepresence.auth import TokenError, verify_token
from telepresence.avatars import AvatarRegistry
from telepresence.config import ServerConfig
from telepresence.connections import CappedAppRunner
from telepresence.creation import CreationApi
from telepresence.janus import JanusBridge, SfuUnavailable
from telepresence.jobs import NAME_PATTERN, Job, JobRefused, JobRunner, JobStore
from telepresence.metrics import Metrics, process_gauges
from telepresence.peers import (
    CTRL_REPLIES,
    CTRL_REQUESTS,
    ROOM_NAME,
    OfferError,
    OfferRequest,
    PeerManager,
)
from telepresence.refusals import RefusalLog
from telepresence.rooms import JoinRefused, RoomRegistry
from telepresence.scheduler import RenderScheduler
from telepresence.streams import StreamHub
from telepresence.timeline import FrameTimeline
from telepresence.turn import ice_servers_json

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServerConfig)
AVATARS = web.AppKey("avatars", AvatarRegistry)
ROOMS = web.AppKey("rooms", RoomRegistry)
METRICS = web.AppKey("metrics", Metrics)
PEERS = web.AppKey("peers", PeerManager)
SCHEDULER = web.AppKey("scheduler", RenderScheduler)
STREAMS = web.AppKey("streams", StreamHub)
JOBS = web.AppKey("jobs", JobRunner)
TIMELINE = web.AppKey("timeline", FrameTimeline)  # only with stamp_frames
SFU = web.AppKey("sfu", JanusBridge)  # only with --janus

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client" / "dist"
MAX_OFFER_BYTES = 256 * 1024
# The built client's files (web_client/build.mjs), Face Mesh's wasm and model files included:
# explicit types (WebAssembly.instantiateStreaming needs application/wasm), nothing guessed.
STATIC_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".data": "application/octet-stream",
    ".binarypb": "application/octet-stream",
    ".tflite": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_CLIENT / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    return web.Response(
        text="NPGA Telepresence server. The browser client is not built yet; use `telepresence "
        "send`. API: /api/avatars, /api/rooms/{room}/offer, /healthz, /metrics.\n"
    )


async def static_file(request: web.Request) -> web.StreamResponse:
    """A file of the built web client under /static/ (404 for anything else)."""
    relative = request.match_info["path"]
    root = WEB_CLIENT.resolve()
    try:
        path = (root / relative).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (OSError, ValueError):  # a NUL in the name, a name too long for the file system
        found = False
    if not found or STATIC_TYPES.get(path.suffix) is None:
        return _error(404, f"no such file: /static/{relative[:100]}")
    content_type = STATIC_TYPES[path.suffix]
    # Face Mesh's files are versioned by the npm lockfile; the page's own files change on build.
    cache = "public, max-age=86400" if path.parent.name == "mediapipe" else "no-cache"
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": cache})


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(
        {"status": "ok", "sessions": app[PEERS].active, "avatars": app[AVATARS].ids}
    )


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    registry = app[METRICS]
    registry.set("sessions_active", app[PEERS].active)
    registry.set("sessions_connected", app[PEERS].connected)
    registry.set("rooms_active", len(app[ROOMS].rooms))
    registry.set("asyncio_tasks", len(asyncio.all_tasks()))
    for name, value in process_gauges().items():
        registry.set(name, value)
    return web.Response(text=registry.render(), content_type="text/plain")


async def client_config(request: web.Request) -> web.Response:
    """What the web client and the server must agree on, from one place (the server's own)."""
    limits = request.app[CONFIG].limits
    return web.json_response(
        {
            "video_seats": limits.video_seats,
            "room_name_pattern": ROOM_NAME.pattern,
            "max_message_bytes": limits.max_message_bytes,
            "max_messages_per_second": limits.max_messages_per_second,
            "ctrl_requests": list(CTRL_REQUESTS),
            "ctrl_replies": list(CTRL_REPLIES),
            "framings": list(FRAMINGS),
            "fps": request.app[CONFIG].fps,
            "avatar_creation": _creation_limits(request.app),
        }
    )


def _creation_limits(app: web.Application) -> dict[str, float | str] | None:
    """What the page checks before it uploads a clip; None where the server creates no avatars."""
    if JOBS not in app:
        return None
    limits = app[JOBS].limits
    return {
        "max_upload_bytes": limits.max_upload_bytes,
        "min_video_seconds": limits.min_video_seconds,
        "max_video_seconds": limits.max_video_seconds,
        "name_pattern": NAME_PATTERN.pattern,
    }


async def list_avatars(request: web.Request) -> web.Response:
    return web.json_response({"avatars": request.app[AVATARS].describe()})


async def avatar_encoder(request: web.Request) -> web.Response:
    try:
        avatar = request.app[AVATARS].get(request.match_info["avatar"])
    except KeyError as error:
        return _error(404, str(error.args[0]))
    return web.Response(
        text=avatar.encoder_json,
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


def _refuse_unauthorised(
    request: web.Request, room: str, role: str, token: str | None
) -> web.Response | None:
    """Access rule for offers and ICE: a valid token with --secret, else loopback clients only
    (unless --insecure-open)."""
    config = request.app[CONFIG]
    if config.secret is not None:
        if token is None:
            return _error(401, "this server needs a token (telepresence token ...)")
        try:
            verify_token(config.secret, token, room, role)
        except TokenError as error:
            request.app[METRICS].inc("errors_total", kind="token")
            return _error(403, str(error))
    elif not config.insecure_open and not _is_loopback(request.remote):
        return _error(403, "without --secret this server only accepts loopback clients")
    return None


async def ice(request: web.Request) -> web.Response:
    """ICE servers for a client, with TURN credentials valid for ``--turn-ttl`` seconds.

    Query: ``room``, ``role`` and ``token`` (the same token the offer will carry).
    """
    config = request.app[CONFIG]
    room, role = request.query.get("room", ""), request.query.get("role", "viewer")
    refusal = _refuse_unauthorised(request, room, role, request.query.get("token"))
    if refusal is not None:
        return refusal
    user = f"{room}-{role}-{request.remote}"
    servers = ice_servers_json(
        config.ice_servers, config.turn_urls, config.turn_secret, user, config.turn_ttl_s
    )
    return web.json_response(
        {"iceServers": servers, "ttl": config.turn_ttl_s},
        headers={"Cache-Control": "no-store"},
    )


def server_runner(app: web.Application) -> web.AppRunner:
    """The runner to serve ``app`` with: at most ``max_connections`` HTTP connections at once,
    and one that has not sent a complete request within ``idle_connection_seconds``
    (half-open, a slow header, idle keep-alive) is closed."""
    limits = app[CONFIG].limits
    return CappedAppRunner(
        app,
        limits.max_connections,
        app[METRICS],
        keepalive_timeout=limits.idle_connection_seconds,
    )


async def offer(request: web.Request) -> web.Response:
    app = request.app
    room = request.match_info["room"]
    try:
        async with asyncio.timeout(app[CONFIG].limits.request_body_seconds):
            body: Any = await request.json()
    except TimeoutError:
        app[METRICS].inc("errors_total", kind="offer")
        return _error(408, "the offer body did not arrive in time")
    except (ValueError, RecursionError):  # bad JSON or UTF-8, nested too deep
        app[METRICS].inc("errors_total", kind="offer")
        return _error(400, "offer body is not valid JSON")
    except LookupError:  # Content-Type: application/json; charset=<unknown>
        app[METRICS].inc("errors_total", kind="offer")
        return _error(415, "offer body must be JSON in UTF-8")
    except (HttpProcessingError, RequestPayloadError):  # Content-Encoding: gzip on plain text
        app[METRICS].inc("errors_total", kind="offer")
        return _error(400, "offer body cannot be decoded (its Content-Encoding is wrong)")
    try:
        parsed = OfferRequest.parse(body, app[CONFIG].limits)
    except OfferError as error:
        app[METRICS].inc("errors_total", kind="offer")
        return _error(error.status, str(error))
    refusal = _refuse_unauthorised(request, room, parsed.role, parsed.token)
    if refusal is not None:
        return refusal
    try:
        answer = await app[PEERS].handle_offer(room, parsed)
    except OfferError as error:
        app[METRICS].inc("errors_total", kind="offer")
        return _error(error.status, str(error))
    except JoinRefused as error:
        app[METRICS].inc("errors_total", kind="limit")
        return _error(error.status, str(error))
    if SFU in app:
        app[SFU].wake()  # a new sender's avatar is published at once
    return web.json_response(answer)


async def room_media(request: web.Request) -> web.Response:
    """Where a viewer of the room gets its avatars: ``{"sfu": null}`` (from this receiver, by
    offering to /offer) or ``{"sfu": {"kind": "janus", ...}}`` (telepresence/janus.py).

    Query: ``token`` (a viewer's token, with --secret)."""
    room = request.match_info["room"]
    if not ROOM_NAME.fullmatch(room):
        return _error(400, "room names are 1-64 letters, digits, '-' or '_'")
    refusal = _refuse_unauthorised(request, room, "viewer", request.query.get("token"))
    if refusal is not None:
        return refusal
    bridge = request.app.get(SFU)
    if bridge is None:
        return web.json_response({"sfu": None}, headers={"Cache-Control": "no-store"})
    try:
        media = await bridge.room_media(room)
    except SfuUnavailable as error:
        return _error(503, f"the SFU is not reachable now: {error}")
    return web.json_response({"sfu": media}, headers={"Cache-Control": "no-store"})


async def _background(app: web.Application) -> AsyncIterator[None]:
    await app[SCHEDULER].warm_up()  # before the site listens: /healthz answers once renders work
    await app[PEERS].turn.check()  # an unreachable TURN server would delay every offer ~5 s
    tasks = [asyncio.create_task(app[SCHEDULER].run()), asyncio.create_task(app[PEERS].turn.run())]
    runner = app.get(JOBS)
    if runner is not None:
        await _serve_created(app, runner)
        tasks.append(asyncio.create_task(runner.run()))
    bridge = app.get(SFU)
    publishing = asyncio.create_task(bridge.run()) if bridge is not None else None
    yield
    if publishing is not None:  # unpublished before the streams it sends close
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
    await app[PEERS].close_all()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[STREAMS].close_all()


async def _serve_created(app: web.Application, runner: JobRunner) -> None:
    """Avatars that creation jobs finished before this start, and every one they finish."""
    registry, device = app[AVATARS], resolve_device(app[CONFIG].device)

    async def add(job: Job, folder: Path) -> None:
        bundle = await asyncio.to_thread(load_bundle, folder, device)
        registry.add(folder.name, bundle)
        log.info("serving the new avatar %s (job %s)", folder.name, job.id)

    for avatar_id, folder in runner.store.finished_avatars().items():
        try:
            registry.add(avatar_id, await asyncio.to_thread(load_bundle, folder, device))
        except (BundleError, ValueError) as error:
            log.warning("not serving %s: %s", folder, error)
    runner.on_done.append(add)


def _creation_api(app: web.Application, config: ServerConfig) -> CreationApi:
    assert config.avatar_store is not None
    runner = JobRunner(JobStore(config.avatar_store), config.job_limits, config.job_recipe)
    app[JOBS] = runner

    async def remove(avatar_id: str) -> None:
        if any(p.avatar_id == avatar_id for p in app[ROOMS].participants()):
            raise JobRefused(409, f"avatar {avatar_id!r} is in a call; delete it afterwards")
        app[AVATARS].remove(avatar_id)

    return CreationApi(runner, config.job_limits, _refuse_unauthorised, remove)


def create_app(config: ServerConfig, avatars: AvatarRegistry | None = None) -> web.Application:
    """The server. ``avatars`` may be given (tests); else they are loaded from the config."""
    avatars = avatars or AvatarRegistry.load(
        config.avatar_dirs, resolve_device(config.device), config.resolution, config.render_detail
    )
    metrics_registry = Metrics()
    refusals = RefusalLog(metrics_registry)
    app = web.Application(client_max_size=MAX_OFFER_BYTES, middlewares=[refusals.middleware])
    refusals.quiet_client_faults(app)
    rooms = RoomRegistry(config.limits)
    app[CONFIG] = config
    app[AVATARS] = avatars
    app[METRICS] = metrics_registry
    app[ROOMS] = rooms
    # bench only (stamped frames): where each frame's time goes (telepresence/timeline.py)
    timeline = FrameTimeline() if config.stamp_frames else None
    if timeline is not None:
        app[TIMELINE] = timeline
    streams = StreamHub(config.resolution, config.fps, metrics_registry, timeline)
    app[STREAMS] = streams
    app[SCHEDULER] = RenderScheduler(
        avatars, rooms, metrics_registry, config.fps, config.stamp_frames, timeline
    )
    app[PEERS] = PeerManager(config, avatars, rooms, metrics_registry, streams, app[SCHEDULER])
    if config.sfu is not None:
        stun = [RTCIceServer(urls=url) for url in config.ice_servers]
        app[SFU] = JanusBridge(config.sfu, rooms, metrics_registry, stun)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/config", client_config)
    app.router.add_get("/api/avatars", list_avatars)
    app.router.add_get("/api/avatars/{avatar}/encoder", avatar_encoder)
    app.router.add_get("/api/ice", ice)
    app.router.add_post("/api/rooms/{room}/offer", offer)
    app.router.add_get("/api/rooms/{room}/media", room_media)
    app.router.add_get("/static/{path:.+}", static_file)
    if config.avatar_store is not None:
        app.router.add_routes(_creation_api(app, config).routes())
    app.cleanup_ctx.append(_background)
    return app
