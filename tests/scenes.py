"""Small random scenes for renderer tests."""

from __future__ import annotations

import torch

from npga.cameras import Cameras, orbit_cameras
from npga.render import PosedGaussians


def random_gaussians(
    n: int, batch: int = 1, dtype: torch.dtype = torch.float64, seed: int = 0, sh: int = 4
) -> PosedGaussians:
    """n Gaussians in a 0.1 m ball around the origin, leaf tensors that require grad."""
    g = torch.Generator().manual_seed(seed)
    return PosedGaussians(
        means=(torch.randn(batch, n, 3, generator=g, dtype=dtype) * 0.06).requires_grad_(),
        quats_wxyz=torch.randn(batch, n, 4, generator=g, dtype=dtype).requires_grad_(),
        scales=(torch.rand(batch, n, 3, generator=g, dtype=dtype) * 0.03 + 0.004).requires_grad_(),
        opacities=(torch.rand(batch, n, generator=g, dtype=dtype) * 0.98 + 0.01).requires_grad_(),
        sh_coeffs=torch.randn(batch, n, sh, 3, generator=g, dtype=dtype).requires_grad_(),
    )


def small_cameras(dtype: torch.dtype = torch.float64, width: int = 40, height: int = 36) -> Cameras:
    return orbit_cameras(
        [0.0, 35.0], distance=0.6, focal_px=1.5 * width, width=width, height=height
    ).to("cpu", dtype)
