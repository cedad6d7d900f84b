"""``telepresence bench``: a server and N Python senders on loopback, measured end to end.

Each session publishes the demo avatar, watches its own avatar (one seat), and sends synthetic
expression frames at 30 fps. The server stamps the seq of the frame it rendered into the video
(``stamp_frames``); the client reads it back after decoding, so latency = decode time of the
first frame showing seq s - capture time of s, on one clock (``time.time()``, CLOCK_REALTIME:
the wire timestamp's clock, which every process of a machine shares). The server marks each
frame's stages on the same clock (telepresence/timeline.py), so every session's latency is also
broken down: capture -> server receive, queue wait, render, the wait for the encoder,
encode, network + decode, each p50/p95.

By default the clients share the server's process and event loop, which is what limits a GPU
server's measured sessions: ``client_processes`` spreads them over spawned worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import secrets
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from aiortc.stats import RTCTransportStats

from telepresence.app import AVATARS, METRICS, TIMELINE, create_app, server_runner
from telepresence.config import ServerConfig, SfuConfig
from telepresence.ice import local_addresses, restrict_host_addresses
from telepresence.janus_local import local_janus
from telepresence.janus_viewer import JanusViewer
from telepresence.probe import FrameProbe
from telepresence.sender import ClientError, TelepresenceClient
from telepresence.sources import SendOptions, synthetic_frames
from telepresence.timeline import FrameTimeline


async def _bytes_received(client: TelepresenceClient) -> int:
    report = await client.pc.getStats()
    return sum(s.bytesReceived for s in report.values() if isinstance(s, RTCTransportStats))


def _viewer(
    base_url: str, room: str, probe: FrameProbe, prefer_h264: bool, sfu: bool
) -> TelepresenceClient | JanusViewer:
    """A view-only client of the room: from the receiver, or from its SFU."""
    direct = TelepresenceClient(
        base_url, room, "viewer", seats=1, on_frame=probe, prefer_h264=prefer_h264
    )
    if not sfu:
        return direct

    async def media() -> dict[str, Any]:
        found = await direct.fetch_room_media()
        if found is None:
            raise ValueError("the bench server does not publish through its SFU")
        return found

    return JanusViewer(media, seats=1, on_frame=probe)


async def _session(
    base_url: str,
    room: str,
    dim: int,
    seconds: float,
    prefer_h264: bool,
    viewers: int = 1,
    sfu: bool = False,
    remote_viewers: bool = False,
) -> dict[str, Any]:
    """One sender watching its own avatar, and ``viewers - 1`` view-only clients of it (through
    the server's SFU with ``sfu``). ``remote_viewers``: more viewers watch from other processes
    (the report then carries the capture times they are matched with)."""
    probe = FrameProbe()
    client = TelepresenceClient(
        base_url, room, "sender", seats=1, see_self=True, on_frame=probe, prefer_h264=prefer_h264
    )
    await client.connect()
    await client.wait_channels()
    watchers = [FrameProbe() for _ in range(viewers - 1)]
    others = [_viewer(base_url, room, w, prefer_h264, sfu) for w in watchers]
    if sfu:  # the avatar is published once the first frames are rendered
        async for frame in synthetic_frames(dim, SendOptions(seconds=0.5)):
            client.send_frame(frame)
    await asyncio.gather(*(other.connect() for other in others))
    bytes_before, start = await _bytes_received(client), time.monotonic()
    async for frame in synthetic_frames(dim, SendOptions(seconds=seconds)):
        probe.sent(frame.seq, frame.timestamp)
        for watcher in watchers:
            watcher.sent(frame.seq, frame.timestamp)
        client.send_frame(frame)
    await asyncio.sleep(0.3)  # the last frames in flight
    elapsed = time.monotonic() - start
    downlink = (await _bytes_received(client) - bytes_before) * 8 / elapsed / 1e3
    await asyncio.gather(client.close(), *(other.close() for other in others))
    probe.close()
    viewer_reports = [watcher.summary() for watcher in watchers]
    for watcher in watchers:
        watcher.close()
    return {
        **(_viewers_summary(viewer_reports) if viewer_reports else {}),
        **probe.summary(),
        "distinct_avatar_fps": round(len(probe.distinct_seqs) / elapsed, 2),
        "uplink_bytes_per_frame": round(
            client.stats.bytes_sent / max(client.stats.frames_sent, 1), 1
        ),
        "downlink_kbps": round(downlink, 1),
        "participant": client.participant,
        "frame_times": probe.frame_times(),
        **({"sent_at": dict(probe.sent_at)} if remote_viewers else {}),
    }


async def _watch(
    base_url: str, room: str, seconds: float, prefer_h264: bool, sfu: bool
) -> dict[str, Any]:
    """One view-only client in a process of its own kind: it watches ``room`` for ``seconds``
    (from its first frame) and reports when it decoded each stamped seq."""
    probe = FrameProbe(keep_unsent=True)
    viewer = _viewer(base_url, room, probe, prefer_h264, sfu)
    deadline = time.monotonic() + 30
    while True:
        try:
            await viewer.connect()
            break
        except ClientError:  # the sender has not published yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    while probe.first_frame_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(seconds)
    await viewer.close()
    probe.close()
    return {**probe.summary(), "decoded_at": probe.decoded_at}


def _viewer_process(
    base_url: str, rooms: list[str], seconds: float, prefer_h264: bool, sfu: bool
) -> tuple[list[dict[str, Any]], float]:
    """A worker process of view-only clients (one per entry of ``rooms``) and its CPU time."""
    restrict_host_addresses(local_addresses() if sfu else ["127.0.0.1"])
    began = time.process_time()

    async def watch_all() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(_watch(base_url, room, seconds, prefer_h264, sfu) for room in rooms)
            )
        )

    reports = asyncio.run(watch_all())
    return reports, time.process_time() - began


def _matched(viewer: dict[str, Any], sent_at: dict[int, float]) -> dict[str, Any]:
    """A remote viewer's report with its latencies: decode times minus the sender's capture
    times (one clock: time.time() on one machine)."""
    decoded = viewer.pop("decoded_at")
    latencies = [(t - sent_at[seq]) * 1e3 for seq, t in decoded.items() if seq in sent_at]
    if latencies:
        viewer["e2e_latency_ms_p50"] = round(float(np.percentile(latencies, 50)), 1)
        viewer["e2e_latency_ms_p95"] = round(float(np.percentile(latencies, 95)), 1)
    return viewer


def _viewers_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["e2e_latency_ms_p95"] for r in reports if r.get("e2e_latency_ms_p95")]
    return {
        "viewers_min_fps_received": min(r["fps_received"] for r in reports),
        "viewers_fps_received": [r["fps_received"] for r in reports],
        "viewers_worst_e2e_latency_ms_p95": max(latencies) if latencies else None,
        "viewers_e2e_latency_ms_p50": [r.get("e2e_latency_ms_p50") for r in reports],
    }


async def _gather_sessions(
    base_url: str,
    rooms: list[str],
    dim: int,
    seconds: float,
    prefer_h264: bool,
    viewers: int,
    sfu: bool = False,
    remote_viewers: bool = False,
) -> list[dict[str, Any]]:
    """One session per room, concurrently on this event loop."""
    return list(
        await asyncio.gather(
            *(
                _session(base_url, room, dim, seconds, prefer_h264, viewers, sfu, remote_viewers)
                for room in rooms
            )
        )
    )


def _client_process(
    base_url: str,
    rooms: list[str],
    dim: int,
    seconds: float,
    prefer_h264: bool,
    viewers: int,
    sfu: bool,
    remote_viewers: bool,
) -> tuple[list[dict[str, Any]], float]:
    """One worker process's share of the sessions, on its own event loop; and the CPU time
    (s) the process spent on them."""
    restrict_host_addresses(local_addresses() if sfu else ["127.0.0.1"])
    began = time.process_time()
    reports = asyncio.run(
        _gather_sessions(base_url, rooms, dim, seconds, prefer_h264, viewers, sfu, remote_viewers)
    )
    return reports, time.process_time() - began


async def _run_sessions(
    base_url: str,
    sessions: int,
    dim: int,
    seconds: float,
    prefer_h264: bool,
    processes: int,
    viewers: int = 1,
    sfu: bool = False,
    viewer_processes: int = 0,
) -> tuple[list[dict[str, Any]], float | None]:
    """Every session's report, in session order; in this process or spread over ``processes``
    (then also the CPU time, s, those processes spent). With ``viewer_processes`` each
    session's view-only clients run in that many more processes, apart from its sender."""
    rooms = [f"bench{i}" for i in range(sessions)]
    if processes == 0:
        reports = await _gather_sessions(base_url, rooms, dim, seconds, prefer_h264, viewers, sfu)
        return reports, None
    remote = viewer_processes > 0 and viewers > 1
    watchers = [room for room in rooms for _ in range(viewers - 1)] if remote else []
    viewer_shares = [watchers[i::viewer_processes] for i in range(viewer_processes)]
    viewer_shares = [share for share in viewer_shares if share]
    shares = [rooms[i::processes] for i in range(min(processes, sessions))]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # no forked copy of the server's threads
    local_viewers = 1 if remote else viewers
    with ProcessPoolExecutor(len(shares) + len(viewer_shares), mp_context=context) as pool:
        sending = [
            loop.run_in_executor(pool, _client_process, base_url, share, dim, seconds,
                                 prefer_h264, local_viewers, sfu, remote)
            for share in shares
        ]  # fmt: skip
        watching = [
            loop.run_in_executor(pool, _viewer_process, base_url, share, seconds, prefer_h264, sfu)
            for share in viewer_shares
        ]
        chunks = await asyncio.gather(*sending)
        watched = await asyncio.gather(*watching)
    by_room = {room: report for share, (chunk, _) in zip(shares, chunks, strict=True)
               for room, report in zip(share, chunk, strict=True)}  # fmt: skip
    for share, (reports, _) in zip(viewer_shares, watched, strict=True):
        for room, viewer in zip(share, reports, strict=True):
            by_room[room].setdefault("remote", []).append(viewer)
    for report in by_room.values():
        sent_at = report.pop("sent_at", {})
        remote_reports = [_matched(viewer, sent_at) for viewer in report.pop("remote", [])]
        if remote_reports:
            report.update(_viewers_summary(remote_reports))
    cpu = sum(cpu for _, cpu in chunks) + sum(cpu for _, cpu in watched)
    return [by_room[room] for room in rooms], cpu


async def _start_job(base_url: str, clip: Path) -> str:
    """``clip`` uploaded as an avatar-creation job (POST /api/avatars) -> the job's id."""
    form = aiohttp.FormData()
    form.add_field("name", "bench")
    form.add_field("video", clip.read_bytes(), filename=clip.name)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/api/avatars", data=form) as response,
    ):
        body = await response.json()
        if response.status != 202:
            raise ValueError(f"the server refused the clip: {body.get('error')}")
        return str(body["job"]["id"])


