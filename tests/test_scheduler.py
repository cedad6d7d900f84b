"""The render scheduler: frames render on arrival (the latest wins), capped per sender, idle
avatars cost nothing, and a frame is rendered with the avatar it was picked for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from npga.codes import ExpressionFrame
from server_fixtures import small_registry
from telepresence.config import Limits
from telepresence.load import LEVELS
from telepresence.metrics import Metrics
from telepresence.rooms import Participant, RoomRegistry
from telepresence.scheduler import RenderScheduler
from telepresence.streams import StreamHub


def _frame(seq: int, timestamp: float = 0.0) -> ExpressionFrame:
    return ExpressionFrame(
        seq=seq, timestamp=timestamp, rotation_wxyz=np.array([1.0, 0, 0, 0]),
        translation=np.zeros(3), gaze=np.zeros(4), code=np.full(16, 0.5),
    )  # fmt: skip


def _sender(rooms: RoomRegistry, hub: StreamHub, avatar: str = "anna") -> Participant:
    sender = rooms.join("r", "sender", avatar, see_self=True)
    sender.seats = 1  # it watches itself: worth rendering
    sender.stream = hub.open(sender.id)
    return sender


@contextlib.asynccontextmanager
async def _running(
    fps: float = 30.0,
) -> AsyncIterator[tuple[RenderScheduler, RoomRegistry, StreamHub]]:
    rooms, metrics = RoomRegistry(Limits()), Metrics()
    hub = StreamHub(64, fps, metrics)
    scheduler = RenderScheduler(small_registry(), rooms, metrics, fps=fps)
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler, rooms, hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.close_all()


async def _until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _shown_seq(participant: Participant) -> int | None:
    assert participant.stream is not None
    return participant.stream.frame.seq if participant.stream.frame is not None else None


def test_an_avatar_switch_during_a_render_drops_that_render() -> None:
    rooms, metrics = RoomRegistry(Limits()), Metrics()
    hub = StreamHub(64, 30, metrics)
    sender = _sender(rooms, hub)
    scheduler = RenderScheduler(small_registry(), rooms, metrics, fps=30)
    sender.accept(_frame(1))
    jobs, _ = scheduler.due_jobs(now=100.0)  # picked on the loop, for anna
    assert [job.avatar_id for job in jobs] == ["anna"]
    sender.avatar_id = "ben"  # the sender switches while the worker renders
    scheduler.store(scheduler.render(jobs, LEVELS[0]))
    assert sender.stream is not None and sender.stream.frame is None  # not shown as ben
    assert "avatar_switched" in metrics.render()
    again, _ = scheduler.due_jobs(now=200.0)
    assert [job.avatar_id for job in again] == ["ben"]
    scheduler.store(scheduler.render(again, LEVELS[0]))
    assert sender.stream.frame is not None and sender.stream.frame.seq == 1
    assert sender.stream.frame.avatar_id == "ben"


def test_a_lower_level_renders_smaller_and_scales_up_to_the_session_size() -> None:
    rooms, metrics = RoomRegistry(Limits()), Metrics()
    sender = _sender(rooms, StreamHub(64, 30, metrics))
    scheduler = RenderScheduler(small_registry(), rooms, metrics, fps=30)
    sender.accept(_frame(1))
    jobs, _ = scheduler.due_jobs(now=100.0)
    full = scheduler.render(jobs, LEVELS[0])[0].image
    half = scheduler.render(jobs, LEVELS[2])[0].image
    assert full.shape == half.shape == (96, 64)  # yuv420p of 64x64
    assert LEVELS[2].resolution(64) == 32
    difference = np.abs(full.astype(int) - half.astype(int))[:64]
    assert 0 < difference.mean() < 12  # the same face, softer


@pytest.mark.asyncio
async def test_a_frame_renders_on_arrival_and_the_latest_wins() -> None:
    async with _running() as (scheduler, rooms, hub):
        sender = _sender(rooms, hub)
        scheduler.wake()
        await _until(lambda: sender.stream is not None and sender.stream.frame is not None)
        renders = scheduler.metrics.counter("renders_total")  # the neutral face, once
        for seq in (1, 2, 3):  # all arrive before the worker is free again
            sender.accept(_frame(seq))
        scheduler.wake()
        await _until(lambda: _shown_seq(sender) == 3)
        assert scheduler.metrics.counter("renders_total") - renders <= 2  # 1 and 2 are skipped
        settled = scheduler.metrics.counter("renders_total")
        await asyncio.sleep(0.3)  # nothing new: an idle sender costs nothing
        assert scheduler.metrics.counter("renders_total") == settled


@pytest.mark.asyncio
async def test_each_sender_renders_at_most_at_the_frame_rate_cap() -> None:
    async with _running(fps=10.0) as (scheduler, rooms, hub):
        sender = _sender(rooms, hub)
        start = asyncio.get_running_loop().time()
        seq = 0
        while asyncio.get_running_loop().time() - start < 1.0:  # 200 frames/s for a second
            seq += 1
            sender.accept(_frame(seq))
            scheduler.wake()
            await asyncio.sleep(0.005)
        renders = scheduler.metrics.counter("renders_total")
        assert 5 <= renders <= 10 / 0.85 + 2, renders  # ~10 a second, never 200
        await _until(lambda: _shown_seq(sender) == seq)  # and the newest is shown in the end


@pytest.mark.asyncio
async def test_an_unwatched_sender_is_not_rendered() -> None:
    async with _running() as (scheduler, rooms, hub):
        sender = _sender(rooms, hub)
        sender.seats = 0  # a sender that sends only, and nobody else in the room
        for seq in range(1, 20):
            sender.accept(_frame(seq))
            scheduler.wake()
            await asyncio.sleep(0.01)
        assert scheduler.metrics.counter("renders_total") == 0
        viewer = rooms.join("r", "viewer", None, see_self=False)
        viewer.seats = 1  # someone watches now
        scheduler.wake()
        await _until(lambda: _shown_seq(sender) == 19)
