"""The avatar-creation API: upload a clip, follow its job, cancel it, delete what it made.

- ``POST /api/avatars`` (multipart: ``video``, ``name``, and ``token`` where the server has a
  secret: a token with the ``create`` role; its room names the owner) -> 202 ``{"job": ...}``
- ``GET /api/jobs/{id}`` -> the job: state, stage, percent, eta_s, queue_position, error
- ``DELETE /api/jobs/{id}`` -> cancels a queued or running job
- ``DELETE /api/avatars/{id}`` -> removes an avatar a job made (never a bundle given to serve)

Refusals are one-line JSON errors: 401/403 (token), 413 (too large, too long), 415 (not a
video), 400 (a bad name, too short), 404 (unknown job), 409 (a job already finished), 429 (the
queue or the owner's share is full).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import av
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from telepresence.auth import token_room
from telepresence.jobs import NAME_PATTERN, Job, JobLimits, JobRefused, JobRunner, avatar_id_for

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
CHUNK = 1 << 16
T = TypeVar("T")

Authorise = Callable[[web.Request, str, str, str | None], web.Response | None]
AvatarRemoval = Callable[[str], Awaitable[None]]  # stop serving it; JobRefused(409) when in use


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def video_seconds(path: Path) -> float:
    """The clip's duration in seconds; JobRefused(415) when it is not a decodable video."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise JobRefused(415, "the upload has no video stream")
            stream = container.streams.video[0]
            if container.duration:
                return container.duration / 1e6
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            frames = sum(1 for _ in container.decode(stream))  # no duration stored (webm)
            rate = float(stream.average_rate or 30)
            return frames / rate
    except av.error.FFmpegError:
        raise JobRefused(415, "the upload is not a video this server can decode") from None


