"""The render scheduler: a frame is rendered with the avatar it was picked for."""

from __future__ import annotations

import numpy as np

from npga.codes import ExpressionFrame
from server_fixtures import small_registry
from telepresence.config import Limits
from telepresence.metrics import Metrics
from telepresence.rooms import RoomRegistry
from telepresence.scheduler import RenderScheduler


def _frame(seq: int) -> ExpressionFrame:
    return ExpressionFrame(
        seq=seq, timestamp=0.0, rotation_wxyz=np.array([1.0, 0, 0, 0]),
        translation=np.zeros(3), gaze=np.zeros(4), code=np.full(16, 0.5),
    )  # fmt: skip


def test_an_avatar_switch_during_a_render_drops_that_render() -> None:
    rooms = RoomRegistry(Limits())
    sender = rooms.join("r", "sender", "anna", see_self=True)
    sender.seats = 1  # it watches itself: worth rendering
    metrics = Metrics()
    scheduler = RenderScheduler(small_registry(), rooms, metrics, fps=30)
    sender.accept(_frame(1))
    jobs = scheduler.due_jobs()  # picked on the loop, for anna
    assert [job.avatar_id for job in jobs] == ["anna"]
    sender.avatar_id = "ben"  # the sender switches while the worker renders
    scheduler.store(scheduler.render(jobs))
    assert sender.rendered is None  # anna's image is not shown as ben
    assert "avatar_switched" in metrics.render()
    again = scheduler.due_jobs()
    assert [job.avatar_id for job in again] == ["ben"]
    scheduler.store(scheduler.render(again))
    assert sender.rendered is not None and sender.rendered_seq == 1
