"""CPU backend: torch projection + numba tile rasteriser, differentiable end to end."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.render import cpu_kernels
from npga.render.projection import ScreenGaussians, project, tile_grid
from npga.render.types import PosedGaussians, RenderResult, RenderSettings

# The CPU kernels bin into 8x8 tiles: fewer wasted pixel/Gaussian tests than gsplat's 16x16
# (measured ~20% faster at 256x256); tiling does not change the image.
CPU_TILE_SIZE = 8


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class _RasterizeFunction(torch.autograd.Function):
    """Alpha-composite screen-space Gaussians; gradients from the numba backward kernel."""

    @staticmethod
    def forward(
        ctx: Any,
        means2d: Tensor,  # [P, N, 2]
        conics: Tensor,  # [P, N, 3]
        colors: Tensor,  # [P, N, 3]
        opacities: Tensor,  # [P, N]
        radii: Tensor,  # [P, N, 2] int32
        depths: Tensor,  # [P, N]
        background: Tensor,  # [P, 3]
        width: int,
        height: int,
        tile_size: int,
    ) -> tuple[Tensor, Tensor]:
        tiles_x, tiles_y = tile_grid(width, height, tile_size)
        packed = cpu_kernels.pack_gaussians(
            _numpy(means2d), _numpy(conics), _numpy(colors), _numpy(opacities)
        )
        order = np.argsort(_numpy(depths), axis=1, kind="stable")
        tile_offsets, entries = cpu_kernels.bin_gaussians(
            _numpy(means2d), _numpy(radii), order, tile_size, tiles_x, tiles_y
        )
        bg = _numpy(background).astype(np.float64)
        rgb, transmittance, last_entry = cpu_kernels.rasterize_forward(
            packed, bg, tile_offsets, entries, width, height, tile_size, tiles_x
        )
        ctx.geometry = (packed, bg, tile_offsets, entries, width, height, tile_size, tiles_x)
        ctx.composite = (transmittance, last_entry)
        ctx.dtype = means2d.dtype
        rgb_t = torch.from_numpy(rgb).to(means2d.dtype)
        alpha_t = torch.from_numpy(1.0 - transmittance).to(means2d.dtype).unsqueeze(-1)
        return rgb_t, alpha_t

    @staticmethod
    def backward(ctx: Any, grad_rgb: Tensor, grad_alpha: Tensor) -> tuple[Tensor | None, ...]:
        transmittance, last_entry = ctx.composite
        grads = cpu_kernels.rasterize_backward(
            *ctx.geometry,
            transmittance,
            last_entry,
            _numpy(grad_rgb).astype(np.float64),
            _numpy(grad_alpha[..., 0]).astype(np.float64),
        )
        g = torch.from_numpy(grads).to(ctx.dtype)
        k = cpu_kernels
        d_means2d = g[..., k.G_MX : k.G_MY + 1]
        d_conics = g[..., k.G_CA : k.G_CC + 1]
        d_opacities = g[..., k.G_OPACITY]
        d_colors = g[..., k.G_R : k.G_B + 1]
        return d_means2d, d_conics, d_colors, d_opacities, None, None, None, None, None, None


def rasterize_screen(
    screen: ScreenGaussians,
    background: Tensor,  # [P, 3]
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians: rgb [P, H, W, 3], alpha [P, H, W, 1]."""
    rgb, alpha = _RasterizeFunction.apply(
        screen.means2d,
        screen.conics,
        screen.colors,
        screen.opacities,
        screen.radii,
        screen.depths,
        background,
        width,
        height,
        tile_size,
    )
    return rgb, alpha


@dataclass(frozen=True)
class _Binned:
    """Gaussians projected, packed and binned into the CPU kernels' tiles (no autograd)."""

    packed: np.ndarray  # [P, N, NUM_FIELDS]
    radii: np.ndarray  # [P, N, 2] int32
    means2d: np.ndarray  # [P, N, 2]
    tile_offsets: np.ndarray  # [P*T + 1]
    entries: np.ndarray  # [E]
    tiles_x: int


