"""Comparing images: the metrics evaluation reports (PSNR, whole image or inside a mask; SSIM,
Wang et al. 2004) and the photometric loss training and pose fitting minimise.

Images are float tensors in [0, 1] with channels last, [..., H, W, 3]; every function reduces the
last three dimensions and keeps the leading ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per image: [..., H, W, 3] -> [...]."""
    _check_pair(prediction, target)
    return (prediction - target).pow(2).mean(dim=(-3, -2, -1))


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per image (peak 1.0): [..., H, W, 3] -> [...]."""
    return -10.0 * torch.log10(mse(prediction, target).clamp_min(1e-12))


def masked_psnr(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR in dB over the pixels where ``mask`` [..., H, W, 1] > 0.5: [..., H, W, 3] -> [...]."""
    _check_pair(prediction, target)
    if mask.shape != (*prediction.shape[:-1], 1):
        raise ValueError(f"mask must be {[*prediction.shape[:-1], 1]}, got {list(mask.shape)}")
    inside = (mask > 0.5).to(prediction.dtype)
    squared = ((prediction - target).pow(2) * inside).sum(dim=(-3, -2, -1))
    count = (inside.sum(dim=(-3, -2, -1)) * 3).clamp_min(1.0)
    return -10.0 * torch.log10((squared / count).clamp_min(1e-12))


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim_map(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM [P, 3, H', W'] of image batches [P, H, W, 3] (valid convolution)."""
    _check_pair(prediction, target)
    window = _gaussian_window(prediction.dtype, prediction.device)
    x = prediction.permute(0, 3, 1, 2)  # [P, 3, H, W]
    y = target.permute(0, 3, 1, 2)

    def blur(image: Tensor) -> Tensor:
        return F.conv2d(image, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return numerator / denominator


def ssim(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM per image (11x11 Gaussian window, sigma 1.5): [..., H, W, 3] -> [...]."""
    leading = prediction.shape[:-3]
    h, w = prediction.shape[-3:-1]
    flat = (prediction.reshape(-1, h, w, 3), target.reshape(-1, h, w, 3))
    return ssim_map(*flat).mean(dim=(1, 2, 3)).reshape(leading)


def _check_pair(prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape or prediction.shape[-1:] != (3,):
        raise ValueError(
            f"need two [..., H, W, 3] images of one shape, got {list(prediction.shape)} and "
            f"{list(target.shape)}"
        )
    if min(prediction.shape[-3:-1]) < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")


def mse_to_psnr(value: float) -> float:
    return -10.0 * math.log10(max(value, 1e-12))


def photometric_loss(
    rgb: Tensor,  # [P, H, W, 3] rendered
    target: Tensor,  # [P, H, W, 3]
    dssim_weight: float,
) -> Tensor:
    """3DGS's loss: (1 - w) * L1 + w * (1 - SSIM), with w = ``dssim_weight``."""
    l1 = (rgb - target).abs().mean()
    return (1.0 - dssim_weight) * l1 + dssim_weight * (1.0 - ssim_map(rgb, target).mean())
