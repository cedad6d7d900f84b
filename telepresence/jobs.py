"""Avatar-creation jobs: an uploaded clip -> a queue -> one ``npga create`` process at a time ->
a new avatar in the registry, live, without a restart.

Everything persists under the server's ``--avatar-dir``::

    DIR/jobs/ID/job.json        the job's state (replaced atomically)
    DIR/jobs/ID/upload.EXT      the clip as uploaded
    DIR/jobs/ID/work/           npga create's run directory (its checkpoints: resumable)
    DIR/jobs/ID/progress.json   what npga create --progress-json reports
    DIR/jobs/ID/log.txt         its output
    DIR/avatars/AVATAR/         finished avatars (npga create writes them whole, then renames)

A job runs as a separate process, niced, with a bounded thread count, so live sessions keep
their frame rate. A server that stops interrupts the job as Ctrl-C would (npga create saves its
training checkpoint); restarted, it finds the job ``running`` on disk and starts it again with
``--resume``: the stages done are kept, training continues from its last checkpoint. An avatar
is added to the registry only after the process exited cleanly and its bundle loaded: a
half-trained avatar is never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
STOP_SECONDS = 20.0  # a job asked to stop (the server shuts down) gets this long to checkpoint
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")


class JobRefused(Exception):
    """A request the job API refuses; ``status`` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobLimits:
    max_upload_bytes: int = 200 * 2**20
    min_video_seconds: float = 3.0
    max_video_seconds: float = 120.0
    upload_idle_seconds: float = 30.0  # an upload that sends nothing this long is dropped
    max_jobs_per_owner: int = 2  # queued or running at once
    max_queued: int = 8  # jobs waiting or running in all
    threads: int = 1  # CPU threads a job may use (live rendering keeps the rest)
    nice: int = 10


@dataclass(frozen=True)
class JobRecipe:
    """How jobs call ``npga create``: its quality and size options."""

    device: str = "cpu"
    quality: str = "standard"
    extra_args: tuple[str, ...] = ()  # e.g. ("--iters", "200"): a tiny recipe for tests


@dataclass
class Job:
    id: str
    name: str  # the display name the person gave
    owner: str  # who asked (the token's room, or the loopback client)
    video: str  # the upload's file name inside the job folder
    created_at: float
    state: str = "queued"
    stage: str = ""
    percent: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    avatar_id: str | None = None  # once done
    attempts: int = 0  # process starts (more than one: resumed after a restart)

    def public(self, queue_position: int | None) -> dict[str, Any]:
        return {**asdict(self), "queue_position": queue_position}


def _low_priority(nice: int) -> list[str]:
    """The command prefix that runs a job only on CPU time live sessions leave: the idle
    scheduling class where there is one (chrt, Linux), and ``nice``. The job stays in the
    server's session (a process group of its own, no setsid): with autogroup scheduling a new
    session would get an equal share of the CPU whatever its nice value (docs/benchmarks.md)."""
    idle = ["chrt", "--idle", "0"] if shutil.which("chrt") else []
    return [*idle, "nice", "-n", str(nice)]


