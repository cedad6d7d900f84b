"""The naive tile rasteriser in plain torch: the baseline the fast CPU path is measured against.

Straightforward and differentiable through autograd: a Python loop over 16x16 tiles, each
compositing its depth-sorted Gaussians in chunks of 64 and stopping when every pixel is opaque.
Same compositing rules as the numba kernels and gsplat.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.render.cpu_kernels import ALPHA_THRESHOLD, MAX_ALPHA, MIN_TRANSMITTANCE
from npga.render.projection import ScreenGaussians, project, tile_grid
from npga.render.types import PosedGaussians, RenderResult, RenderSettings

CHUNK = 64


def _composite_tile(
    screen: ScreenGaussians,
    plane: int,
    ids: Tensor,  # [K] Gaussians of this tile, front to back
    pixels: Tensor,  # [Q, 2] pixel centres
    background: Tensor,  # [3]
) -> tuple[Tensor, Tensor]:
    """rgb [Q, 3] and transmittance [Q] of Q pixels."""
    q = pixels.shape[0]
    dtype = screen.means2d.dtype
    rgb = torch.zeros(q, 3, dtype=dtype)
    trans = torch.ones(q, dtype=dtype)
    done = torch.zeros(q, dtype=torch.bool)
    for chunk in ids.split(CHUNK) if ids.numel() else ():
        delta = screen.means2d[plane, chunk][None] - pixels[:, None]  # [Q, K, 2]
        ca, cb, cc = screen.conics[plane, chunk].unbind(-1)  # [K]
        dx, dy = delta[..., 0], delta[..., 1]
        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy  # [Q, K]
        alpha = (screen.opacities[plane, chunk] * torch.exp(-sigma)).clamp_max(MAX_ALPHA)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, 0.0)
        with torch.no_grad():
            trans_after = trans[:, None] * torch.cumprod(1.0 - alpha, dim=1)
            keep = (trans_after > MIN_TRANSMITTANCE) & ~done[:, None]
            done = done | ~keep[:, -1]
        alpha = alpha * keep
        survive = torch.cumprod(1.0 - alpha, dim=1)
        in_front = torch.cat((torch.ones(q, 1, dtype=dtype), survive[:, :-1]), dim=1)
        weights = alpha * in_front * trans[:, None]  # [Q, K]
        rgb = rgb + weights @ screen.colors[plane, chunk]
        trans = trans * survive[:, -1]
        if bool(done.all()):
            break
    return rgb + trans[:, None] * background, trans


def render_naive(
    gaussians: PosedGaussians,
    cameras: Cameras,
    background: Tensor,  # [3]
    settings: RenderSettings,
) -> RenderResult:
    b, c, n = gaussians.batch_size, cameras.num_cameras, gaussians.num_gaussians
    w, h, ts = cameras.width, cameras.height, settings.tile_size
    screen = project(gaussians, cameras, settings)
    means2d = screen.means2d.reshape(b, c, n, 2)  # returned, and what the tiles consume
    screen = replace(screen, means2d=means2d.reshape(b * c, n, 2))
    tiles_x, tiles_y = tile_grid(w, h, ts)
    dtype = screen.means2d.dtype
    planes_rgb, planes_alpha = [], []
    for plane in range(b * c):
        with torch.no_grad():
            mx, my = screen.means2d[plane].unbind(-1)
            rx, ry = screen.radii[plane].unbind(-1)
            visible = (rx > 0) | (ry > 0)
            x0 = torch.floor((mx - rx) / ts).clamp(0, tiles_x)
            x1 = torch.ceil((mx + rx) / ts).clamp(0, tiles_x)
            y0 = torch.floor((my - ry) / ts).clamp(0, tiles_y)
            y1 = torch.ceil((my + ry) / ts).clamp(0, tiles_y)
            order = torch.argsort(screen.depths[plane], stable=True)
        rgb = torch.zeros(h, w, 3, dtype=dtype)
        trans = torch.ones(h, w, dtype=dtype)
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                hit = visible & (x0 <= tx) & (tx < x1) & (y0 <= ty) & (ty < y1)
                ids = order[hit[order]]
                ys = torch.arange(ty * ts, min((ty + 1) * ts, h), dtype=dtype) + 0.5
                xs = torch.arange(tx * ts, min((tx + 1) * ts, w), dtype=dtype) + 0.5
                grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
                pixels = torch.stack((grid_x.flatten(), grid_y.flatten()), dim=-1)
                tile_rgb, tile_trans = _composite_tile(screen, plane, ids, pixels, background)
                sy = slice(ty * ts, ty * ts + ys.numel())
                sx = slice(tx * ts, tx * ts + xs.numel())
                rgb[sy, sx] = tile_rgb.reshape(ys.numel(), xs.numel(), 3)
                trans[sy, sx] = tile_trans.reshape(ys.numel(), xs.numel())
        planes_rgb.append(rgb)
        planes_alpha.append(1.0 - trans)
    return RenderResult(
        rgb=torch.stack(planes_rgb).reshape(b, c, h, w, 3),
        alpha=torch.stack(planes_alpha).reshape(b, c, h, w, 1),
        means2d=means2d,
        radii=screen.radii.amax(dim=-1).reshape(b, c, n),
    )