async def _job(base_url: str, job_id: str, method: str = "GET") -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{base_url}/api/jobs/{job_id}") as response,
    ):
        return dict((await response.json())["job"])


async def _until_training(base_url: str, job_id: str) -> None:
    """Until the job trains (stage 5/6, the long one); ValueError if it ends before."""
    while True:
        job = await _job(base_url, job_id)
        if job["state"] in ("done", "failed", "cancelled"):
            raise ValueError(f"the job ended ({job['state']}: {job['error']}) before it trained")
        if job["stage"].startswith("5/6"):
            return
        await asyncio.sleep(1.0)


# (name, from stage, to stage) of the breakdown; "capture" and "decoded" are the client's
BREAKDOWN = (
    ("uplink", "capture", "received"),
    ("queue", "received", "render_start"),
    ("render", "render_start", "render_end"),
    ("encode_wait", "render_end", "encode_start"),
    ("encode", "encode_start", "encode_end"),
    ("network_decode", "encode_end", "decoded"),
)


def _breakdown(timeline: FrameTimeline, result: dict[str, Any]) -> dict[str, Any]:
    """Replaces a session's raw frame times by the p50/p95 (ms) of each stage."""
    times = result.pop("frame_times")
    participant = result.pop("participant")
    spans: dict[str, list[float]] = {name: [] for name, _, _ in BREAKDOWN}
    for seq, captured, decoded in times:
        marks = {**timeline.of(participant, seq), "capture": captured, "decoded": decoded}
        for name, start, end in BREAKDOWN:
            if start in marks and end in marks:
                spans[name].append((marks[end] - marks[start]) * 1e3)
    return {
        name: {"ms_p50": round(float(np.percentile(v, 50)), 1),
               "ms_p95": round(float(np.percentile(v, 95)), 1), "frames": len(v)}
        for name, v in spans.items() if v
    }  # fmt: skip


