"""Inputs and outputs of the renderer."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class PosedGaussians:
    """B sets of N world-space Gaussians, ready to render (activations already applied).

    Colour is real spherical harmonics of degree 0 or 1 (K = 1 or 4 coefficients), evaluated
    with world-space view directions; RGB = max(SH(d) + 0.5, 0), as in 3DGS and gsplat.
    """

    means: Tensor  # [B, N, 3]
    quats_wxyz: Tensor  # [B, N, 4], need not be normalised
    scales: Tensor  # [B, N, 3], linear (not log) standard deviations
    opacities: Tensor  # [B, N], in [0, 1]
    sh_coeffs: Tensor  # [B, N, K, 3], K in {1, 4}

    def __post_init__(self) -> None:
        if self.means.ndim != 3 or self.means.shape[-1] != 3:
            raise ValueError(f"means must be [B, N, 3], got {tuple(self.means.shape)}")
        b, n, _ = self.means.shape
        expected = {
            "quats_wxyz": (b, n, 4),
            "scales": (b, n, 3),
            "opacities": (b, n),
        }
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(actual)}")
        sh = tuple(self.sh_coeffs.shape)
        if len(sh) != 4 or sh[:2] != (b, n) or sh[2] not in (1, 4) or sh[3] != 3:
            raise ValueError(f"sh_coeffs must be [{b}, {n}, 1|4, 3], got {list(sh)}")

    @property
    def batch_size(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[1])

    @property
    def sh_degree(self) -> int:
        return 0 if self.sh_coeffs.shape[2] == 1 else 1


@dataclass(frozen=True)
class RenderSettings:
    """Rasterisation constants shared by every backend (gsplat's defaults)."""

    near_plane: float = 0.01
    eps2d: float = 0.3  # low-pass blur added to every 2D covariance, in pixels^2
    tile_size: int = 16  # gsplat's and the naive baseline's tiles (the CPU kernels use 8x8)


@dataclass(frozen=True)
class RenderResult:
    """Images of B Gaussian sets seen by C cameras, plus what densification needs."""

    rgb: Tensor  # [B, C, H, W, 3]
    alpha: Tensor  # [B, C, H, W, 1]
    means2d: Tensor  # [B, C, N, 2] pixel positions; part of the autograd graph
    radii: Tensor  # [B, C, N] int32 screen-space radius in pixels, 0 where culled
