"""Expression error: Face Mesh run again on the rendered avatar, its expression compared with
the driving frame's (the field's "average expression distance", in this project's own space).

For each evaluated frame, ``canonical(image)`` is Face Mesh on the image with the head pose
removed (the sender's own canonicalisation, face units: the outer eye corners are 1 apart). An
expression is a displacement from a neutral, each side from its own:

- the driver's: ``canonical(truth_t) - canonical(truth_n)`` at the avatar's neutral frame n;
- the avatar's: ``canonical(render_t) - canonical(render_n)``, the avatar rendered with frame
  t's (and n's) code and pose;
- the baseline: the avatar driven by its neutral code (zero) at frame t's pose.

The error is the mean landmark distance between the two displacements, in face units, over all
landmarks and over the lips, eyes (with irises) and brows. A dynamic avatar must beat the
neutral-driven one; a pure change of head pose moves neither displacement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from npga.data import CaptureDataset
from npga.eval.evaluate import render_timestep
from npga.model import GaussianAvatar
from npga.tracking.expression import canonicalize
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.template import FaceTemplate
from npga.train.capture_tracking import CaptureTracking
from npga.video import to_uint8


def region_landmarks() -> dict[str, np.ndarray]:
    """Landmark indices of the lips, eyes (with irises) and brows (MediaPipe's own sets)."""
    from mediapipe.python.solutions import face_mesh_connections as sets

    def indices(*edges: Any) -> np.ndarray:
        return np.array(sorted({i for group in edges for edge in group for i in edge}))

    return {
        "mouth": indices(sets.FACEMESH_LIPS),
        "eyes": indices(sets.FACEMESH_LEFT_EYE, sets.FACEMESH_RIGHT_EYE, sets.FACEMESH_IRISES),
        "brows": indices(sets.FACEMESH_LEFT_EYEBROW, sets.FACEMESH_RIGHT_EYEBROW),
    }


def _canonical(
    facemesh: FaceMeshTracker, image: torch.Tensor, template: FaceTemplate
) -> np.ndarray | None:
    """Canonical landmarks [L, 3] of an image [H, W, 3] in [0, 1], or None without a face."""
    face = facemesh.process(to_uint8(image.numpy()))
    return None if face is None else canonicalize(face.points, template)[1]


def _errors(a: np.ndarray, b: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    distance = np.linalg.norm(a - b, axis=1)  # [L] face units
    return {"all": float(distance.mean())} | {
        k: float(distance[v].mean()) for k, v in regions.items()
    }


def expression_errors(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,  # codes and poses of the frames (fitted poses where available)
    timesteps: list[int],
    camera: str,
    template: FaceTemplate,
) -> dict[str, Any]:
    """The avatar's and the neutral-driven baseline's expression error (see the module doc)."""
    regions = region_landmarks()
    neutral_code = tracking.neutral_timestep
    neutral_driven = replace(tracking, codes=np.zeros_like(tracking.codes))
    sums: dict[str, list[dict[str, float]]] = {"avatar": [], "neutral": []}
    with FaceMeshTracker(static_images=True) as facemesh:

        def seen(t: int, drive: CaptureTracking) -> tuple[np.ndarray | None, np.ndarray | None]:
            frame = dataset.frame(t, [camera])
            rendered = render_timestep(avatar, drive, t, frame.cameras)[0]
            return _canonical(facemesh, frame.images[0], template), _canonical(
                facemesh, rendered, template
            )

        truth_n, render_n = seen(neutral_code, tracking)
        if truth_n is None or render_n is None:
            raise ValueError(f"Face Mesh finds no face in camera {camera!r} at the neutral frame")
        missed = 0
        for t in timesteps:
            truth_t, render_t = seen(t, tracking)
            _, baseline_t = seen(t, neutral_driven)
            if truth_t is None or render_t is None or baseline_t is None:
                missed += 1
                continue
            driver = truth_t - truth_n
            sums["avatar"].append(_errors(render_t - render_n, driver, regions))
            sums["neutral"].append(_errors(baseline_t - render_n, driver, regions))
    if not sums["avatar"]:
        raise ValueError("Face Mesh finds no face in any evaluated frame or render")

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(float(np.mean([r[k] for r in rows])), 5) for k in rows[0]}

    avatar_error, neutral_error = mean(sums["avatar"]), mean(sums["neutral"])
    return {
        "expression_error": avatar_error["all"],
        "expression_error_neutral": neutral_error["all"],
        "expression_error_by_region": avatar_error,
        "expression_error_neutral_by_region": neutral_error,
        "expression_frames": len(sums["avatar"]),
        "expression_frames_without_face": missed,
        "expression_units": "face units (outer eye corners 1 apart)",
    }
