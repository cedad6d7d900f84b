"""Face regions in a camera image: the mouth and the eyes, from the avatar's own landmarks (its
template moved by the frame's code and head pose) projected into the camera.

A region is the convex hull of its landmarks grown by ``REGION_MARGIN`` around its centre, so
that lips, teeth and eyelids with a little skin around them are inside.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.geometry import quat_to_rotmat
from npga.model import GaussianAvatar, HeadPose

REGION_MARGIN = 0.3  # each hull grown by this share around its centre


def _indices(*edge_sets: Any) -> np.ndarray:
    """The landmark indices of MediaPipe edge sets (pairs of landmark indices)."""
    return np.array(sorted({i for edges in edge_sets for edge in edges for i in edge}))


def region_landmarks() -> dict[str, np.ndarray]:
    """Landmark indices of the lips, eyes (with irises) and brows (MediaPipe's own sets)."""
    from mediapipe.python.solutions import face_mesh_connections as sets

    return {
        "mouth": _indices(sets.FACEMESH_LIPS),
        "eyes": _indices(sets.FACEMESH_LEFT_EYE, sets.FACEMESH_RIGHT_EYE, sets.FACEMESH_IRISES),
        "brows": _indices(sets.FACEMESH_LEFT_EYEBROW, sets.FACEMESH_RIGHT_EYEBROW),
    }


def _hull_parts() -> dict[str, list[np.ndarray]]:
    """The landmark sets whose hulls make each image region (one hull per eye)."""
    from mediapipe.python.solutions import face_mesh_connections as sets

    return {
        "mouth": [_indices(sets.FACEMESH_LIPS)],
        "eyes": [
            _indices(sets.FACEMESH_LEFT_EYE, sets.FACEMESH_LEFT_IRIS),
            _indices(sets.FACEMESH_RIGHT_EYE, sets.FACEMESH_RIGHT_IRIS),
        ],
    }


@torch.no_grad()
def project_landmarks(
    avatar: GaussianAvatar,
    codes: Tensor,  # [1, E]
    pose: HeadPose,  # one pose, canonical -> world
    cameras: Cameras,  # [C]
) -> np.ndarray:
    """The avatar's landmarks at this code and pose in each camera: [C, L, 2] pixels (and
    behind-camera points as they fall)."""
    prior = avatar.prior
    canonical = prior.template + prior.landmark_displacements(codes.to(prior.template))[0]
    rotation = quat_to_rotmat(pose.rotation_wxyz.to(canonical))[0]  # [3, 3]
    world = canonical @ rotation.T + pose.translation.to(canonical)[0]  # [L, 3]
    extrinsics = cameras.world_to_cam.to(canonical)  # [C, 4, 4]
    in_camera = world @ extrinsics[:, :3, :3].transpose(1, 2) + extrinsics[:, None, :3, 3]
    pixels = in_camera @ cameras.intrinsics.to(canonical).transpose(1, 2)  # [C, L, 3]
    return (pixels[..., :2] / pixels[..., 2:].clamp_min(1e-6)).cpu().numpy()


def region_masks(points: np.ndarray, height: int, width: int) -> dict[str, Tensor]:
    """The image regions of landmarks ``points`` [L, 2] (pixels): name -> [H, W, 1] float mask."""
    masks: dict[str, Tensor] = {}
    for name, parts in _hull_parts().items():
        canvas = np.zeros((height, width), np.uint8)
        for part in parts:
            hull = cv2.convexHull(points[part].astype(np.float32))[:, 0]  # [K, 2]
            centre = hull.mean(axis=0)
            grown = centre + (hull - centre) * (1.0 + REGION_MARGIN)
            cv2.fillConvexPoly(canvas, np.round(grown).astype(np.int32), (1,))
        masks[name] = torch.from_numpy(canvas.astype(np.float32))[..., None]
    return masks
