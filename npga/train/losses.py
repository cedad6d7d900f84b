"""The regularisers of training (NPGA §3.3); the photometric loss is in npga.photometric."""

from __future__ import annotations

import torch
from torch import Tensor

from npga.model import FineResiduals, laplacian_loss


def dynamics_vector(fine: FineResiduals, face_unit: float) -> Tensor:
    """All fine residuals of B expressions as one [B, N, 14] tensor (positions in face units)."""
    return torch.cat(
        (
            fine.position / face_unit,
            fine.rotation,
            fine.log_scale,
            fine.opacity_logit[..., None],
            fine.color,
        ),
        dim=-1,
    )


def dynamics_laplacian(fine: FineResiduals, neighbors: Tensor, face_unit: float) -> Tensor:
    """Laplacian smoothness of the predicted dynamics over the kNN graph neighbors [N, k]."""
    return laplacian_loss(dynamics_vector(fine, face_unit), neighbors)


def offset_penalty(fine: FineResiduals, face_unit: float) -> Tensor:
    """Mean squared fine position residual in face units: the coarse prior should carry motion."""
    return (fine.position / face_unit).pow(2).sum(dim=-1).mean()


def scale_penalty(log_scales: Tensor, max_scale: float) -> Tensor:
    """Mean excess of the largest axis over ``max_scale`` (metres); log_scales [N, 3]."""
    return torch.relu(log_scales.exp().amax(dim=1) - max_scale).mean()
