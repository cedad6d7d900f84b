"""One-Euro filter (Casiez et al. 2012): smooth when still, responsive when moving."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    min_cutoff: float = 1.0  # Hz; lower = smoother at rest
    beta: float = 0.05  # speed coefficient; higher = less lag when moving
    d_cutoff: float = 1.0  # Hz, for the derivative

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not self.beta >= 0:
            raise ValueError("beta must be non-negative")


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters a vector signal sampled at (possibly irregular) timestamps in seconds."""

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._dx is None or t <= self._t:
            if self._x is None or self._x.shape != x.shape:
                self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return self._x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.config.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.config.min_cutoff + self.config.beta * np.abs(self._dx)
        tau = 1.0 / (2 * math.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


class QuaternionFilter(OneEuroFilter):
    """One-Euro on unit quaternions: keeps the hemisphere, renormalises."""

    def __call__(self, q: np.ndarray, t: float) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if self._x is not None and float(q @ self._x) < 0:
            q = -q
        out = super().__call__(q, t)
        return out / np.linalg.norm(out)
