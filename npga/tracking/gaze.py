"""Eye gaze from the refined iris landmarks, in the canonical (pose-free) frame."""

from __future__ import annotations

import numpy as np

from npga.tracking import topology as t

# sin(angle) = iris offset / eyeball radius, and the eyeball radius is ~0.8 of half the eye's
# corner-to-corner width (12 mm vs 15 mm on an adult).
EYE_HALF_WIDTH_PER_RADIUS = 1.25


def _eye_angles(
    canonical: np.ndarray, outer: int, inner: int, top: int, bottom: int, iris: int
) -> tuple[float, float]:
    half_width = 0.5 * np.linalg.norm(canonical[outer] - canonical[inner])
    center_x = 0.5 * (canonical[outer, 0] + canonical[inner, 0])
    center_y = 0.5 * (canonical[top, 1] + canonical[bottom, 1])
    dx = (canonical[iris, 0] - center_x) / half_width * EYE_HALF_WIDTH_PER_RADIUS
    dy = (canonical[iris, 1] - center_y) / half_width * EYE_HALF_WIDTH_PER_RADIUS
    yaw = float(np.arcsin(np.clip(dx, -1.0, 1.0)))  # + = towards image right
    pitch = float(np.arcsin(np.clip(-dy, -1.0, 1.0)))  # + = up
    return yaw, pitch


def gaze_angles(canonical: np.ndarray) -> np.ndarray:
    """Radians [right yaw, right pitch, left yaw, left pitch] from canonical landmarks [478, 3]."""
    right = _eye_angles(
        canonical, t.RIGHT_EYE_OUTER, t.RIGHT_EYE_INNER, t.RIGHT_EYE_TOP, t.RIGHT_EYE_BOTTOM,
        t.RIGHT_IRIS_CENTER,
    )  # fmt: skip
    left = _eye_angles(
        canonical, t.LEFT_EYE_OUTER, t.LEFT_EYE_INNER, t.LEFT_EYE_TOP, t.LEFT_EYE_BOTTOM,
        t.LEFT_IRIS_CENTER,
    )  # fmt: skip
    return np.array([*right, *left])