class CreationApi:
    def __init__(
        self, runner: JobRunner, limits: JobLimits, authorise: Authorise, remove: AvatarRemoval
    ) -> None:
        self.runner, self.limits, self.authorise, self.remove = runner, limits, authorise, remove

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/avatars", self.upload),
            web.get("/api/jobs/{job}", self.status),
            web.delete("/api/jobs/{job}", self.cancel),
            web.delete("/api/avatars/{avatar}", self.delete_avatar),
        ]

    def _job(self, request: web.Request) -> Job:
        job = self.runner.store.jobs.get(request.match_info["job"])
        if job is None:
            raise JobRefused(404, f"no job {request.match_info['job']!r}")
        return job

    def _view(self, job: Job) -> dict[str, object]:
        return job.public(self.runner.position(job))

    async def status(self, request: web.Request) -> web.Response:
        try:
            return web.json_response({"job": self._view(self._job(request))})
        except JobRefused as refused:
            return _error(refused.status, str(refused))

    async def cancel(self, request: web.Request) -> web.Response:
        try:
            job = self._job(request)
            refusal = self.authorise(request, job.owner, "create", request.query.get("token"))
            if refusal is not None:
                return refusal
            await self.runner.cancel(job)
        except JobRefused as refused:
            return _error(refused.status, str(refused))
        return web.json_response({"job": self._view(job)})

    async def delete_avatar(self, request: web.Request) -> web.Response:
        avatar_id = request.match_info["avatar"]
        made = [j for j in self.runner.store.jobs.values() if j.avatar_id == avatar_id]
        if not made or made[0].state != "done":
            return _error(404, f"no avatar {avatar_id!r} made by a creation job")
        refusal = self.authorise(request, made[0].owner, "create", request.query.get("token"))
        if refusal is not None:
            return refusal
        try:
            await self.remove(avatar_id)
        except JobRefused as refused:
            return _error(refused.status, str(refused))
        job = made[0]
        job.state, job.error = "cancelled", "avatar deleted"
        self.runner.store.save(job)
        await asyncio.to_thread(
            shutil.rmtree, self.runner.store.avatar_folder(avatar_id), ignore_errors=True
        )
        return web.json_response({"deleted": avatar_id})

    async def upload(self, request: web.Request) -> web.Response:
        try:
            return await self._upload(request)
        except JobRefused as refused:
            return _error(refused.status, str(refused))

    async def _upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise JobRefused(415, "send the clip as multipart/form-data (fields: video, name)")
        declared = request.content_length
        if declared is not None and declared > self.limits.max_upload_bytes + CHUNK:
            raise JobRefused(413, self._too_large())
        reader = await request.multipart()
        fields: dict[str, str] = {}
        owner = ""
        store = self.runner.store
        job_id = store.new_id()
        folder = store.folder(job_id)
        video: Path | None = None
        try:
            while (part := await self._unless_stalled(reader.next())) is not None:
                if not isinstance(part, BodyPartReader):
                    raise JobRefused(400, "nested multipart bodies are not accepted")
                if part.name == "video":
                    if video is not None:
                        raise JobRefused(400, "one video per upload")
                    owner = self._admit(request, fields)  # name and token come before the video
                    suffix = Path(part.filename or "").suffix.lower()
                    suffix = suffix if suffix in VIDEO_SUFFIXES else ".mp4"
                    folder.mkdir(parents=True, exist_ok=True)
                    video = folder / f"upload{suffix}"
                    await self._receive(part, video)
                elif part.name in ("name", "token"):
                    value = await self._unless_stalled(part.read(decode=True))
                    fields[part.name] = value.decode()[:400]
            if video is None:
                raise JobRefused(400, "no video in the upload (multipart field 'video')")
            seconds = await asyncio.to_thread(video_seconds, video)
            if seconds > self.limits.max_video_seconds:
                raise JobRefused(
                    413, f"the clip is {seconds:.0f} s long; at most "
                    f"{self.limits.max_video_seconds:.0f} s",
                )  # fmt: skip
            if seconds < self.limits.min_video_seconds:
                raise JobRefused(
                    400, f"the clip is {seconds:.1f} s long; at least "
                    f"{self.limits.min_video_seconds:.0f} s (30-60 s is best)",
                )  # fmt: skip
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-uploaded stays
            raise
        name = fields["name"]
        job = Job(
            id=job_id, name=name, owner=owner, video=video.name,
            created_at=time.time(),
            avatar_id=avatar_id_for(name, job_id),
        )  # fmt: skip
        self.runner.submit(job)
        return web.json_response({"job": self._view(job)}, status=202)

    def _admit(self, request: web.Request, fields: dict[str, str]) -> str:
        """Name, access and the queue, checked before the video is stored -> the owner."""
        name = fields.get("name", "").strip()
        if not NAME_PATTERN.fullmatch(name):
            raise JobRefused(
                400, "give the avatar a name: 1-40 letters, digits, spaces, '.', '_' or '-', "
                "before the video field",
            )  # fmt: skip
        fields["name"] = name
        owner = "loopback"
        token = fields.get("token")
        if token is not None:
            owner = token_room(token) or owner
        refusal = self.authorise(request, owner, "create", token)
        if refusal is not None:
            raise JobRefused(refusal.status, str(_refusal_text(refusal)))
        self.runner.check_room(owner)
        return owner

    async def _receive(self, part: BodyPartReader, path: Path) -> None:
        written = 0
        with path.open("wb") as out:
            while chunk := await self._unless_stalled(part.read_chunk(CHUNK)):
                written += len(chunk)
                if written > self.limits.max_upload_bytes:
                    raise JobRefused(413, self._too_large())
                await asyncio.to_thread(out.write, chunk)

    async def _unless_stalled(self, step: Awaitable[T]) -> T:
        """One read of the upload; JobRefused(408) when the client sends nothing for
        ``upload_idle_seconds`` (a stalled upload must not hold its connection for ever)."""
        try:
            async with asyncio.timeout(self.limits.upload_idle_seconds):
                return await step
        except TimeoutError:
            raise JobRefused(
                408, f"the upload stalled (nothing for {self.limits.upload_idle_seconds:g} s)"
            ) from None
        except (ValueError, HttpProcessingError, RequestPayloadError) as error:
            lines = str(getattr(error, "message", "") or error).strip().splitlines()
            why = lines[0][:100] if lines else type(error).__name__
            raise JobRefused(
                400, f"the upload is not a readable multipart/form-data body ({why})"
            ) from None

    def _too_large(self) -> str:
        return f"the upload is larger than {self.limits.max_upload_bytes // 2**20} MiB"


def _refusal_text(response: web.Response) -> str:
    assert response.text is not None
    return str(json.loads(response.text).get("error"))
