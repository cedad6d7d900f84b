"""The render worker: each new expression frame is rendered as soon as the device is free.

One scheduler per device. The peers :meth:`RenderScheduler.wake` it when a frame arrives or
seats change; it then renders, in one batch, every watched sender whose newest frame is not
shown yet (the latest frame wins: older ones are never rendered), at most one batch in flight,
and at most at the level's frame-rate cap per sender (telepresence/load.py). Rendering and the
RGB -> YUV conversion run in a single worker thread; on the loop, results are published into
each sender's avatar stream (telepresence/streams.py), whose encoder sends them at once. An
avatar nobody watches, or whose sender is idle, costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from npga.codes import ExpressionFrame
from telepresence.avatars import AvatarRegistry, render_avatar
from telepresence.load import Level, LoadController
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.stamp import draw_seq
from telepresence.timeline import FrameTimeline

log = logging.getLogger(__name__)

CAP_SLACK = 0.85  # a sender's renders are at least CAP_SLACK / cap apart (arrival jitter)
ACTIVE_S = 1.0  # a sender with a frame this recent counts towards the device's load


@dataclass(frozen=True)
class RenderJob:
    """One sender's frame to render, with the avatar it was picked for (on the loop): an avatar
    switch while the worker renders cannot put the frame under the wrong avatar."""

    participant: Participant
    frame: ExpressionFrame | None
    avatar_id: str


@dataclass(frozen=True)
class RenderResult:
    job: RenderJob
    image: np.ndarray  # [H*3/2, W] uint8 yuv420p at the session's resolution

    @property
    def seq(self) -> int | None:
        return self.job.frame.seq if self.job.frame is not None else None


class RenderScheduler:
    def __init__(
        self,
        avatars: AvatarRegistry,
        rooms: RoomRegistry,
        metrics: Metrics,
        fps: float,
        stamp_frames: bool = False,
        timeline: FrameTimeline | None = None,
    ) -> None:
        self.timeline = timeline
        self.avatars = avatars
        self.rooms = rooms
        self.metrics = metrics
        self.fps = fps
        self.stamp_frames = stamp_frames
        self.load = LoadController(avatars.resolution, fps)
        self._due = asyncio.Event()
        self._started: dict[str, float] = {}  # participant id -> when its last render began
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._show_level()

    def wake(self) -> None:
        """Something may be due (a new frame, a new viewer, an avatar switch)."""
        self._due.set()

    async def warm_up(self) -> None:
        """Render every avatar once, neutral, in the render worker, before the first session.

        The first render of a process compiles the CPU kernels (numba, ~15 s on a fresh machine
        without its on-disk cache) and builds first-call state; without this the first sender's
        avatar would stand still for that long.
        """
        loop = asyncio.get_running_loop()
        neutral: list[ExpressionFrame | None] = [None]
        for avatar_id in self.avatars.ids:
            began = time.perf_counter()
            await loop.run_in_executor(
                self._executor, render_avatar, self.avatars.get(avatar_id), neutral
            )
            log.info("avatar %s ready (%.0f ms)", avatar_id, (time.perf_counter() - began) * 1e3)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                jobs, wait = self.due_jobs(time.monotonic())
                if not jobs:
                    self._due.clear()
                    with contextlib.suppress(TimeoutError):  # a capped sender may render now
                        await asyncio.wait_for(self._due.wait(), wait)
                    continue
                level = self.load.level
                began = time.perf_counter()
                for job in jobs:
                    self._started[job.participant.id] = time.monotonic()
                self._mark(jobs, "render_start")
                try:
                    results = await loop.run_in_executor(self._executor, self.render, jobs, level)
                except Exception:  # a bad avatar must not stop every room's video
                    log.exception("render failed")
                    self.metrics.inc("errors_total", kind="render")
                    await asyncio.sleep(1 / self.fps)  # not a busy loop of failing renders
                    continue
                seconds = time.perf_counter() - began
                self._mark([result.job for result in results], "render_end")
                self.store(results)
                self.metrics.observe("render_ms", seconds * 1e3)
                self.metrics.inc("renders_total", len(results))
                self.load.observe(seconds, len(jobs), self._active_senders())
                self._show_level()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _active_senders(self) -> int:
        now = time.monotonic()
        return sum(1 for p in self.rooms.watched() if now - p.latest_received < ACTIVE_S)

    def _show_level(self) -> None:
        for name, value in self.load.describe().items():
            self.metrics.set(f"render_{name}", value)

    def _mark(self, jobs: list[RenderJob], stage: str) -> None:
        if self.timeline is not None:
            for job in jobs:
                if job.frame is not None:
                    self.timeline.mark(job.participant.id, job.frame.seq, stage)

    def due_jobs(self, now: float) -> tuple[list[RenderJob], float | None]:
        """Watched senders whose newest frame is not shown yet (or nothing is), unless their
        last render began less than the cap's interval ago; and how long until the first of
        those may render (None: nothing waits). An avatar nobody receives is not rendered, so
        an idle server stays idle."""
        interval = CAP_SLACK / self.load.level.fps(self.fps)
        jobs, wait = [], None
        watched = self.rooms.watched()
        for participant in watched:
            stream, avatar_id = participant.stream, participant.avatar_id
            if stream is None or avatar_id is None:
                continue
            shown = stream.frame
            seq = participant.latest.seq if participant.latest is not None else None
            if shown is not None and shown.avatar_id == avatar_id and shown.seq == seq:
                continue
            ready_in = self._started.get(participant.id, -1e9) + interval - now
            if ready_in > 0:
                wait = ready_in if wait is None else min(wait, ready_in)
                continue
            jobs.append(RenderJob(participant, participant.latest, avatar_id))
        if len(self._started) > 2 * len(watched) + 16:  # forget senders that left
            ids = {p.id for p in watched}
            self._started = {k: v for k, v in self._started.items() if k in ids}
        return jobs, wait

    def store(self, results: list[RenderResult]) -> None:
        """On the loop: each sender's new frame into its stream, unless its avatar changed
        meanwhile (then the next batch renders the new one)."""
        for result in results:
            participant, job = result.job.participant, result.job
            if participant.avatar_id != job.avatar_id:
                self.metrics.inc("frames_dropped_total", reason="avatar_switched")
                continue
            if participant.stream is None:
                continue  # it left meanwhile
            captured = job.frame.timestamp if job.frame is not None else None
            participant.stream.publish(result.image, job.avatar_id, result.seq, captured)
        self.wake()  # frames that arrived during the render are due now

    def render(self, jobs: list[RenderJob], level: Level) -> list[RenderResult]:
        """Worker thread: one batched call per avatar, at the level's resolution, then scaled to
        the session's."""
        full = self.avatars.resolution
        size = level.resolution(full)
        by_avatar: dict[str, list[RenderJob]] = defaultdict(list)
        for job in jobs:
            by_avatar[job.avatar_id].append(job)
        results = []
        for avatar_id, group in by_avatar.items():
            frames = [job.frame for job in group]
            framers = [job.participant.framer for job in group]
            images = render_avatar(self.avatars.get(avatar_id), frames, framers, size=size)
            for job, rgb in zip(group, images, strict=True):
                if size != full:
                    rgb = cv2.resize(rgb, (full, full), interpolation=cv2.INTER_LINEAR)
                if self.stamp_frames:
                    draw_seq(rgb, job.frame.seq if job.frame is not None else 0)
                results.append(RenderResult(job, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)))
        return results
