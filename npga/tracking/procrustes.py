"""Weighted similarity Procrustes (Umeyama): rotation, translation and scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x_target ≈ scale * rotation @ x_source + translation."""

    rotation: np.ndarray  # [3, 3], det +1
    translation: np.ndarray  # [3]
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points [L, 3] -> [L, 3]."""
        return self.scale * points @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        """The source-space points [L, 3] that map to ``points`` [L, 3]."""
        return (points - self.translation) @ self.rotation / self.scale


def weighted_procrustes(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Similarity:
    """The similarity that best maps source [L, 3] onto target [L, 3] under weights [L] >= 0."""
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(f"need two [L, 3] arrays, got {source.shape} and {target.shape}")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ source
    mu_t = w @ target
    s = source - mu_s
    t = target - mu_t
    covariance = (t * w[:, None]).T @ s  # [3, 3]
    u, singular, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    correction = np.diag([1.0, 1.0, d])
    rotation = u @ correction @ vt
    variance = float(w @ (s * s).sum(axis=1))
    scale = float((singular * np.diag(correction)).sum() / variance)
    translation = mu_t - scale * rotation @ mu_s
    return Similarity(rotation, translation, scale)


def rotation_to_quat_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion [4] (w >= 0) of a rotation matrix [3, 3]."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    quat = np.asarray(q)
    quat = quat / np.linalg.norm(quat)
    return quat if quat[0] >= 0 else -quat


def roll_degrees(rotation: np.ndarray) -> float:
    """In-plane rotation (about the camera's z axis) of a rotation matrix, in degrees."""
    return float(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))
