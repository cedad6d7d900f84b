"""Graceful degradation: resolution first, then frame rate, back up when load drops."""

from __future__ import annotations

from telepresence.load import HOLD_S, LEVELS, LoadController


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(controller: LoadController, clock: _Clock, cost_at, senders: int, seconds: float):  # type: ignore[no-untyped-def]
    """Batches of ``senders`` frames whose per-frame cost depends on the current scale."""
    seen = []
    for _ in range(int(seconds * 10)):
        clock.now += 0.1
        per_frame = cost_at(controller.level.scale)
        seen.append(controller.observe(per_frame * senders, senders, senders).index)
    return seen


def test_overload_lowers_resolution_first_then_frame_rate_and_recovers() -> None:
    clock = _Clock()
    controller = LoadController(256, 30.0, clock=clock)
    cost = {1.0: 0.024, 0.75: 0.022, 0.5: 0.020}.__getitem__  # seconds per frame
    assert _run(controller, clock, cost, senders=1, seconds=3)[-1] == 0  # 0.72 of the device
    levels = _run(controller, clock, cost, senders=4, seconds=10)  # four senders: 2.9
    assert levels == sorted(levels)  # only ever down while overloaded
    reached = controller.describe()
    assert LEVELS[levels[-1]].scale == 0.5 and LEVELS[levels[-1]].fps_fraction < 1
    assert reached["resolution"] == 128 and reached["fps_cap"] < 30
    # it stays where the load fits: 4 x 20 ms x cap <= 0.95
    assert 4 * 0.020 * reached["fps_cap"] <= 0.95
    back = _run(controller, clock, cost, senders=1, seconds=10)  # three leave
    assert back[-1] == 0  # full resolution and rate again (0.72 < RECOVER_BELOW)
    assert controller.describe() == {"level": 0, "resolution": 256, "fps_cap": 30.0}


def test_levels_change_at_most_once_per_hold_time() -> None:
    clock = _Clock()
    controller = LoadController(256, 30.0, clock=clock)
    changes, last = 0, 0
    for _ in range(int(3 * HOLD_S * 100)):
        clock.now += 0.01
        level = controller.observe(0.5, 1, 8).index  # hopelessly overloaded
        changes += level != last
        last = level
    assert changes <= 3
