from __future__ import annotations

import math

import torch

from npga.geometry import axis_angle_to_quat, quat_multiply, quat_to_rotmat


def test_quat_multiply_composes_rotations_and_follows_hamilton_units() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b)
    )
    i, j, k = torch.eye(4, dtype=torch.float64)[1:]
    torch.testing.assert_close(quat_multiply(i, j), k)  # i j = k
    torch.testing.assert_close(quat_multiply(j, i), -k)  # j i = -k
    # the norm is multiplicative; broadcasting one quaternion against many
    torch.testing.assert_close(
        quat_multiply(a[:1], b).norm(dim=-1), a[:1].norm(dim=-1) * b.norm(dim=-1)
    )


def test_axis_angle_rotates_about_the_axis() -> None:
    q = axis_angle_to_quat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    rotated = quat_to_rotmat(q) @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(rotated, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    small = axis_angle_to_quat(torch.zeros(3))
    torch.testing.assert_close(small, torch.tensor([1.0, 0.0, 0.0, 0.0]))
