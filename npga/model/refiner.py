"""Optional screen-space refiner: a small residual CNN applied to rendered images."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScreenRefiner(nn.Module):
    """rgb + CNN(rgb, alpha); starts as the identity (last layer zero)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        last = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]
        self.net = nn.Sequential(
            nn.Conv2d(4, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            last,
        )

    def forward(self, rgb: Tensor, alpha: Tensor) -> Tensor:
        """rgb [..., H, W, 3], alpha [..., H, W, 1] -> refined rgb [..., H, W, 3]."""
        h, w = rgb.shape[-3], rgb.shape[-2]
        images = torch.cat((rgb, alpha), dim=-1).reshape(-1, h, w, 4).permute(0, 3, 1, 2)
        residual = self.net(images).permute(0, 2, 3, 1).reshape(rgb.shape)
        return rgb + residual
