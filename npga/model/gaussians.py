"""Canonical (neutral, unposed) 3D Gaussians with per-Gaussian latent features."""

from __future__ import annotations

import torch
from torch import nn


class CanonicalGaussians(nn.Module):
    """Learnable parameters of N Gaussians in the avatar's canonical space (pre-activation)."""

    def __init__(self, num_gaussians: int, sh_coeffs: int, feature_dim: int) -> None:
        super().__init__()
        n = num_gaussians
        self.means = nn.Parameter(torch.zeros(n, 3))  # [N, 3]
        self.quats_wxyz = nn.Parameter(torch.zeros(n, 4))  # [N, 4]
        self.log_scales = nn.Parameter(torch.zeros(n, 3))  # [N, 3]
        self.opacity_logits = nn.Parameter(torch.zeros(n))  # [N]
        self.sh_coeffs = nn.Parameter(torch.zeros(n, sh_coeffs, 3))  # [N, K, 3]
        self.features = nn.Parameter(torch.zeros(n, feature_dim))  # [N, Df]
        with torch.no_grad():
            self.quats_wxyz[:, 0] = 1.0

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])
