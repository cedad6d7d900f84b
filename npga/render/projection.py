"""EWA projection of 3D Gaussians to screen-space conics, in differentiable torch.

Shared by the CPU backends (fast kernels and the naive tile baseline); mirrors gsplat's
``fully_fused_projection`` (pinhole, classic mode) so both paths cull and blur identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.geometry import quat_to_rotmat
from npga.render.types import PosedGaussians, RenderSettings

ALPHA_THRESHOLD = 1.0 / 255.0
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
MAX_EXTEND_SIGMA = 3.33


@dataclass(frozen=True)
class ScreenGaussians:
    """Gaussians of P = B*C image planes, in pixels."""

    means2d: Tensor  # [P, N, 2]
    conics: Tensor  # [P, N, 3] upper triangle (a, b, c) of the inverse 2D covariance
    depths: Tensor  # [P, N] camera-space z
    radii: Tensor  # [P, N, 2] int32 half-extent of the bounding box in x and y, 0 = culled
    opacities: Tensor  # [P, N]
    colors: Tensor  # [P, N, 3] view-dependent RGB


def covariances_3d(quats_wxyz: Tensor, scales: Tensor) -> Tensor:
    """World covariances [..., 3, 3] from quaternions [..., 4] and scales [..., 3]."""
    m = quat_to_rotmat(quats_wxyz) * scales.unsqueeze(-2)  # R @ diag(s)
    return m @ m.transpose(-1, -2)


def evaluate_sh(sh_coeffs: Tensor, directions: Tensor) -> Tensor:
    """RGB [..., 3] from SH coefficients [..., K, 3] (K = 1 or 4) and unit directions [..., 3]."""
    rgb = SH_C0 * sh_coeffs[..., 0, :]
    if sh_coeffs.shape[-2] == 4:
        x, y, z = directions[..., 0:1], directions[..., 1:2], directions[..., 2:3]
        rgb = rgb + SH_C1 * (
            -y * sh_coeffs[..., 1, :] + z * sh_coeffs[..., 2, :] - x * sh_coeffs[..., 3, :]
        )
    return (rgb + 0.5).clamp_min(0.0)


def project(
    gaussians: PosedGaussians, cameras: Cameras, settings: RenderSettings
) -> ScreenGaussians:
    """Project B Gaussian sets into C cameras; planes are ordered b-major (p = b * C + c)."""
    b, n = gaussians.batch_size, gaussians.num_gaussians
    c = cameras.num_cameras
    rotation = cameras.world_to_cam[:, :3, :3]  # [C, 3, 3]
    translation = cameras.world_to_cam[:, :3, 3]  # [C, 3]
    k = cameras.intrinsics
    fx, fy = k[:, 0, 0, None], k[:, 1, 1, None]  # [C, 1]
    cx, cy = k[:, 0, 2, None], k[:, 1, 2, None]

    means_cam = (
        torch.einsum("cij,bnj->bcni", rotation, gaussians.means) + translation[None, :, None]
    )
    cov_world = covariances_3d(gaussians.quats_wxyz, gaussians.scales)  # [B, N, 3, 3]
    rot = rotation[None, :, None]  # [1, C, 1, 3, 3]
    cov_cam = rot @ cov_world[:, None] @ rot.transpose(-1, -2)  # [B, C, N, 3, 3]

    x, y, z = means_cam.unbind(-1)  # [B, C, N]
    z_safe = torch.where(z > settings.near_plane, z, torch.ones_like(z))
    # Clamp the Jacobian's x/z, y/z just outside the field of view, as gsplat does.
    margin_x, margin_y = 0.3 * 0.5 * cameras.width / fx, 0.3 * 0.5 * cameras.height / fy
    lim_x_pos = (cameras.width - cx) / fx + margin_x
    lim_x_neg = cx / fx + margin_x
    lim_y_pos = (cameras.height - cy) / fy + margin_y
    lim_y_neg = cy / fy + margin_y
    tx = z_safe * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x / z_safe))
    ty = z_safe * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y / z_safe))
    zeros = torch.zeros_like(z)
    fx_b, fy_b = fx.expand(b, c, n), fy.expand(b, c, n)
    jacobian = torch.stack(
        (
            torch.stack((fx_b / z_safe, zeros, -fx_b * tx / z_safe**2), dim=-1),
            torch.stack((zeros, fy_b / z_safe, -fy_b * ty / z_safe**2), dim=-1),
        ),
        dim=-2,
    )  # [B, C, N, 2, 3]
    cov2d = jacobian @ cov_cam @ jacobian.transpose(-1, -2)  # [B, C, N, 2, 2]
    cov_a = cov2d[..., 0, 0] + settings.eps2d
    cov_b = cov2d[..., 0, 1]
    cov_c = cov2d[..., 1, 1] + settings.eps2d
    det = cov_a * cov_c - cov_b * cov_b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack((cov_c / det_safe, -cov_b / det_safe, cov_a / det_safe), dim=-1)
    means2d = torch.stack((fx * x / z_safe + cx, fy * y / z_safe + cy), dim=-1)

    opacities = gaussians.opacities[:, None].expand(b, c, n)
    with torch.no_grad():
        extend = torch.sqrt(
            2.0 * torch.log((opacities / ALPHA_THRESHOLD).clamp_min(1.0))
        ).clamp_max(MAX_EXTEND_SIGMA)
        radius_x = torch.ceil(extend * torch.sqrt(cov_a.clamp_min(0)))
        radius_y = torch.ceil(extend * torch.sqrt(cov_c.clamp_min(0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        finite = torch.isfinite(means2d).all(dim=-1) & torch.isfinite(cov_a + cov_c)
        visible = (
            finite
            & (z > settings.near_plane)
            & (det > 0)
            & (opacities >= ALPHA_THRESHOLD)
            & (mx + radius_x > 0)
            & (mx - radius_x < cameras.width)
            & (my + radius_y > 0)
            & (my - radius_y < cameras.height)
        )
        radii = torch.stack((radius_x, radius_y), dim=-1)
        radii = torch.where(visible[..., None], radii, 0).to(torch.int32)

    centers = cameras.centers()  # [C, 3]
    directions = gaussians.means[:, None] - centers[None, :, None]  # [B, C, N, 3]
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colors = evaluate_sh(gaussians.sh_coeffs[:, None], directions).expand(b, c, n, 3)

    p = b * c
    return ScreenGaussians(
        means2d=means2d.reshape(p, n, 2),
        conics=conics.reshape(p, n, 3),
        depths=z.reshape(p, n),
        radii=radii.reshape(p, n, 2),
        opacities=opacities.reshape(p, n),
        colors=colors.reshape(p, n, 3),
    )


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """Number of tiles along x and y."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
