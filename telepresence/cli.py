"""``telepresence``: serve avatars, send expression frames, mint tokens, benchmark."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import secrets
import shlex
import statistics
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from npga.cli_args import (
    CliError,
    check_output_file,
    detail_arg,
    make_interruptible,
    non_negative_int,
    show_defaults,
)
from npga.codes import ExpressionFrame
from npga.framing import FRAMINGS
from npga.recording import RecordingError, load_recording
from npga.tracking.sources import SourceError, open_source
from telepresence.app import AVATARS, create_app, server_runner
from telepresence.auth import ROLES, mint_token
from telepresence.bench import run_bench
from telepresence.config import CPU_DETAIL, ServerConfig, SfuConfig
from telepresence.ice import check_consent, local_addresses, restrict_host_addresses
from telepresence.janus_local import local_janus
from telepresence.janus_viewer import JanusViewer
from telepresence.jobs import JobLimits, JobRecipe
from telepresence.probe import FrameProbe
from telepresence.sctp_timers import quicken_sctp_retransmits
from telepresence.sender import ClientError, TelepresenceClient
from telepresence.sources import SendOptions, recording_frames, synthetic_frames, tracked_frames

DEMO_ROOM = "demo"


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value

    return parse


def _server_config(args: argparse.Namespace) -> ServerConfig:
    try:
        return ServerConfig(
            host=args.host,
            port=args.port,
            avatar_dirs=tuple(args.avatar or ()),
            device=args.device,
            resolution=args.resolution,
            fps=args.fps,
            detail=args.detail,
            secret=args.secret,
            insecure_open=args.insecure_open,
            ice_servers=tuple(args.ice_server or ()),
            turn_urls=tuple(args.turn_url or ()),
            turn_secret=args.turn_secret,
            turn_ttl_s=args.turn_ttl,
            avatar_store=args.avatar_dir,
            job_limits=JobLimits(threads=args.job_threads),
            job_recipe=JobRecipe(
                device=args.device,
                quality=args.job_quality,
                extra_args=tuple(shlex.split(args.job_create_args)),
            ),
            sfu=_sfu_config(args),
            stamp_frames=args.measure_latency,
        )
    except ValueError as error:
        raise CliError(str(error)) from None


def _sfu_config(args: argparse.Namespace) -> SfuConfig | None:
    if args.janus is None:
        return None
    if args.janus == "auto":  # cmd_serve starts the local Janus and fills in its URL
        return SfuConfig(url="http://127.0.0.1:0/janus", secret=secrets.token_hex(16))
    return SfuConfig(
        url=args.janus, secret=args.janus_secret or "", public_url=args.janus_public_url
    )


async def _serve(config: ServerConfig, demo_sender: bool) -> None:
    try:
        app = create_app(config)
    except (ValueError, RuntimeError) as error:
        raise CliError(str(error)) from None
    runner = server_runner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except OSError as error:
        await runner.cleanup()
        raise CliError(f"cannot listen on {config.host}:{config.port} ({error.strerror})") from None
    base = (
        f"http://{'127.0.0.1' if config.host in ('0.0.0.0', '::') else config.host}:{config.port}"
    )
    print(f"serving on {base} (avatars: {', '.join(app[AVATARS].ids)})", flush=True)
    sender = None
    try:
        if demo_sender:
            sender = asyncio.create_task(_demo_sender(base, config))
            watch = f"telepresence send --server {base} --room {DEMO_ROOM} --view-only"
            print(
                f"built-in sender publishing in room {DEMO_ROOM!r}; watch it with: "
                f"{watch} --record demo.mp4 --seconds 10",
                flush=True,
            )
        await asyncio.Event().wait()
    finally:
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await runner.cleanup()


async def _demo_sender(base: str, config: ServerConfig) -> None:
    """A real WebRTC peer in this process that keeps the default avatar moving."""
    client = TelepresenceClient(base, DEMO_ROOM, "sender", seats=0)
    try:
        avatars = await client.fetch_avatars()
        await client.connect()
        await client.wait_channels()
        dim = int(avatars[0]["expression_dim"])
        async for frame in synthetic_frames(dim, SendOptions(fps=config.fps)):
            client.send_frame(frame)
    finally:
        await client.close()


def _loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> None:
    config = _server_config(args)
    check_consent()  # a vanished peer frees its session slot in seconds, not ~30 s
    quicken_sctp_retransmits()  # a lost packet at connect costs 1 s, not 3 s
    if args.ice_host_address:
        restrict_host_addresses(args.ice_host_address)
    elif _loopback_host(config.host):  # a local server: keep media on this machine too
        restrict_host_addresses(local_addresses() if config.sfu else ["127.0.0.1"])
    with contextlib.ExitStack() as stack:
        if args.janus == "auto" and config.sfu is not None:
            try:
                janus = stack.enter_context(local_janus(config.sfu.secret))
            except RuntimeError as error:
                raise CliError(f"--janus auto: {error}") from None
            print(f"started a local Janus at {janus.url}", flush=True)
            config = replace(config, sfu=replace(config.sfu, url=janus.url))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config, args.demo_sender))


async def _frames(
    args: argparse.Namespace, client: TelepresenceClient, avatar: dict
) -> AsyncIterator:
    options = SendOptions(seconds=args.seconds)
    dim = int(avatar["expression_dim"])
    if args.codes is not None:
        try:
            recording = load_recording(args.codes)
        except RecordingError as error:
            raise CliError(str(error)) from None
        if recording.expression_dim != dim:
            raise CliError(
                f"{args.codes}: codes have {recording.expression_dim} dims, avatar "
                f"{avatar['id']!r} needs {dim}"
            )
        return recording_frames(recording, SendOptions(seconds=args.seconds, loop=args.loop))
    if args.synthetic:
        return synthetic_frames(dim, options)
    basis = await client.fetch_encoder(avatar["id"])
    spec = str(args.camera) if args.camera is not None else str(args.video)
    return tracked_frames(
        lambda: open_source(spec), basis, options, live=args.camera is not None, on_event=_warn
    )


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class _ProgressLine:
    """``telepresence send``'s heartbeat on stderr: what went out and what came back."""

    client: TelepresenceClient
    probe: FrameProbe
    every: float = 5.0
    _last: float = field(default_factory=time.monotonic)

    def maybe(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        print(
            f"sent {self.client.stats.frames_sent} frames; received {self.probe.frames} of seat "
            f"{self.probe.seat} ({self.probe.summary()['fps_received']} fps)",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class _LatencyReport:
    """Every ``every`` s, the median e2e latency of the frames measured since (stamped frames:
    ``serve --measure-latency``) goes to the server in a ctrl stats request."""

    client: TelepresenceClient
    probe: FrameProbe
    every: float = 1.0
    _last: float = field(default_factory=time.monotonic)
    _measured: int = 0

    def maybe(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        fresh = self.probe.latencies_ms[self._measured :]
        self._measured = len(self.probe.latencies_ms)
        if fresh:
            self.client.send_ctrl({"type": "stats", "e2e_ms": round(statistics.median(fresh), 1)})


def _room_media(client: TelepresenceClient) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def fetch() -> dict[str, Any]:
        media = await client.fetch_room_media()
        if media is None:
            raise ClientError("the server no longer publishes this room through an SFU")
        return media

    return fetch


async def _send(args: argparse.Namespace) -> dict[str, Any]:
    role = "viewer" if args.view_only else "sender"
    probe = FrameProbe(record_path=args.record)
    closing: list[Callable[[], Awaitable[None]]] = []
    client = TelepresenceClient(
        args.server, args.room, role, avatar=args.avatar, token=args.token, seats=args.seats,
        framing=args.framing, ice_servers=tuple(args.ice_server or ()), on_frame=probe,
        ice_from_server=args.server_ice or args.relay_only, relay_only=args.relay_only,
        reconnect=True,
    )  # fmt: skip
    try:
        avatars = {a["id"]: a for a in await client.fetch_avatars()}
        avatar_id = args.avatar or sorted(avatars)[0]
        if avatar_id not in avatars:
            raise CliError(
                f"unknown avatar {avatar_id!r} (server has: {', '.join(sorted(avatars))})"
            )
        media = await client.fetch_room_media() if args.view_only else None
        if media is not None:  # the room's avatars come from its SFU
            viewer = JanusViewer(_room_media(client), seats=args.seats, on_frame=probe)
            print(f"watching through the SFU at {media['url']}", file=sys.stderr, flush=True)
            await viewer.connect()
            client.stats = viewer.stats
            closing.append(viewer.close)
        else:
            await client.connect()
            await client.wait_channels()
        if args.view_only:
            report = _ProgressLine(client, probe)
            until = time.monotonic() + (args.seconds or 10.0)
            while time.monotonic() < until:
                await asyncio.sleep(min(0.5, max(0.0, until - time.monotonic())))
                report.maybe()
        else:
            frames: AsyncIterator[ExpressionFrame] = await _frames(args, client, avatars[avatar_id])
            report, latency = _ProgressLine(client, probe), _LatencyReport(client, probe)
            async for frame in frames:
                probe.sent(frame.seq, frame.timestamp)
                client.send_frame(frame)
                latency.maybe()
                own = client.own_seat()  # record and measure what this sender looks like
                if own is not None:
                    probe.seat = own
                report.maybe()
            await asyncio.sleep(0.3)
    finally:
        for close in closing:
            await close()
        await client.close()
        probe.close()
    stats = client.stats
    return {
        **probe.summary(),
        "frames_sent": stats.frames_sent,
        "reconnects": stats.reconnects,
        "uplink_bytes_per_frame": round(stats.bytes_sent / max(stats.frames_sent, 1), 1),
        "server_errors": stats.ctrl_errors[:20],
    }


def cmd_send(args: argparse.Namespace) -> None:
    if args.show:
        raise CliError("--show needs an OpenCV build with a display; use --record FILE.mp4")
    sources = [
        args.camera is not None,
        args.video is not None,
        args.codes is not None,
        args.synthetic,
    ]
    if not args.view_only and sum(sources) != 1:
        raise CliError("choose one source: --camera N, --video FILE, --codes FILE or --synthetic")
    for path in (args.record, args.stats_json):
        check_output_file(path)
    if _loopback_host(urllib.parse.urlsplit(args.server).hostname):
        # a local server (and a viewer's local Janus, whose media is on the main address)
        restrict_host_addresses(local_addresses() if args.view_only else ["127.0.0.1"])
    check_consent()  # a lost network is noticed in seconds, and the client connects again
    quicken_sctp_retransmits()
    role = "viewer" if args.view_only else "sender"
    print(f"joining room {args.room!r} at {args.server} as a {role}", file=sys.stderr, flush=True)
    try:
        summary = asyncio.run(_send(args))
    except (ClientError, SourceError) as error:
        raise CliError(str(error)) from None
    print(json.dumps(summary))
    if args.stats_json is not None:
        args.stats_json.write_text(json.dumps(summary, indent=1))


def cmd_token(args: argparse.Namespace) -> None:
    if not args.secret.strip():
        raise CliError("--secret is empty: give the secret the server was started with")
    print(mint_token(args.secret, args.room, args.role, args.ttl))


def cmd_bench(args: argparse.Namespace) -> None:
    try:
        sfu = (
            SfuConfig(url=args.janus, secret=args.janus_secret or "")
            if args.janus not in (None, "auto")
            else None
        )
    except ValueError as error:
        raise CliError(str(error)) from None
    config = ServerConfig(
        resolution=args.resolution, device=args.device, fps=args.fps, detail=args.detail, sfu=sfu
    )
    if args.viewer_processes and not args.client_processes:
        raise CliError("--viewer-processes needs --client-processes (the senders' processes)")
    if args.during_job is not None and not args.during_job.is_file():
        raise CliError(f"--during-job {args.during_job}: no such file")
    try:
        report = asyncio.run(
            run_bench(
                config, args.sessions, args.seconds, args.codec, args.client_processes,
                args.during_job, args.viewers, args.janus, args.viewer_processes,
            )
        )  # fmt: skip
    except ValueError as error:
        raise CliError(str(error)) from None
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))


def _env_list(name: str, separator: str = ",") -> list[str] | None:
    value = os.environ.get(name)
    return [item for item in value.split(separator) if item] if value else None


def _add_server_options(p: argparse.ArgumentParser) -> None:
    """Every option also reads a TELEPRESENCE_* environment variable (docs/deployment.md)."""
    env = os.environ.get
    p.add_argument(
        "--host", default=env("TELEPRESENCE_HOST", "127.0.0.1"), help="address to listen on"
    )
    p.add_argument(
        "--port", type=int, default=int(env("TELEPRESENCE_PORT", "8080")), help="port to listen on"
    )
    p.add_argument(
        "--avatar",
        type=Path,
        action="append",
        default=[Path(a) for a in _env_list("TELEPRESENCE_AVATARS", os.pathsep) or []],
        help="avatar bundle dir (repeatable; env TELEPRESENCE_AVATARS, ':'-separated)",
    )
    p.add_argument("--device", default=env("TELEPRESENCE_DEVICE", "cpu"), help="cpu | cuda")
    p.add_argument(
        "--avatar-dir",
        type=Path,
        default=Path(d) if (d := env("TELEPRESENCE_AVATAR_DIR")) else None,
        help="where people's uploads, creation jobs and created avatars live; enables "
        "POST /api/avatars (docs/protocol.md; env TELEPRESENCE_AVATAR_DIR)",
    )
    p.add_argument(
        "--job-threads",
        type=_positive(int),
        default=int(env("TELEPRESENCE_JOB_THREADS", "1")),
        help="CPU threads a creation job may use (it runs niced, one at a time)",
    )
    p.add_argument(
        "--job-quality",
        choices=("fast", "standard", "best"),
        default=env("TELEPRESENCE_JOB_QUALITY", "standard"),
        help="npga create's --quality for creation jobs",
    )
    p.add_argument(
        "--job-create-args",
        default=env("TELEPRESENCE_JOB_CREATE_ARGS", ""),
        help="more npga create options for creation jobs, e.g. '--iters 300' (tests use a tiny "
        "recipe)",
    )
    p.add_argument(
        "--resolution",
        type=_positive(int),
        default=int(env("TELEPRESENCE_RESOLUTION", "256")),
        help="side of the square avatar video (pixels)",
    )
    p.add_argument(
        "--fps",
        type=_positive(float),
        default=float(env("TELEPRESENCE_FPS", "30")),
        help="video frame rate",
    )
    p.add_argument(
        "--detail",
        type=detail_arg,
        default=env("TELEPRESENCE_DETAIL"),
        help="fraction of each avatar's Gaussians rendered, those that show most (default: all "
        f"on cuda, {CPU_DETAIL:g} on cpu; npga bench detail measures it)",
    )
    p.add_argument(
        "--secret",
        default=env("TELEPRESENCE_SECRET"),
        help="require HMAC tokens (telepresence token ...)",
    )
    p.add_argument(
        "--insecure-open",
        action="store_true",
        default=env("TELEPRESENCE_INSECURE_OPEN") == "1",
        help="accept non-loopback clients without tokens",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=_env_list("TELEPRESENCE_ICE_SERVERS"),
        help="stun: URL (repeatable; env TELEPRESENCE_ICE_SERVERS, comma-separated)",
    )
    p.add_argument(
        "--turn-url",
        action="append",
        default=_env_list("TELEPRESENCE_TURN_URLS"),
        help="turn: URL of a coturn with use-auth-secret (repeatable)",
    )
    p.add_argument(
        "--turn-secret",
        default=env("TELEPRESENCE_TURN_SECRET"),
        help="coturn's static-auth-secret: per-client TURN credentials via /api/ice",
    )
    p.add_argument(
        "--turn-ttl",
        type=_positive(float),
        default=float(env("TELEPRESENCE_TURN_TTL", "3600")),
        help="lifetime of the TURN credentials /api/ice hands out (seconds)",
    )
    p.add_argument(
        "--janus",
        metavar="URL|auto",
        default=env("TELEPRESENCE_JANUS"),
        help="publish every avatar into this Janus SFU (its HTTP API, e.g. "
        "http://127.0.0.1:8088/janus); viewers then subscribe from it. 'auto' starts a local "
        "Debian janus (development)",
    )
    p.add_argument(
        "--janus-secret",
        default=env("TELEPRESENCE_JANUS_SECRET"),
        help="the Janus secret: its token_auth_secret and VideoRoom admin_key (deploy/janus/)",
    )
    p.add_argument(
        "--janus-public-url",
        default=env("TELEPRESENCE_JANUS_PUBLIC_URL"),
        help="Janus's HTTP API as viewers reach it (default: --janus)",
    )
    p.add_argument(
        "--ice-host-address",
        action="append",
        default=_env_list("TELEPRESENCE_ICE_HOST_ADDRESSES"),
        help="offer only these host candidates (default: 127.0.0.1 when --host is loopback)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telepresence", description="NPGA avatar telepresence.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the WebRTC avatar server")
    _add_server_options(serve)
    serve.add_argument(
        "--demo-sender", action="store_true", help=f"move the default avatar in room {DEMO_ROOM!r}"
    )
    serve.add_argument(
        "--measure-latency",
        action="store_true",
        help="stamp each frame's seq as a barcode in its top 16 rows: `telepresence send` then "
        "measures its end-to-end latency exactly and reports it (/metrics: client_e2e_ms); "
        "default: browsers report an estimate (client_e2e_estimate_ms)",
    )
    serve.set_defaults(run=cmd_serve)

    send = commands.add_parser("send", help="send expression frames and receive the avatar")
    send.add_argument("--server", default="http://127.0.0.1:8080", help="the server's URL")
    send.add_argument("--room", required=True, help="room to join")
    source = send.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, help="camera index")
    source.add_argument("--video", type=Path, help="video file to track")
    source.add_argument("--codes", type=Path, help="code recording (.npz) to replay")
    source.add_argument("--synthetic", action="store_true", help="synthetic codes")
    source.add_argument("--view-only", action="store_true", help="join as a viewer")
    send.add_argument("--avatar", help="avatar id (default: the server's first)")
    send.add_argument("--token", help="room token (telepresence token), if the server has a secret")
    send.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="auto",
        help="how the server frames your avatar: auto follows the head and keeps it framed, "
        "fixed holds it at rest, free applies your translation as sent (default: auto)",
    )
    send.add_argument("--seats", type=_positive(int), default=1, help="avatar videos to receive")
    send.add_argument(
        "--record",
        type=Path,
        help="write your avatar as the server renders it to .mp4 (viewers: seat 0)",
    )
    send.add_argument("--show", action="store_true", help="show the received avatar in a window")
    send.add_argument("--seconds", type=_positive(float), help="stop after this long")
    send.add_argument("--loop", action="store_true", help="replay --codes forever")
    send.add_argument("--stats-json", type=Path, help="write the session's stats here")
    send.add_argument("--ice-server", action="append", help="stun: URL (repeatable)")
    send.add_argument(
        "--server-ice", action="store_true", help="use the server's STUN/TURN (GET /api/ice)"
    )
    send.add_argument("--relay-only", action="store_true", help="media only through TURN")
    send.set_defaults(run=cmd_send)

    token = commands.add_parser("token", help="mint a room token")
    token.add_argument("--secret", required=True, help="the server's --secret")
    token.add_argument("--room", required=True, help="the room the token admits to")
    token.add_argument("--role", choices=ROLES, required=True, help="what the holder may do")
    token.add_argument("--ttl", type=_positive(float), default=3600.0, help="seconds")
    token.set_defaults(run=cmd_token)

    bench = commands.add_parser("bench", help="end-to-end benchmark on loopback")
    bench.add_argument("--sessions", type=_positive(int), default=1, help="concurrent senders")
    bench.add_argument("--seconds", type=_positive(float), default=10.0, help="measured time")
    bench.add_argument(
        "--resolution", type=_positive(int), default=256, help="avatar video side (pixels)"
    )
    bench.add_argument("--fps", type=_positive(float), default=30.0, help="video frame rate")
    bench.add_argument(
        "--detail",
        type=detail_arg,
        help=f"fraction of the Gaussians rendered (default: all on cuda, {CPU_DETAIL:g} on cpu)",
    )
    bench.add_argument(
        "--viewers",
        type=_positive(int),
        default=1,
        help="receivers of each session's avatar: the sender and viewers-1 view-only clients",
    )
    bench.add_argument(
        "--viewer-processes",
        type=non_negative_int,
        default=0,
        help="run the view-only clients in this many more worker processes, apart from the "
        "senders (needs --client-processes; Python viewers are GIL-bound in one process)",
    )
    bench.add_argument(
        "--janus",
        metavar="URL|auto",
        help="viewers subscribe through this Janus ('auto': start a local Debian janus; a URL "
        "needs --janus-secret); default: viewers connect to the receiver",
    )
    bench.add_argument(
        "--janus-secret",
        default=os.environ.get("TELEPRESENCE_JANUS_SECRET"),
        help="the secret of the Janus given as a URL",
    )
    bench.add_argument("--device", default="cpu", help="cpu | cuda")
    bench.add_argument(
        "--codec", choices=("h264", "vp8"), default="h264", help="what the clients prefer"
    )
    bench.add_argument(
        "--client-processes",
        type=non_negative_int,
        default=0,
        help="spread the client sessions over this many worker processes (default 0: in the "
        "server's process, which then limits how many sessions a GPU server is measured with)",
    )
    bench.add_argument(
        "--during-job",
        type=Path,
        metavar="CLIP",
        help="measure again while the server trains an avatar from CLIP (an avatar-creation "
        "job with the default recipe, niced on one thread), then cancel it (default: no job)",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line")
    bench.set_defaults(run=cmd_bench)
    return show_defaults(parser)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    make_interruptible()  # Ctrl-C stops a server even where the parent blocked or ignored it
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CliError as error:
        print(f"telepresence: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("telepresence: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
