"""The render worker: at every tick, the latest expression frame of every sender -> a frame.

One scheduler per device. Rendering (and RGB -> YUV conversion) runs in a single worker thread;
the event loop only hands over the latest frames and stores the results. Ticks follow an
absolute monotonic schedule; a slow render skips ticks instead of queueing latency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from npga.codes import ExpressionFrame
from telepresence.avatars import AvatarRegistry, render_avatar
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.stamp import draw_seq
from telepresence.timeline import FrameTimeline

log = logging.getLogger(__name__)


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
    image: np.ndarray  # [H*3/2, W] uint8 yuv420p

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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

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
        start = time.monotonic()
        tick = 0
        try:
            while True:
                delay = start + tick / self.fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                jobs = self.due_jobs()
                if jobs:
                    self._mark(jobs, "render_start")
                    began = time.perf_counter()
                    try:
                        results = await loop.run_in_executor(self._executor, self.render, jobs)
                    except Exception:  # a bad avatar must not stop every room's video
                        log.exception("render failed")
                        self.metrics.inc("errors_total", kind="render")
                    else:
                        self.store(results)
                        self._mark([result.job for result in results], "render_end")
                        self.metrics.observe("render_ms", (time.perf_counter() - began) * 1e3)
                        self.metrics.inc("renders_total", len(results))
                # late: run the most recent missed tick right away (skipping older ones)
                tick = max(tick + 1, math.floor((time.monotonic() - start) * self.fps))
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _mark(self, jobs: list[RenderJob], stage: str) -> None:
        if self.timeline is not None:
            for job in jobs:
                if job.frame is not None:
                    self.timeline.mark(job.participant.id, job.frame.seq, stage)

    def due_jobs(self) -> list[RenderJob]:
        """Watched senders whose newest frame has not been rendered yet (or never at all); an
        avatar nobody receives is not rendered, so an idle server stays idle."""
        jobs = []
        for participant in self.rooms.watched():
            seq = participant.latest.seq if participant.latest is not None else None
            due = participant.rendered is None or seq != participant.rendered_seq
            if due and participant.avatar_id is not None:
                jobs.append(RenderJob(participant, participant.latest, participant.avatar_id))
        return jobs

    def store(self, results: list[RenderResult]) -> None:
        """On the loop: each sender's newest image, unless its avatar changed meanwhile (then
        the next tick renders the new one)."""
        for result in results:
            participant = result.job.participant
            if participant.avatar_id != result.job.avatar_id:
                self.metrics.inc("frames_dropped_total", reason="avatar_switched")
                continue
            participant.rendered = result.image
            participant.rendered_seq = result.seq

    def render(self, jobs: list[RenderJob]) -> list[RenderResult]:
        """Worker thread: one batched call per avatar."""
        by_avatar: dict[str, list[RenderJob]] = defaultdict(list)
        for job in jobs:
            by_avatar[job.avatar_id].append(job)
        results = []
        for avatar_id, group in by_avatar.items():
            frames = [job.frame for job in group]
            framers = [job.participant.framer for job in group]
            images = render_avatar(self.avatars.get(avatar_id), frames, framers)
            for job, rgb in zip(group, images, strict=True):
                if self.stamp_frames:
                    draw_seq(rgb, job.frame.seq if job.frame is not None else 0)
                results.append(RenderResult(job, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)))
        return results
