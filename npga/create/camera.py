"""Stage 3a of ``npga create``: one fixed virtual camera for the whole clip, and the head poses
seen through it.

- **The crop**: a square around the head that holds the head in every training and held-out
  frame (the union of per-frame head boxes: the face landmarks' box widened to take in hair and
  ears). Pixels of the crop outside the video frame are background.
- **Intrinsics**: the video's focal length is not known; it is estimated as that of a camera
  with a ``fov_degrees`` horizontal field of view (60 degrees: typical of webcams and phones'
  front cameras; ``npga create --fov`` overrides it) and its principal point at the frame's
  centre; the crop shifts and scales both.
- **Head poses** (canonical -> camera, metres; the camera is the world): the live sender's
  weighted Procrustes gives the head's rotation and its image scale s (pixels per face unit);
  under weak perspective the head sits at depth f * u / s along the ray through the face, where
  u is ``FACE_UNIT_METRES`` (a typical outer-eye-corner distance: one camera cannot tell a
  small head near from a large one far, so the avatar is built at a typical size). The rotation
  is turned by the ray's direction: Procrustes sees the face as a camera looking along that ray
  would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from npga.cameras import Cameras
from npga.tracking.procrustes import Similarity

DEFAULT_FOV_DEGREES = 60.0
FACE_UNIT_METRES = 0.09  # outer-eye-corner distance of a typical adult face
HEAD_BOX_SCALE = 1.6  # head box side / face landmark box height (hair, ears, some neck)
HEAD_BOX_RAISE = 0.12  # of the face box height: the head's centre is above the face's


@dataclass(frozen=True)
class CropCamera:
    """The square crop [x0, x0 + side) x [y0, y0 + side) of the video frame, shown at
    ``resolution`` x ``resolution`` pixels."""

    x0: float
    y0: float
    side: float
    resolution: int
    focal_frame: float  # the video's focal length, frame pixels
    centre_x_frame: float  # the video's principal point (its centre), frame pixels
    centre_y_frame: float

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return self.resolution / self.side

    @property
    def focal(self) -> float:
        return self.focal_frame * self.scale

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame landmarks [..., 3] (x, y pixels, z pixel-scaled depth) -> crop pixels."""
        out = points.astype(np.float64).copy()
        out[..., 0] = (out[..., 0] - self.x0) * self.scale
        out[..., 1] = (out[..., 1] - self.y0) * self.scale
        out[..., 2] = out[..., 2] * self.scale
        return out

    def intrinsics(self) -> np.ndarray:
        """3x3 K of the crop at its resolution."""
        cx = (self.centre_x_frame - self.x0) * self.scale
        cy = (self.centre_y_frame - self.y0) * self.scale
        return np.array([[self.focal, 0.0, cx], [0.0, self.focal, cy], [0.0, 0.0, 1.0]])

    def cameras(self) -> Cameras:
        """The crop as the one camera of a capture (the camera frame is the world)."""
        k = torch.from_numpy(self.intrinsics()).float()[None]
        return Cameras(torch.eye(4)[None], k, self.resolution, self.resolution)


def head_box(points: np.ndarray) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square head box of face landmarks [L, 3] (pixels)."""
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    height = float(max(hi[1] - lo[1], hi[0] - lo[0]))
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1] - HEAD_BOX_RAISE * height), HEAD_BOX_SCALE * height


def crop_camera(
    faces: np.ndarray,  # [T, L, 3] landmarks of the frames the capture shows, frame pixels
    frame_width: int,
    frame_height: int,
    resolution: int,
    fov_degrees: float = DEFAULT_FOV_DEGREES,
) -> CropCamera:
    """The smallest square holding every frame's head box (see the module doc)."""
    boxes = np.array([head_box(f) for f in faces])  # [T, 3]
    half = boxes[:, 2:3] / 2
    lo = (boxes[:, :2] - half).min(axis=0)
    hi = (boxes[:, :2] + half).max(axis=0)
    side = float((hi - lo).max())
    centre = (lo + hi) / 2
    focal = frame_width / (2 * math.tan(math.radians(fov_degrees) / 2))
    x0, y0 = float(centre[0] - side / 2), float(centre[1] - side / 2)
    return CropCamera(x0, y0, side, resolution, focal, frame_width / 2, frame_height / 2)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] taking unit vector a to unit vector b."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def head_pose_metres(pose: Similarity, camera: CropCamera) -> tuple[np.ndarray, np.ndarray]:
    """Rotation [3, 3] and translation [3] (metres) of canonical metres -> camera, from the
    Procrustes pose (template -> crop pixels) of one frame (see the module doc)."""
    k = camera.intrinsics()
    ray = np.linalg.solve(k, np.array([pose.translation[0], pose.translation[1], 1.0]))
    distance = camera.focal * FACE_UNIT_METRES / pose.scale * float(np.linalg.norm(ray))
    direction = ray / np.linalg.norm(ray)
    rotation = _rotation_between(np.array([0.0, 0.0, 1.0]), direction) @ pose.rotation
    return rotation, distance * direction
