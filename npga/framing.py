"""Framing: a frontal virtual camera on an avatar's head, and the per-session rule that keeps the
head in it whatever the sender's translation does.

An avatar's canonical frame is the face template's (x right, y down, the face looking along
-z). The frontal camera looks straight at the face from -z, with the framed span (from above the
hair to just below the chin, so that a one-video avatar's cut neck end stays below the image)
filling the image height.

A sender's translation is the head's offset from where it was when the neutral was calibrated
(metres). Three framings, chosen per session:

- ``auto`` (default): the camera follows the head smoothly, as video calls auto-frame a speaker:
  the head's centre is smoothed exponentially (``FOLLOW_SECONDS``), the head is shown at its
  offset from that smoothed centre, and the offset is bounded so that the head never leaves the
  image (``MAX_SHIFT`` of the span sideways and up or down, ``MAX_DEPTH`` of the distance in
  depth: the head size stays within that share of its size); last, the turned head's outline
  (points of its Gaussians) is kept inside the image with ``EDGE_MARGIN`` above and beside it,
  so that a nod or a turn cannot push the hair out either. A jump beyond ``CUT_METRES`` (a
  shot cut, a face re-acquired elsewhere) cuts to the new place instead of panning. Rotations
  and expressions are shown as they are.
- ``fixed``: the head held at its rest position; only rotations and expressions.
- ``free``: the translation as sent (the head can leave the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from npga.cameras import Cameras, orbit_cameras
from npga.geometry import quat_to_rotmat
from npga.model import GaussianAvatar
from npga.tracking import topology

FRAMINGS = ("auto", "fixed", "free")
FOLLOW_SECONDS = 0.6  # time constant of the camera following the head
MAX_SHIFT = 0.04  # the head's largest shown offset from the frame centre, share of the span
MAX_DEPTH = 0.08  # ... toward or away from the camera, share of the camera distance
CUT_METRES = 0.5  # a jump this large re-frames at once
TOP_MARGIN = 0.2  # above the hair, share of the hair-to-chin height
BELOW_CHIN_FACE_UNITS = 0.2  # where the image ends below the chin (npga create cuts at 0.25)
VERTICAL_FOV_DEG = 18.0  # the frontal camera's field of view: a portrait lens, little distortion
OPACITY_FLOOR = 0.3  # Gaussians at least this opaque count for the head's extent
EXTENT_QUANTILE = 0.005  # robust extent: ignore the outermost 0.5 % of them
OUTLINE_POINTS = 2000  # head points a framer keeps inside the image, turned as the head turns
EDGE_MARGIN = 0.04  # share of the image kept free above and beside the head


@dataclass(frozen=True)
class HeadFrame:
    """Where an avatar's head is in its canonical frame, and how much of it an image shows."""

    centre: np.ndarray  # [3] metres: the middle of the framed span, at the face's depth
    span: float  # metres: the framed height
    outline: np.ndarray  # [K, 3] metres: points of the head above the chin (its silhouette)

    @classmethod
    def of_avatar(cls, avatar: GaussianAvatar) -> HeadFrame:
        """From the avatar's Gaussians (the top of the hair) and landmarks (chin, eye corners)."""
        g = avatar.gaussians
        with torch.no_grad():
            opaque = g.means[torch.sigmoid(g.opacity_logits) > OPACITY_FLOOR]
            means = opaque if opaque.shape[0] >= 16 else g.means
            top = float(torch.quantile(means[:, 1].float().cpu(), EXTENT_QUANTILE))
            landmarks = avatar.prior.template.detach().cpu().double().numpy()  # [L, 3]
        face_unit = topology.eye_corner_distance(landmarks)
        chin = float(landmarks[topology.CHIN, 1])
        height = chin - top
        if not (height > 0 and face_unit > 0):
            raise ValueError("the avatar's hair top is not above its chin; cannot frame it")
        upper = top - TOP_MARGIN * height
        lower = chin + BELOW_CHIN_FACE_UNITS * face_unit
        centre = np.array(
            [landmarks[:, 0].mean(), (upper + lower) / 2, landmarks[:, 2].mean()], np.float64
        )
        head = means.detach().cpu().double().numpy()
        head = head[head[:, 1] <= chin]
        step = max(1, len(head) // OUTLINE_POINTS)
        return cls(centre, lower - upper, head[::step])

    def distance(self) -> float:
        """The frontal camera's distance from the head centre, metres."""
        return self.span / 2 / math.tan(math.radians(VERTICAL_FOV_DEG) / 2)


def frontal_camera(
    head: HeadFrame, width: int, height: int | None = None, yaw_degrees: float = 0.0
) -> Cameras:
    """One camera straight in front of the face (canonical -z, looking along +z; ``yaw_degrees``
    turns it about the head), the framed span filling the image height."""
    height = height or width
    return orbit_cameras(
        [yaw_degrees],
        distance=head.distance(),
        focal_px=height / 2 / math.tan(math.radians(VERTICAL_FOV_DEG) / 2),
        width=width,
        height=height,
        target=(float(head.centre[0]), float(head.centre[1]), float(head.centre[2])),
    )


@dataclass
class Framer:
    """One session's framing (see the module doc); feed it every frame in time order."""

    head: HeadFrame
    mode: str = "auto"
    _smoothed: np.ndarray | None = field(default=None, repr=False)  # [3] head centre, world
    _last_time: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {self.mode!r}")

    def reset(self) -> None:
        """Forget the followed position (a new sender, a new avatar)."""
        self._smoothed, self._last_time = None, None

    def translation(
        self,
        rotation_wxyz: np.ndarray,  # [4] the head's rotation, canonical -> world
        translation: np.ndarray,  # [3] metres, as the sender sent it
        timestamp: float,  # seconds
    ) -> np.ndarray:
        """The translation [3] (metres) to render the head with, seen by the frontal camera."""
        if self.mode == "free":
            return np.asarray(translation, np.float32)
        rotation = quat_to_rotmat(torch.as_tensor(rotation_wxyz, dtype=torch.float64)[None])
        turned = rotation[0].numpy() @ self.head.centre - self.head.centre  # how turning moves it
        if self.mode == "fixed":
            return (-turned).astype(np.float32)
        centre = self.head.centre + turned + translation  # where the head's centre really is
        if self._smoothed is None or np.linalg.norm(centre - self._smoothed) > CUT_METRES:
            self._smoothed = centre.copy()
        elif self._last_time is not None:
            elapsed = max(timestamp - self._last_time, 0.0)
            share = 1.0 - math.exp(-elapsed / FOLLOW_SECONDS)
            self._smoothed = self._smoothed + share * (centre - self._smoothed)
        self._last_time = timestamp
        limit_xy = MAX_SHIFT * self.head.span
        offset = np.clip(
            centre - self._smoothed,
            [-limit_xy, -limit_xy, -MAX_DEPTH * self.head.distance()],
            [limit_xy, limit_xy, MAX_DEPTH * self.head.distance()],
        )
        return self._inside(rotation[0].numpy(), offset - turned).astype(np.float32)

    def _inside(self, rotation: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """``shown`` [3], moved as little as needed to keep the turned head's outline inside
        the image with ``EDGE_MARGIN`` above and beside it (the frame's extent at the head's
        depth; the narrow field of view makes that exact to a few per cent)."""
        points = self.head.outline @ rotation.T + shown  # [K, 3]
        half = self.head.span / 2 * (1 - 2 * EDGE_MARGIN)
        low = self.head.centre[:2] - half
        high = self.head.centre[:2] + half
        moved = shown.copy()
        lowest, highest = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        for axis in (0, 1):
            if lowest[axis] < low[axis]:
                moved[axis] += low[axis] - lowest[axis]
            elif axis == 0 and highest[axis] > high[axis]:  # below is the neck: it may leave
                moved[axis] -= highest[axis] - high[axis]
        return moved
