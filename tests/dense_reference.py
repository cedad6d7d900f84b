"""Brute-force reference rasteriser: every Gaussian against every pixel, plain torch autograd."""

from __future__ import annotations

import torch
from torch import Tensor

from npga.render.projection import ScreenGaussians

ALPHA_THRESHOLD = 1.0 / 255.0


def dense_composite(
    screen: ScreenGaussians, background: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor]:
    """rgb [P, H, W, 3] and alpha [P, H, W, 1]; background [3]."""
    dtype = screen.means2d.dtype
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype) + 0.5,
        torch.arange(width, dtype=dtype) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack((xs.flatten(), ys.flatten()), dim=-1)  # [HW, 2]
    images, alphas = [], []
    for p in range(screen.means2d.shape[0]):
        order = torch.argsort(screen.depths[p], stable=True)
        culled = (screen.radii[p] == 0).all(dim=-1)
        ids = order[~culled[order]]
        delta = screen.means2d[p, ids][None] - pixels[:, None]  # [HW, K, 2]
        a, b, c = screen.conics[p, ids].unbind(-1)
        dx, dy = delta[..., 0], delta[..., 1]
        sigma = 0.5 * (a * dx**2 + c * dy**2) + b * dx * dy
        alpha = (screen.opacities[p, ids] * torch.exp(-sigma)).clamp_max(0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, 0.0)
        with torch.no_grad():
            keep = torch.cumprod(1 - alpha, dim=1) > 1e-4
        alpha = alpha * keep
        survive = torch.cumprod(1 - alpha, dim=1)
        in_front = torch.cat((torch.ones_like(survive[:, :1]), survive[:, :-1]), dim=1)
        rgb = (alpha * in_front) @ screen.colors[p, ids] + survive[:, -1:] * background
        images.append(rgb.reshape(height, width, 3))
        alphas.append((1 - survive[:, -1]).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)