def _sessions_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies_p95 = [r["e2e_latency_ms_p95"] for r in results if r.get("e2e_latency_ms_p95")]
    return {
        "worst_e2e_latency_ms_p95": max(latencies_p95) if latencies_p95 else None,
        "min_fps_received": min(r["fps_received"] for r in results),
        "mean_distinct_avatar_fps": round(
            float(np.mean([r["distinct_avatar_fps"] for r in results])), 2
        ),
    }


async def run_bench(
    config: ServerConfig,
    sessions: int,
    seconds: float,
    codec: str = "h264",
    client_processes: int = 0,
    during_job: Path | None = None,
    viewers: int = 1,
    janus: str | None = None,
    viewer_processes: int = 0,
) -> dict[str, Any]:
    """The sessions measured for ``seconds``; with ``during_job`` (a clip) measured again while
    the server trains an avatar from it (then the job is cancelled). With ``janus`` ("auto": a
    local Debian janus, or a Janus API URL whose secret is ``config.sfu``'s) the server
    publishes into it and the view-only clients subscribe from it."""
    with contextlib.ExitStack() as stack:
        if janus == "auto":
            local = stack.enter_context(local_janus(secrets.token_hex(16)))
            config = replace(config, sfu=SfuConfig(url=local.url, secret=local.secret))
            janus_cpu: Callable[[], float] | None = local.cpu_seconds
        elif janus is not None and config.sfu is None:
            raise ValueError("--janus URL needs the Janus secret (TELEPRESENCE_JANUS_SECRET)")
        else:
            janus_cpu = None
        return await _bench(
            config, sessions, seconds, codec, client_processes, during_job, viewers, janus_cpu,
            viewer_processes,
        )  # fmt: skip


