"""Graceful degradation: when the render device cannot keep up, lower resolution, then frame rate.

The render worker renders each watched sender's newest frame as soon as it is free, at most at
the level's frame-rate cap per sender. Its load at a level is what one second of that cap asks
of it: (seconds per rendered frame at the level's resolution) x (active senders) x (cap). Over
1, frames wait for the device and latency grows; so the controller steps down a level while the
load at the current one is over :data:`DEGRADE_ABOVE`, and steps back up when the level above
would be under :data:`RECOVER_BELOW` (measured costs only: a resolution it never rendered at is
not guessed). Levels change at most once per :data:`HOLD_S`, so each is measured before the next
step. Images rendered below the session's resolution are scaled up to it: the video keeps its
size (no new keyframe), and a browser sees a softer picture instead of a late one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEGRADE_ABOVE = 0.95  # load (device-seconds per second) over which the level steps down
RECOVER_BELOW = 0.75  # the level above must be predicted under this to step up
HOLD_S = 1.0  # at least this long at a level before the next change
COST_SMOOTHING = 0.2  # weight of the newest batch in a level's per-frame cost


@dataclass(frozen=True)
class Level:
    index: int
    scale: float  # of the session's resolution
    fps_fraction: float  # of the server's frame rate

    def resolution(self, full: int) -> int:
        """The render size at this level: a multiple of 8, at least 16."""
        return max(16, round(full * self.scale / 8) * 8)

    def fps(self, full: float) -> float:
        return full * self.fps_fraction


LEVELS = tuple(
    Level(i, scale, fps)
    for i, (scale, fps) in enumerate(
        ((1.0, 1.0), (0.75, 1.0), (0.5, 1.0), (0.5, 2 / 3), (0.5, 1 / 2), (0.5, 1 / 3))
    )
)


class LoadController:
    """The render level for all sessions of one device (read and updated by the scheduler)."""

    def __init__(
        self, resolution: int, fps: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.resolution, self.fps = resolution, fps
        self._clock = clock
        self.level = LEVELS[0]
        self._changed_at = clock()
        self._cost: dict[float, float] = {}  # scale -> seconds per rendered frame (smoothed)

    def load(self, level: Level, senders: int) -> float | None:
        """Predicted device-seconds per second at ``level`` (None: its cost is unmeasured)."""
        cost = self._cost.get(level.scale)
        if cost is None:
            return None
        return cost * senders * level.fps(self.fps)

    def observe(self, seconds: float, frames: int, senders: int) -> Level:
        """One rendered batch (``frames`` frames in ``seconds``) while ``senders`` senders are
        active; returns the level the next batch renders at."""
        if frames <= 0:
            return self.level
        per_frame = seconds / frames
        old = self._cost.get(self.level.scale)
        self._cost[self.level.scale] = (
            per_frame if old is None else old + COST_SMOOTHING * (per_frame - old)
        )
        now = self._clock()
        if now - self._changed_at < HOLD_S:
            return self.level
        index = self.level.index
        current = self.load(self.level, senders)
        if current is not None and current > DEGRADE_ABOVE and index + 1 < len(LEVELS):
            self._set(LEVELS[index + 1], now)
        elif index > 0:
            above = self.load(LEVELS[index - 1], senders)
            if above is not None and above < RECOVER_BELOW:
                self._set(LEVELS[index - 1], now)
        return self.level

    def _set(self, level: Level, now: float) -> None:
        self.level, self._changed_at = level, now

    def describe(self) -> dict[str, float | int]:
        """The current level as the metrics, ctrl stats and the web client show it."""
        return {
            "level": self.level.index,
            "resolution": self.level.resolution(self.resolution),
            "fps_cap": round(self.level.fps(self.fps), 2),
        }
