"""``npga bench track``: tracker + head pose + expression encoding on a synthesised face video."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from npga.tracking.expression import ExpressionBasis
from npga.tracking.pipeline import ExpressionTracker, TrackerConfig
from npga.tracking.template import FaceTemplate, load_default_template

WIDTH, HEIGHT = 640, 480


def synth_face_video(frames: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 RGB frames of a packaged portrait (skimage's astronaut) that sways, turns in the
    image plane, zooms and drifts, as a webcam user would."""
    import cv2
    from skimage import data

    portrait = cv2.resize(data.astronaut(), (420, 420), interpolation=cv2.INTER_AREA)
    canvas = np.full((HEIGHT, WIDTH, 3), 235, dtype=np.uint8)
    canvas[30:450, 110:530] = portrait
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, 3)
    video = []
    for i in range(frames):
        t = i / 30.0
        angle = 12 * math.sin(2 * math.pi * 0.3 * t + phase[0])
        scale = 1.0 + 0.08 * math.sin(2 * math.pi * 0.2 * t + phase[1])
        matrix = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), angle, scale)
        matrix[0, 2] += 25 * math.sin(2 * math.pi * 0.25 * t + phase[2])
        video.append(cv2.warpAffine(canvas, matrix, (WIDTH, HEIGHT), borderValue=(235, 235, 235)))
    return video


def random_basis(template: FaceTemplate, dim: int, seed: int = 0) -> ExpressionBasis:
    """An orthonormal basis of the right shape (encoding costs the same as a fitted one)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(template.points.size, dim)))
    return ExpressionBasis(template, q.T, np.full(dim, 0.01), np.full(dim, 1.0 / dim))


def bench_track(frames: int = 300, dim: int = 48) -> dict[str, Any]:
    video = synth_face_video(frames)
    template = load_default_template()
    tracker = ExpressionTracker(template, random_basis(template, dim), TrackerConfig())
    observe_s, update_s, detected = [], [], 0
    try:
        for i, rgb in enumerate(video):
            start = time.perf_counter()
            observation = tracker.observe(rgb, i / 30.0)  # Face Mesh, lock, Procrustes, gaze
            middle = time.perf_counter()
            state = tracker.update(observation, i / 30.0)  # neutral, pose, code, filters
            update_s.append(time.perf_counter() - middle)
            observe_s.append(middle - start)
            detected += state.face_present
    finally:
        tracker.close()
    skip = 10  # the first frames include model start-up
    ms = (np.asarray(observe_s[skip:]) + np.asarray(update_s[skip:])) * 1e3
    return {
        "benchmark": "track",
        "frames": frames,
        "resolution": f"{WIDTH}x{HEIGHT}",
        "code_dim": dim,
        "ms_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_p95": round(float(np.percentile(ms, 95)), 3),
        "fps": round(float(1e3 / ms.mean()), 1),
        "observe_ms_p50": round(float(np.median(observe_s[skip:])) * 1e3, 3),
        "update_ms_p50": round(float(np.median(update_s[skip:])) * 1e3, 3),
        "detection_rate": round(detected / frames, 4),
    }
