"""Expression and pose error: Face Mesh run again on the rendered avatar, its expression and head
rotation compared with the driving frame's (the field's "average expression / pose distance",
AED / APD, in this project's own space).

For an image, ``read_face`` gives its canonical landmarks (Face Mesh with the head pose removed:
the sender's own canonicalisation, face units: the outer eye corners are 1 apart) and its head
rotation in the camera. An expression is a displacement from a neutral, each side from its own:

- the driver's: ``canonical(truth_t) - canonical(truth_n)`` at a neutral reference frame n;
- the avatar's: ``canonical(render_t) - canonical(render_n)``, the avatar rendered with frame
  t's (and n's) code and pose;
- the baseline: the avatar driven by its neutral code (zero) at frame t's pose.

The expression error is the mean landmark distance between the two displacements, in face units,
over all landmarks and over the lips, eyes (with irises) and brows. A dynamic avatar must beat
the neutral-driven one; a pure change of head pose moves neither displacement. The pose error is
the angle between the rotations Face Mesh reads off the render and off the driver, in degrees
(for a driver filmed by another camera: each rotation relative to its side's neutral frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from npga.eval.regions import region_landmarks
from npga.tracking.expression import canonicalize
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.template import FaceTemplate
from npga.video import to_uint8

EXPRESSION_UNITS = "face units (outer eye corners 1 apart)"


@dataclass(frozen=True)
class FaceReading:
    """What Face Mesh reads off one image."""

    canonical: np.ndarray  # [L, 3] landmarks with the head pose removed, face units
    rotation: np.ndarray  # [3, 3] template -> image


def read_face(
    facemesh: FaceMeshTracker, image: torch.Tensor, template: FaceTemplate
) -> FaceReading | None:
    """The reading of an image [H, W, 3] in [0, 1], or None where Face Mesh finds no face."""
    face = facemesh.process(to_uint8(image.detach().cpu().numpy()))
    if face is None:
        return None
    pose, canonical = canonicalize(face.points, template)
    return FaceReading(canonical, pose.rotation)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two rotations [3, 3], in degrees."""
    cosine = (np.trace(a @ b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def unavailable(reason: str) -> dict[str, Any]:
    """The expression keys of a report where they cannot be measured, and why."""
    return {
        "expression_error": None,
        "expression_error_neutral": None,
        "pose_error_deg": None,
        "expression_note": reason,
    }


@dataclass
class ExpressionScore:
    """Running expression and pose errors of the frames of one camera (see the module doc)."""

    truth_neutral: FaceReading
    render_neutral: FaceReading
    # compare rotations relative to each side's neutral frame (a driver filmed by another camera)
    relative_pose: bool = False
    regions: dict[str, np.ndarray] = field(default_factory=region_landmarks)
    _avatar: list[dict[str, float]] = field(default_factory=list)
    _neutral: list[dict[str, float]] = field(default_factory=list)
    _pose: list[float] = field(default_factory=list)
    missed: int = 0  # frames where a driver, render or baseline showed no face

    def distances(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        """Mean landmark distance of two displacements [L, 3], overall and per region."""
        distance = np.linalg.norm(a - b, axis=1)  # [L] face units
        return {"all": float(distance.mean())} | {
            k: float(distance[v].mean()) for k, v in self.regions.items()
        }

    def add(
        self, truth: FaceReading | None, render: FaceReading | None, baseline: FaceReading | None
    ) -> None:
        """One frame: the driver, the avatar driven by its code, the avatar driven by zero."""
        if truth is None or render is None or baseline is None:
            self.missed += 1
            return
        driver = truth.canonical - self.truth_neutral.canonical
        reference = self.render_neutral.canonical
        self._avatar.append(self.distances(render.canonical - reference, driver))
        self._neutral.append(self.distances(baseline.canonical - reference, driver))
        if self.relative_pose:
            rendered = render.rotation @ self.render_neutral.rotation.T
            driven = truth.rotation @ self.truth_neutral.rotation.T
            self._pose.append(rotation_angle_deg(rendered, driven))
        else:
            self._pose.append(rotation_angle_deg(render.rotation, truth.rotation))

    @property
    def frames(self) -> int:
        return len(self._pose)

    def summary(self) -> dict[str, Any]:
        if not self._pose:
            return unavailable("Face Mesh finds no face in any evaluated frame or its render")

        def mean(rows: list[dict[str, float]]) -> dict[str, float]:
            return {k: round(float(np.mean([r[k] for r in rows])), 5) for k in rows[0]}

        avatar, neutral = mean(self._avatar), mean(self._neutral)
        return {
            "expression_error": avatar["all"],
            "expression_error_neutral": neutral["all"],
            "expression_error_by_region": avatar,
            "expression_error_neutral_by_region": neutral,
            "pose_error_deg": round(float(np.mean(self._pose)), 3),
            "expression_frames": self.frames,
            "expression_frames_without_face": self.missed,
            "expression_units": EXPRESSION_UNITS,
        }
