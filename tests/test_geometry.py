from __future__ import annotations

import math

import torch

from npga.geometry import axis_angle_to_quat, quat_multiply, quat_to_rotmat


def _naive_hamilton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def test_quat_multiply_is_the_hamilton_product_and_composes_rotations() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(quat_multiply(a, b), _naive_hamilton(a, b))
    torch.testing.assert_close(
        quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b)
    )
    # broadcasting: one quaternion against many
    torch.testing.assert_close(quat_multiply(a[:1], b), _naive_hamilton(a[:1].expand(5, 4), b))


def test_axis_angle_rotates_about_the_axis() -> None:
    q = axis_angle_to_quat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    rotated = quat_to_rotmat(q) @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(rotated, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    small = axis_angle_to_quat(torch.zeros(3))
    torch.testing.assert_close(small, torch.tensor([1.0, 0.0, 0.0, 0.0]))