async def _bench(
    config: ServerConfig,
    sessions: int,
    seconds: float,
    codec: str,
    client_processes: int,
    during_job: Path | None,
    viewers: int,
    janus_cpu: Callable[[], float] | None,
    viewer_processes: int,
) -> dict[str, Any]:
    """``janus_cpu``: the local Janus's CPU time so far (s), to report its share."""
    sfu = config.sfu is not None
    # benchmark traffic stays on this machine (on loopback, but for a local Janus's media)
    restrict_host_addresses(local_addresses() if sfu else ["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="telepresence-bench-") as store:
        config = replace(config, host="127.0.0.1", port=0, stamp_frames=True)
        # room and session limits that let every measured client in (viewers connected directly
        # are participants of the receiver; SFU viewers are not)
        people = sessions * (viewers + 1)
        limits = config.limits
        config = replace(config, limits=replace(
            limits,
            max_participants_per_room=max(limits.max_participants_per_room, viewers + 1),
            max_sessions=max(limits.max_sessions, people),
        ))  # fmt: skip
        if during_job is not None:
            config = replace(config, avatar_store=Path(store))
        app = create_app(config)
        runner = server_runner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base_url = f"http://127.0.0.1:{port}"
        job_report: dict[str, Any] | None = None
        try:
            dim = app[AVATARS].get(app[AVATARS].default_id).expression_dim
            cpu_before = time.process_time()
            janus_before = janus_cpu() if janus_cpu is not None else 0.0
            renders_before = app[METRICS].counter("renders_total")
            began = time.monotonic()
            results, clients_cpu_s = await _run_sessions(
                base_url, sessions, dim, seconds, codec == "h264", client_processes, viewers, sfu,
                viewer_processes,
            )  # fmt: skip
            wall_s = time.monotonic() - began
            server_cpu_s = time.process_time() - cpu_before
            janus_cpu_s = janus_cpu() - janus_before if janus_cpu is not None else None
            renders_measured = app[METRICS].counter("renders_total") - renders_before
            for result in results:
                result["latency_breakdown"] = _breakdown(app[TIMELINE], result)
            if during_job is not None:
                job_id = await _start_job(base_url, during_job)
                await _until_training(base_url, job_id)
                loaded, _ = await _run_sessions(
                    base_url, sessions, dim, seconds, codec == "h264", client_processes
                )
                for result in loaded:
                    result["latency_breakdown"] = _breakdown(app[TIMELINE], result)
                job = await _job(base_url, job_id)
                await _job(base_url, job_id, "DELETE")
                job_report = {
                    "job_stage": f"{job['stage']} ({job['percent']:.0f} %)",
                    **_sessions_summary(loaded),
                    "per_session": loaded,
                }
            metrics = app[METRICS]
            render, encode = metrics.histogram("render_ms"), metrics.histogram("encode_ms")
            encode_cpu = metrics.histogram("encode_cpu_ms")
            encodes = sum(metrics.counter("encodes_total", codec=c) for c in ("h264", "vp8"))
            frames_rendered = metrics.counter("renders_total")  # frames (a batch holds several)
            levels = {"resolution": metrics.gauge("render_resolution"),
                      "fps_cap": metrics.gauge("render_fps_cap"),
                      "detail": app[AVATARS].detail}  # fmt: skip
        finally:
            await runner.cleanup()
    report = _report(config, sessions, seconds, codec, client_processes, results)
    renders = int(frames_rendered)
    report.update(
        viewers_per_session=viewers,
        viewer_processes=viewer_processes,
        server_render_ms_mean=round(render.total / render.count, 2) if render else None,
        server_renders=renders,
        server_encode_ms_mean=round(encode.total / encode.count, 2) if encode else None,
        server_encodes_per_frame=round(encodes / renders, 2) if renders else None,
        server_encode_ms_per_frame=round(encode.total / renders, 2) if encode and renders else None,
        server_encode_cpu_ms_per_frame=round(encode_cpu.total / renders, 2)
        if encode_cpu and renders
        else None,
        render_level_at_end=levels,
        sfu="janus" if sfu else None,
        # this process's CPU per rendered frame: the server's alone with --client-processes
        server_process_cpu_ms_per_frame=round(server_cpu_s * 1e3 / renders_measured, 2)
        if renders_measured
        else None,
        # where the machine's cores went while the sessions ran (cores busy on average)
        cores_used={
            "server_process": round(server_cpu_s / wall_s, 2),
            "client_processes": round(clients_cpu_s / wall_s, 2) if clients_cpu_s else None,
            "janus": round(janus_cpu_s / wall_s, 2) if janus_cpu_s is not None else None,
        },
    )
    if job_report is not None:
        report["while_a_job_trains"] = job_report
    return report


def _report(
    config: ServerConfig,
    sessions: int,
    seconds: float,
    codec: str,
    client_processes: int,
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "benchmark": "telepresence",
        "sessions": sessions,
        "seconds": seconds,
        "resolution": config.resolution,
        "device": config.device,
        "codec": codec,
        "client_processes": client_processes,
        **_sessions_summary(results),
        "per_session": results,
    }
