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

import cv2
import numpy as np

from npga.codes import ExpressionFrame
from telepresence.avatars import AvatarRegistry, render_avatar
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.stamp import draw_seq

log = logging.getLogger(__name__)

RenderJob = tuple[Participant, ExpressionFrame | None]


class RenderScheduler:
    def __init__(
        self,
        avatars: AvatarRegistry,
        rooms: RoomRegistry,
        metrics: Metrics,
        fps: float,
        stamp_frames: bool = False,
    ) -> None:
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
                jobs = self._due_jobs()
                if jobs:
                    began = time.perf_counter()
                    try:
                        results = await loop.run_in_executor(self._executor, self._render, jobs)
                    except Exception:  # a bad avatar must not stop every room's video
                        log.exception("render failed")
                        self.metrics.inc("errors_total", kind="render")
                    else:
                        for participant, image, seq in results:
                            participant.rendered = image
                            participant.rendered_seq = seq
                        self.metrics.observe("render_ms", (time.perf_counter() - began) * 1e3)
                        self.metrics.inc("renders_total", len(results))
                # late: run the most recent missed tick right away (skipping older ones)
                tick = max(tick + 1, math.floor((time.monotonic() - start) * self.fps))
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _due_jobs(self) -> list[RenderJob]:
        """Watched senders whose newest frame has not been rendered yet (or never at all); an
        avatar nobody receives is not rendered, so an idle server stays idle."""
        jobs = []
        for participant in self.rooms.watched():
            seq = participant.latest.seq if participant.latest is not None else None
            if participant.rendered is None or seq != participant.rendered_seq:
                jobs.append((participant, participant.latest))
        return jobs

    def _render(self, jobs: list[RenderJob]) -> list[tuple[Participant, np.ndarray, int | None]]:
        """Worker thread: one batched call per avatar."""
        by_avatar: dict[str, list[RenderJob]] = defaultdict(list)
        for job in jobs:
            assert job[0].avatar_id is not None
            by_avatar[job[0].avatar_id].append(job)
        results = []
        for avatar_id, group in by_avatar.items():
            frames = [frame for _, frame in group]
            framers = [participant.framer for participant, _ in group]
            images = render_avatar(self.avatars.get(avatar_id), frames, framers)
            for (participant, frame), rgb in zip(group, images, strict=True):
                seq = frame.seq if frame is not None else None
                if self.stamp_frames:
                    draw_seq(rgb, seq if seq is not None else 0)
                results.append((participant, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), seq))
        return results
