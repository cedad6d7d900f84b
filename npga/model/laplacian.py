"""Laplacian regularisers over a kNN graph of the canonical Gaussians (NPGA §3.3)."""

from __future__ import annotations

import torch
from torch import Tensor


def knn_graph(points: Tensor, k: int, chunk: int = 4096) -> Tensor:
    """Indices [N, k] of each point's k nearest other points; points [N, 3]."""
    n = points.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in 1..{n - 1} for {n} points, got {k}")
    neighbors = []
    for start in range(0, n, chunk):
        part = points[start : start + chunk]
        distances = torch.cdist(part, points)  # [n_part, N]
        rows = torch.arange(part.shape[0], device=points.device)
        distances[rows, start + rows] = float("inf")  # not your own neighbour
        neighbors.append(distances.topk(k, dim=1, largest=False).indices)
    return torch.cat(neighbors)


def laplacian_loss(values: Tensor, neighbors: Tensor) -> Tensor:
    """Mean squared difference between each value and the mean of its neighbours.

    values [..., N, D] (e.g. features [N, Df] or predicted dynamics [B, N, D]); neighbors [N, k].
    """
    neighbor_mean = values[..., neighbors, :].mean(dim=-2)  # [..., N, D]
    return (values - neighbor_mean).pow(2).sum(dim=-1).mean()