def avatar_id_for(name: str, job_id: str) -> str:
    """A registry id from a display name: lower-case, dashes, and the job's id for uniqueness."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "avatar"
    return f"{slug[:24]}-{job_id[:6]}"


@dataclass
class JobStore:
    """Jobs on disk under ``root``."""

    root: Path
    jobs: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "avatars").mkdir(parents=True, exist_ok=True)
        for path in sorted((self.root / "jobs").glob("*/job.json")):
            try:
                job = Job(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a job folder whose state cannot be read is left alone
            self.jobs[job.id] = job

    def folder(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def avatar_folder(self, avatar_id: str) -> Path:
        return self.root / "avatars" / avatar_id

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def save(self, job: Job) -> None:
        path = self.folder(job.id) / "job.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("job.json.tmp")
        tmp.write_text(json.dumps(asdict(job), indent=1))
        os.replace(tmp, path)
        self.jobs[job.id] = job

    def finished_avatars(self) -> dict[str, Path]:
        """Avatars that jobs finished: id -> bundle folder."""
        return {
            job.avatar_id: self.avatar_folder(job.avatar_id)
            for job in self.jobs.values()
            if job.state == "done"
            and job.avatar_id
            and (self.avatar_folder(job.avatar_id) / "avatar.json").is_file()
        }


class JobRunner:
    """The queue: jobs start in submission order, one at a time (one device)."""

    def __init__(self, store: JobStore, limits: JobLimits, recipe: JobRecipe) -> None:
        self.store = store
        self.limits = limits
        self.recipe = recipe
        self._wake = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._running: str | None = None
        self.on_done: list[Callable[[Job, Path], Awaitable[None]]] = []  # (job, its bundle)
        for job in store.jobs.values():
            if job.state == "running":  # the server stopped mid-job: run it again, resumed
                job.state = "queued"
                store.save(job)

    def waiting(self) -> list[Job]:
        return sorted(
            (j for j in self.store.jobs.values() if j.state in ("queued", "running")),
            key=lambda j: (j.state != "running", j.created_at),
        )

    def position(self, job: Job) -> int | None:
        """0 while it runs, 1 for the next to run, ...; None once finished."""
        order = self.waiting()
        return order.index(job) if job in order else None

    def check_room(self, owner: str) -> None:
        """Refuse before an upload is stored when the queue or the owner's share is full."""
        waiting = self.waiting()
        if len(waiting) >= self.limits.max_queued:
            raise JobRefused(429, f"the job queue is full ({len(waiting)} jobs); try later")
        mine = sum(j.owner == owner for j in waiting)
        if mine >= self.limits.max_jobs_per_owner:
            raise JobRefused(
                429, f"you have {mine} jobs queued or running (at most "
                f"{self.limits.max_jobs_per_owner}); wait for one to finish or cancel it",
            )  # fmt: skip

    def submit(self, job: Job) -> None:
        self.store.save(job)
        self._wake.set()

    async def cancel(self, job: Job) -> None:
        if job.state in FINISHED:
            raise JobRefused(409, f"job {job.id} is {job.state} already")
        job.state, job.error = "cancelled", None
        self.store.save(job)
        if self._running == job.id and self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def run(self) -> None:
        """Forever: start the oldest queued job, follow it, repeat."""
        while True:
            queued = [j for j in self.waiting() if j.state == "queued"]
            if not queued:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._run_one(queued[0])

    async def _run_one(self, job: Job) -> None:
        folder = self.store.folder(job.id)
        work = folder / "work"
        out = self.store.avatar_folder(job.avatar_id or avatar_id_for(job.name, job.id))
        progress = folder / "progress.json"
        command = [
            sys.executable, "-m", "npga.cli", "create", str(folder / job.video),
            "--out", str(out), "--work", str(work), "--device", self.recipe.device,
            "--quality", self.recipe.quality, "--progress-json", str(progress),
            *self.recipe.extra_args,
        ]  # fmt: skip
        resumed = (work / "settings.json").is_file()
        if resumed:
            command.append("--resume")  # a job started before: continue from its checkpoints
        threads = str(self.limits.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "NUMBA_NUM_THREADS": threads}  # fmt: skip
        job.state, job.attempts, job.error = "running", job.attempts + 1, None
        job.avatar_id = out.name
        self.store.save(job)
        self._running = job.id
        with open(folder / "log.txt", "ab") as log:
            _log_line(log, f"attempt {job.attempts}: " + ("resuming" if resumed else "starting"))
            self._process = await asyncio.create_subprocess_exec(
                *_low_priority(self.limits.nice), *command,
                stdout=log, stderr=log, env=env, process_group=0,
            )  # fmt: skip
            try:
                while True:
                    try:
                        await asyncio.wait_for(asyncio.shield(self._process.wait()), 0.5)
                        break
                    except TimeoutError:
                        self._follow(job, progress)
            except asyncio.CancelledError:  # the server stops: the job resumes next start
                await self._interrupt(self._process, log)
                raise
            finally:
                self._running = None
        code = self._process.returncode
        self._process = None
        if job.state == "cancelled":
            shutil.rmtree(work, ignore_errors=True)
            return
        if code != 0:
            job.state, job.error = "failed", _last_line(folder / "log.txt")
            self.store.save(job)
            return
        job.stage, job.percent, job.eta_s = "done", 100.0, 0.0
        for callback in self.on_done:
            try:
                await callback(job, out)
            except Exception as error:  # a bundle that will not load fails the job
                job.state, job.error = "failed", f"the new avatar could not be served: {error}"
                self.store.save(job)
                return
        job.state = "done"
        self.store.save(job)
        shutil.rmtree(work, ignore_errors=True)  # checkpoints are not needed any more

    async def _interrupt(self, process: asyncio.subprocess.Process, log: BinaryIO) -> None:
        """Ctrl-C for the job (npga create checkpoints its training and exits), then a kill if
        it has not stopped within ``STOP_SECONDS``; what happened goes into the job's log."""
        # Out of the idle class first where allowed (root, or a permissive RLIMIT_NICE), every
        # thread of it (the class is per thread, and torch's workers inherited it): a job that
        # only gets idle CPU time could miss STOP_SECONDS on a busy machine and lose the
        # training since its last checkpoint.
        for thread in _threads(process.pid):
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(thread, os.SCHED_OTHER, os.sched_param(0))
        _log_line(log, "the server stops: interrupting the job (it saves a checkpoint)")
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            _log_line(log, f"the job did not stop within {STOP_SECONDS:.0f} s: killed")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _follow(self, job: Job, progress: Path) -> None:
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            return
        job.stage = str(state.get("stage", ""))
        job.percent = float(state.get("percent", 0.0))
        eta = state.get("eta_s")
        job.eta_s = float(eta) if isinstance(eta, int | float) else None
        self.store.save(job)


def _threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (Linux ``/proc``; just ``pid`` elsewhere)."""
    try:
        return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except (OSError, ValueError):
        return [pid]


def _log_line(log: BinaryIO, text: str) -> None:
    """A line of the server's own in a job's log (between the job's output)."""
    log.write(f"telepresence: {text}\n".encode())
    log.flush()


def _last_line(log: Path) -> str:
    """The last non-empty line of a job's log: npga create's one-line error."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "the job failed (no log)"
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else "the job failed without a message"
