"""The avatar-creation API on a real server: uploads, refusals, a job that trains (a tiny npga
create recipe) and is served at once, cancelling, and a restart in the middle of a job."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from clips import front_frames, write_video
from npga.data.synth.writer import SynthConfig, write_synth
from server_fixtures import TINY_JOB_RECIPE as TINY
from server_fixtures import running_server
from telepresence.auth import mint_token
from telepresence.jobs import JobLimits
from telepresence.sender import TelepresenceClient
from telepresence.sources import SendOptions, synthetic_frames

JOB_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of the synthetic performer turning, as a phone would upload it (mp4)."""
    root = tmp_path_factory.mktemp("synth") / "cap"
    write_synth(root, SynthConfig(frames=150, cameras=1, resolution=128, seed=3,
                                  head_motion="wide"))  # fmt: skip
    return write_video(tmp_path_factory.mktemp("clips") / "me.mp4", front_frames(root))


def _form(clip: Path | None, name: str = "Me", token: str | None = None, data: bytes | None = None):
    form = aiohttp.FormData()
    form.add_field("name", name)
    if token is not None:
        form.add_field("token", token)
    if clip is not None or data is not None:
        payload = data if data is not None else clip.read_bytes()  # type: ignore[union-attr]
        form.add_field("video", payload, filename="me.mp4", content_type="video/mp4")
    return form


async def _post(http: aiohttp.ClientSession, url: str, form: aiohttp.FormData):
    async with http.post(f"{url}/api/avatars", data=form) as response:
        return response.status, await response.json()


async def _job(http: aiohttp.ClientSession, url: str, job_id: str) -> dict:
    async with http.get(f"{url}/api/jobs/{job_id}") as response:
        assert response.status == 200
        return (await response.json())["job"]


