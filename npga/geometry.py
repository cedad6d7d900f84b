"""Quaternion and rigid-transform helpers. Quaternions are ``wxyz`` everywhere."""

from __future__ import annotations

import torch
from torch import Tensor


def quat_normalize(quats_wxyz: Tensor) -> Tensor:
    """Unit quaternions. ``quats_wxyz``: [..., 4]."""
    return quats_wxyz / quats_wxyz.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def quat_multiply(a_wxyz: Tensor, b_wxyz: Tensor) -> Tensor:
    """Hamilton product ``a ⊗ b`` (apply ``b`` first, then ``a``). Both [..., 4], broadcast."""
    aw, ax, ay, az = a_wxyz.unbind(-1)
    bw, bx, by, bz = b_wxyz.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_to_rotmat(quats_wxyz: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from (not necessarily unit) quaternions [..., 4]."""
    w, x, y, z = quat_normalize(quats_wxyz).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quats_wxyz.shape[:-1], 3, 3)


def axis_angle_to_quat(axis_angle: Tensor) -> Tensor:
    """Unit quaternions [..., 4] from rotation vectors [..., 3] (angle = norm, radians)."""
    angle = axis_angle.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(half)/angle -> 0.5 as angle -> 0
    scale = torch.where(angle > 1e-8, torch.sin(half) / angle.clamp_min(1e-8), 0.5 - angle**2 / 48)
    return torch.cat((torch.cos(half), axis_angle * scale), dim=-1)


def look_at_world_to_cam(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV world-to-camera matrix [4, 4] for a camera at ``eye`` [3] looking at ``target`` [3].

    ``up`` [3] is the world direction that should point *up* in the image (OpenCV's -y).
    """
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack((right, down, forward))  # rows: camera axes in world coordinates
    world_to_cam = torch.eye(4, dtype=eye.dtype)
    world_to_cam[:3, :3] = rotation
    world_to_cam[:3, 3] = -rotation @ eye
    return world_to_cam
