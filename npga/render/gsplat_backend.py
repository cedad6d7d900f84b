"""CUDA backend: gsplat 1.5.x ``rasterization``."""

from __future__ import annotations

from torch import Tensor

from npga.cameras import Cameras
from npga.render.types import PosedGaussians, RenderResult, RenderSettings


class GsplatUnavailableError(RuntimeError):
    """gsplat is not installed (``pip install -e '.[cuda]'``)."""


def render_gsplat(
    gaussians: PosedGaussians,
    cameras: Cameras,
    background: Tensor,  # [3]
    settings: RenderSettings,
) -> RenderResult:
    try:
        from gsplat import rasterization
    except ImportError as error:  # pragma: no cover - depends on the install
        raise GsplatUnavailableError(
            f"the gsplat backend needs gsplat 1.5.x (pip install 'gsplat==1.5.3'): {error}"
        ) from error
    b, c = gaussians.batch_size, cameras.num_cameras
    rgb, alpha, meta = rasterization(
        means=gaussians.means,
        quats=gaussians.quats_wxyz,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=gaussians.sh_coeffs,
        viewmats=cameras.world_to_cam.expand(b, c, 4, 4).contiguous(),
        Ks=cameras.intrinsics.expand(b, c, 3, 3).contiguous(),
        width=cameras.width,
        height=cameras.height,
        near_plane=settings.near_plane,
        eps2d=settings.eps2d,
        sh_degree=gaussians.sh_degree,
        packed=False,
        tile_size=settings.tile_size,
        backgrounds=background.expand(b, c, 3).contiguous(),
    )
    radii: Tensor = meta["radii"]  # [B, C, N, 2]
    return RenderResult(
        rgb=rgb,
        alpha=alpha,
        means2d=meta["means2d"],
        radii=radii.amax(dim=-1).int(),
    )