async def _until(http, url, job_id, done, timeout: float = JOB_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = await _job(http, url, job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.5)


def _url(server) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.mark.asyncio
async def test_a_clip_becomes_an_avatar_that_is_served_at_once(clip: Path, tmp_path: Path):
    async with running_server(avatar_store=tmp_path, job_recipe=TINY) as server:
        url = _url(server)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/config") as response:
                limits = (await response.json())["avatar_creation"]  # what the page checks
            assert limits["max_upload_bytes"] == JobLimits().max_upload_bytes
            assert re.fullmatch(limits["name_pattern"], "Ada Lovelace")
            status, body = await _post(http, url, _form(clip, name="Ada Lovelace"))
            assert status == 202, body
            job = body["job"]
            assert job["state"] in ("queued", "running") and job["queue_position"] in (0, 1)
            seen: set[str] = set()

            def finished(job: dict) -> bool:
                seen.add(job["stage"].split(" ")[0])
                return job["state"] in ("done", "failed")

            job = await _until(http, url, job["id"], finished)
            assert job["state"] == "done", job
            assert job["percent"] == 100.0 and job["queue_position"] is None
            assert {"5/6", "6/6"} <= seen  # the stages were followed live
            async with http.get(f"{url}/api/avatars") as response:
                ids = [a["id"] for a in (await response.json())["avatars"]]
            assert job["avatar_id"] in ids and job["avatar_id"].startswith("ada-lovelace-")
            async with http.get(f"{url}/api/avatars/{job['avatar_id']}/encoder") as response:
                assert response.status == 200 and (await response.json())["dim"] == 8
    assert not (tmp_path / "jobs" / job["id"] / "work").exists()  # checkpoints cleaned up
    assert (tmp_path / "avatars" / job["avatar_id"] / "avatar.json").is_file()
    # a new server on the same folder serves it from the start
    async with (
        running_server(avatar_store=tmp_path, job_recipe=TINY) as server,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{_url(server)}/api/avatars") as response:
            ids = [a["id"] for a in (await response.json())["avatars"]]
        assert job["avatar_id"] in ids
        async with http.delete(f"{_url(server)}/api/avatars/{job['avatar_id']}") as response:
            assert response.status == 200
        async with http.get(f"{_url(server)}/api/avatars") as response:
            ids = [a["id"] for a in (await response.json())["avatars"]]
        assert job["avatar_id"] not in ids
    assert not (tmp_path / "avatars" / job["avatar_id"]).exists()


@pytest.mark.asyncio
async def test_every_refusal_is_one_clear_line(clip: Path, tmp_path: Path) -> None:
    limits = JobLimits(max_upload_bytes=clip.stat().st_size + 1000, max_video_seconds=4.0,
                       max_queued=1)  # fmt: skip
    async with running_server(avatar_store=tmp_path / "store", job_limits=limits,
                              job_recipe=TINY, secret="s3cret") as server:  # fmt: skip
        url = _url(server)
        create = mint_token("s3cret", "alice", "create", 600)
        viewer = mint_token("s3cret", "alice", "viewer", 600)
        async with aiohttp.ClientSession() as http:
            cases = [
                (_form(clip), 401, "this server needs a token"),
                (_form(clip, token=viewer), 403, "token does not grant the create role"),
                (_form(clip, token=create, data=b"\0" * (limits.max_upload_bytes + 10)), 413,
                 "the upload is larger than"),
                (_form(clip, token=create), 413, "the clip is 5 s long; at most 4 s"),
                (_form(clip, token=create, data=b"not a video at all"), 415,
                 "not a video this server can decode"),
                (_form(clip, name="", token=create), 400, "give the avatar a name"),
                (_form(None, token=create), 415, "send the clip as multipart/form-data"),
            ]  # fmt: skip
            for form, status, message in cases:
                got, body = await _post(http, url, form)
                assert (got, message in body["error"]) == (status, True), body
            async with http.get(f"{url}/api/jobs/nope") as response:
                assert (
                    response.status == 404 and "no job 'nope'" in (await response.json())["error"]
                )
            assert list((tmp_path / "store" / "jobs").iterdir()) == []  # nothing half-stored
    # the queue is full: one job waiting or running is the limit here; then cancel it
    limits = JobLimits(max_queued=1)
    async with running_server(avatar_store=tmp_path / "q", job_limits=limits,
                              job_recipe=TINY) as server:  # fmt: skip
        url = _url(server)
        async with aiohttp.ClientSession() as http:
            status, first = await _post(http, url, _form(clip))
            assert status == 202
            status, body = await _post(http, url, _form(clip))
            assert status == 429 and "the job queue is full" in body["error"]
            async with http.delete(f"{url}/api/jobs/{first['job']['id']}") as response:
                assert response.status == 200
                assert (await response.json())["job"]["state"] == "cancelled"
            async with http.delete(f"{url}/api/jobs/{first['job']['id']}") as response:
                assert (
                    response.status == 409
                    and "cancelled already" in (await response.json())["error"]
                )
            status, body = await _post(http, url, _form(clip))  # room again
            assert status == 202


@pytest.mark.asyncio
async def test_a_server_restarted_mid_job_finishes_it(clip: Path, tmp_path: Path) -> None:
    slower = replace(TINY, extra_args=(*TINY.extra_args[:-4], "--iters", "400", "--frames", "30"))
    async with running_server(avatar_store=tmp_path, job_recipe=slower) as server:
        url = _url(server)
        async with aiohttp.ClientSession() as http:
            status, body = await _post(http, url, _form(clip))
            assert status == 202
            job_id = body["job"]["id"]
            # well into training (stage 5/6 spans 15-95 %), so that its checkpoint is past step 0
            await _until(
                http, url, job_id, lambda j: j["stage"].startswith("5/6") and j["percent"] >= 25
            )
        # the server stops while the job trains
    on_disk = json.loads((tmp_path / "jobs" / job_id / "job.json").read_text())
    assert on_disk["state"] == "running"
    async with running_server(avatar_store=tmp_path, job_recipe=slower) as server:
        url = _url(server)
        async with aiohttp.ClientSession() as http:
            job = await _until(http, url, job_id, lambda j: j["state"] in ("done", "failed"))
            assert job["state"] == "done", job
            assert job["attempts"] == 2  # started again, resumed from its checkpoints
            async with http.get(f"{url}/api/avatars") as response:
                ids = [a["id"] for a in (await response.json())["avatars"]]
            assert job["avatar_id"] in ids
    log = (tmp_path / "jobs" / job_id / "log.txt").read_text()
    # the second run did not start over (on failure: how the first run ended, and the starts)
    ends = [line for line in log.splitlines() if "interrupt" in line or "attempt" in line]
    assert log.count("5/6 training: 0/") == 1, (ends, log[:1500], log[-1500:])
    assert "resumed" in log


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_live_session_keeps_its_frame_rate_while_a_job_trains(clip: Path, tmp_path: Path):
    """The job runs at idle priority on one thread: a viewer of a moving avatar receives within
    10 % of the frames it received before the job started."""
    longer = replace(TINY, extra_args=(*TINY.extra_args[:-4], "--iters", "2000", "--frames", "30"))
    async with running_server(avatar_store=tmp_path, job_recipe=longer) as server:
        url = _url(server)
        received = {"frames": 0}

        def count(seat: int, frame: object) -> None:
            received["frames"] += 1

        sender = TelepresenceClient(url, "live", "sender", avatar="anna", seats=0)
        viewer = TelepresenceClient(url, "live", "viewer", seats=1, on_frame=count)
        moving = asyncio.ensure_future(asyncio.sleep(0))
        try:
            await sender.connect()
            await sender.wait_channels()
            await viewer.connect()

            async def move() -> None:
                async for frame in synthetic_frames(16, SendOptions()):
                    sender.send_frame(frame)

            moving = asyncio.ensure_future(move())

            async def fps(seconds: float) -> float:
                start = received["frames"]
                await asyncio.sleep(seconds)
                return (received["frames"] - start) / seconds

            await asyncio.sleep(1.0)
            before = await fps(4.0)
            async with aiohttp.ClientSession() as http:
                status, body = await _post(http, url, _form(clip))
                assert status == 202
                await _until(http, url, body["job"]["id"], lambda j: j["stage"].startswith("5/6"))
                during = await fps(4.0)
                job = await _job(http, url, body["job"]["id"])
                assert job["state"] == "running" and job["stage"].startswith("5/6"), job
        finally:
            moving.cancel()
            await sender.close()
            await viewer.close()
    print(f"viewer fps: {before:.1f} before the job, {during:.1f} while it trains")
    assert before > 20 and during >= 0.9 * before, (before, during)
