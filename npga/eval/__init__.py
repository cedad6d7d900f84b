"""Evaluating avatars: image metrics and the self-reenactment / novel-view protocol."""

from npga.eval.metrics import masked_psnr, psnr, ssim

__all__ = ["masked_psnr", "psnr", "ssim"]
