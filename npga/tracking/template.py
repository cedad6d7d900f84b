"""The neutral face template: the canonical frame that head pose is measured against.

Built by the project from a real photograph that scikit-image ships (``skimage.data.astronaut``)
by ``python -m npga.tracking.template`` and stored in ``data/neutral_template.json``. Canonical
frame: origin at the rigid-landmark centroid, x from the subject's right eye to their left
(image right), y down (forehead to chin), z away from the camera; one *face unit* is the
distance between the outer eye corners (~9 cm on an adult).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from npga.tracking import topology

TEMPLATE_RESOURCE = "neutral_template.json"


@dataclass(frozen=True)
class FaceTemplate:
    points: np.ndarray  # [L, 3] face units, canonical frame
    weights: np.ndarray  # [L] Procrustes weights (1 on rigid landmarks)

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        if self.points.shape != (n, 3) or self.weights.shape != (n,):
            raise ValueError(
                f"template needs points [L, 3] and weights [L], got {self.points.shape}"
            )
        if not (np.isfinite(self.points).all() and np.isfinite(self.weights).all()):
            raise ValueError("template contains NaN or Inf")
        if (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError("template weights must be non-negative and not all zero")

    def to_json(self) -> dict[str, Any]:
        return {
            "points": np.round(self.points, 6).tolist(),
            "weights": np.round(self.weights, 6).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceTemplate:
        try:
            points = np.asarray(data["points"], dtype=np.float64)
            weights = np.asarray(data["weights"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"template JSON needs numeric 'points' and 'weights' ({error})"
            ) from None
        return cls(points, weights)


def rigid_weights(num_landmarks: int = topology.NUM_LANDMARKS) -> np.ndarray:
    weights = np.full(num_landmarks, topology.NON_RIGID_WEIGHT)
    weights[list(topology.RIGID)] = 1.0
    return weights


def build_template(points: np.ndarray) -> FaceTemplate:
    """Canonicalise one face's landmarks [478, 3] (pixels) into a template."""
    weights = rigid_weights(points.shape[0])
    centroid = weights @ points / weights.sum()
    right_eye = points[topology.RIGHT_EYE_OUTER]
    left_eye = points[topology.LEFT_EYE_OUTER]
    x_axis = left_eye - right_eye
    eye_distance = float(np.linalg.norm(x_axis))
    x_axis /= eye_distance
    down = points[152] - points[10]  # chin minus forehead
    y_axis = down - (down @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    rotation = np.stack((x_axis, y_axis, z_axis))  # rows: canonical axes in pixel space
    canonical = (points - centroid) @ rotation.T / eye_distance
    return FaceTemplate(canonical, weights)


def load_default_template() -> FaceTemplate:
    text = resources.files("npga.tracking.data").joinpath(TEMPLATE_RESOURCE).read_text()
    return FaceTemplate.from_json(json.loads(text))


def _build_default() -> None:
    from skimage import data

    from npga.tracking.facemesh import FaceMeshTracker

    with FaceMeshTracker(static_images=True) as tracker:
        face = tracker.process(data.astronaut())
    if face is None:
        raise SystemExit("Face Mesh found no face in skimage.data.astronaut()")
    out = Path(__file__).parent / "data" / TEMPLATE_RESOURCE
    out.write_text(json.dumps(build_template(face.points).to_json()))
    print(f"wrote {out}")


if __name__ == "__main__":
    _build_default()
