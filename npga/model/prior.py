"""Coarse dynamics: the landmark prior of the expression space.

The avatar's expression basis reconstructs template-landmark displacements [L, 3] from a code z;
each Gaussian moves with the inverse-distance-weighted displacement of its K nearest landmarks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FALLOFF_RMS = 0.65  # prior falloff sigma in units of the landmarks' RMS radius (~0.4 face units)


def bind_to_landmarks(
    points: Tensor,  # [N, 3]
    landmarks: Tensor,  # [L, 3]
    k: int,
    chunk: int = 8192,
) -> tuple[Tensor, Tensor]:
    """K nearest landmarks of every point and their weights, [N, K] each.

    Inverse-distance weights, normalised, then faded with the distance to the nearest landmark
    (Gaussian falloff, sigma = FALLOFF_RMS x the landmarks' RMS radius): points on the face follow
    it fully, while the back of the head, the hair and the neck, far from every landmark, do not
    move with the expression (a chin landmark must not drag the neck).
    """
    centred = landmarks - landmarks.mean(dim=0)
    sigma = FALLOFF_RMS * float(centred.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-9))
    indices, weights = [], []
    for part in points.split(chunk):
        distances = torch.cdist(part, landmarks)  # [n, L]
        nearest, index = distances.topk(k, dim=1, largest=False)
        inverse = 1.0 / nearest.clamp_min(1e-6)
        fade = torch.exp(-((nearest[:, :1] / sigma) ** 2))  # [n, 1]
        indices.append(index)
        weights.append(inverse / inverse.sum(dim=1, keepdim=True) * fade)
    return torch.cat(indices), torch.cat(weights)


class LandmarkPrior(nn.Module):
    """Explicit coarse deformation field driven by the expression basis (fixed, not trained)."""

    def __init__(self, num_gaussians: int, expression_dim: int, num_landmarks: int, k: int) -> None:
        super().__init__()
        self.template: Tensor
        self.basis: Tensor
        self.neighbor_index: Tensor
        self.neighbor_weight: Tensor
        self.register_buffer("template", torch.zeros(num_landmarks, 3))  # [L, 3]
        self.register_buffer("basis", torch.zeros(expression_dim, num_landmarks, 3))  # [E, L, 3]
        self.register_buffer("neighbor_index", torch.zeros(num_gaussians, k, dtype=torch.int64))
        self.register_buffer("neighbor_weight", torch.full((num_gaussians, k), 1.0 / k))

    def rebind(self, means: Tensor) -> None:
        """Recompute every Gaussian's landmarks from canonical means [N, 3]."""
        index, weight = bind_to_landmarks(
            means.detach(), self.template, self.neighbor_index.shape[1]
        )
        self.neighbor_index = index
        self.neighbor_weight = weight.to(self.neighbor_weight.dtype)

    def landmark_displacements(self, codes: Tensor) -> Tensor:
        """Template-landmark displacements [B, L, 3] for codes [B, E]."""
        e, num_landmarks, _ = self.basis.shape
        flat = self.basis.reshape(e, num_landmarks * 3)
        return (codes @ flat).reshape(-1, num_landmarks, 3)

    def gaussian_basis(self) -> Tensor:
        """The basis interpolated to the Gaussians, [E, N, 3]: displacements = z @ basis."""
        neighbors = self.basis[:, self.neighbor_index]  # [E, N, K, 3]
        return (neighbors * self.neighbor_weight[None, :, :, None]).sum(dim=2)

    def forward(self, codes: Tensor, gaussian_basis: Tensor | None = None) -> Tensor:
        """Per-Gaussian displacements [B, N, 3] for codes [B, E].

        ``gaussian_basis`` [E, N, 3] (from :meth:`gaussian_basis`) turns this into one matmul.
        """
        if gaussian_basis is not None:
            e, n, _ = gaussian_basis.shape
            return (codes @ gaussian_basis.reshape(e, n * 3)).reshape(-1, n, 3)
        landmark = self.landmark_displacements(codes)  # [B, L, 3]
        neighbors = landmark[:, self.neighbor_index]  # [B, N, K, 3]
        return (neighbors * self.neighbor_weight[None, :, :, None]).sum(dim=2)