def _project_and_bin(
    gaussians: PosedGaussians, cameras: Cameras, settings: RenderSettings
) -> _Binned:
    w, h = cameras.width, cameras.height
    packed, depths, radii, means2d = cpu_kernels.project_and_pack(
        *(_numpy(t) for t in (gaussians.means, gaussians.quats_wxyz, gaussians.scales)),
        _numpy(gaussians.opacities),
        _numpy(gaussians.sh_coeffs),
        _numpy(cameras.world_to_cam).astype(np.float64),
        _numpy(cameras.intrinsics).astype(np.float64),
        w,
        h,
        settings.near_plane,
        settings.eps2d,
    )
    tiles_x, tiles_y = tile_grid(w, h, CPU_TILE_SIZE)
    order = np.argsort(depths, axis=1, kind="stable")
    tile_offsets, entries = cpu_kernels.bin_gaussians(
        means2d, radii, order, CPU_TILE_SIZE, tiles_x, tiles_y
    )
    return _Binned(packed, radii, means2d, tile_offsets, entries, tiles_x)


def _render_inference(
    gaussians: PosedGaussians,
    cameras: Cameras,
    background: Tensor,  # [3]
    settings: RenderSettings,
) -> RenderResult:
    """The no-autograd path: projection, binning and compositing all in numba."""
    b, c, n = gaussians.batch_size, cameras.num_cameras, gaussians.num_gaussians
    w, h, dtype = cameras.width, cameras.height, gaussians.means.dtype
    binned = _project_and_bin(gaussians, cameras, settings)
    bg = np.broadcast_to(_numpy(background).astype(np.float64), (b * c, 3)).copy()
    rgb, transmittance, _ = cpu_kernels.rasterize_forward(
        binned.packed, bg, binned.tile_offsets, binned.entries, w, h, CPU_TILE_SIZE, binned.tiles_x
    )
    return RenderResult(
        rgb=torch.from_numpy(rgb).to(dtype).reshape(b, c, h, w, 3),
        alpha=torch.from_numpy(1.0 - transmittance).to(dtype).reshape(b, c, h, w, 1),
        means2d=torch.from_numpy(binned.means2d).to(dtype).reshape(b, c, n, 2),
        radii=torch.from_numpy(binned.radii).amax(dim=-1).reshape(b, c, n),
    )


def blend_weights(gaussians: PosedGaussians, cameras: Cameras, settings: RenderSettings) -> Tensor:
    """Each Gaussian's summed compositing weight (alpha x transmittance over all pixels) in
    every image, [B, C, N]: how much of the picture it makes (no autograd)."""
    b, c, n = gaussians.batch_size, cameras.num_cameras, gaussians.num_gaussians
    binned = _project_and_bin(gaussians, cameras, settings)
    weights = cpu_kernels.blend_weights(
        binned.packed,
        binned.tile_offsets,
        binned.entries,
        cameras.width,
        cameras.height,
        CPU_TILE_SIZE,
        binned.tiles_x,
    )
    return torch.from_numpy(weights).reshape(b, c, n)


def _needs_grad(gaussians: PosedGaussians) -> bool:
    fields = (gaussians.means, gaussians.quats_wxyz, gaussians.scales, gaussians.opacities)
    return torch.is_grad_enabled() and any(t.requires_grad for t in (*fields, gaussians.sh_coeffs))


def render_cpu(
    gaussians: PosedGaussians,
    cameras: Cameras,
    background: Tensor,  # [3]
    settings: RenderSettings,
) -> RenderResult:
    if not _needs_grad(gaussians):
        return _render_inference(gaussians, cameras, background, settings)
    b, c, n = gaussians.batch_size, cameras.num_cameras, gaussians.num_gaussians
    screen = project(gaussians, cameras, settings)
    # The returned means2d must be the tensor the rasteriser consumes, so that a trainer can
    # retain_grad() on it (densification statistics).
    means2d = screen.means2d.reshape(b, c, n, 2)
    screen = replace(screen, means2d=means2d.reshape(b * c, n, 2))
    rgb, alpha = rasterize_screen(
        screen, background.expand(b * c, 3), cameras.width, cameras.height, CPU_TILE_SIZE
    )
    h, w = cameras.height, cameras.width
    return RenderResult(
        rgb=rgb.reshape(b, c, h, w, 3),
        alpha=alpha.reshape(b, c, h, w, 1),
        means2d=means2d,
        radii=screen.radii.amax(dim=-1).reshape(b, c, n),
    )
