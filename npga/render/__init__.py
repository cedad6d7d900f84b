"""One entry point that renders posed Gaussians for C cameras.

Backends:
- ``gsplat``: CUDA, gsplat 1.5.x; the fast path on a GPU.
- ``cpu``: torch projection + numba tile rasteriser with an analytic backward; the reference the
  CUDA path is tested against, fast enough for a live low-resolution demo and for CI training.
- ``naive``: a plain-torch tile rasteriser, the baseline for benchmarks.

``backend="auto"`` picks by the device of the Gaussians: CUDA -> gsplat, CPU -> cpu.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.render.cpu import render_cpu
from npga.render.gsplat_backend import GsplatUnavailableError, render_gsplat
from npga.render.naive import render_naive
from npga.render.types import PosedGaussians, RenderResult, RenderSettings

Backend = Literal["auto", "gsplat", "cpu", "naive"]

__all__ = [
    "Backend",
    "GsplatUnavailableError",
    "PosedGaussians",
    "RenderResult",
    "RenderSettings",
    "render",
    "resolve_device",
]


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``; CUDA without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r} (use cpu, cuda or auto)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name!r} requested but CUDA is not available "
            f"(torch {torch.__version__}); use --device cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r} (use cpu, cuda or auto)")
    return device


def render(
    gaussians: PosedGaussians,
    cameras: Cameras,
    *,
    background: Tensor | tuple[float, float, float] = (1.0, 1.0, 1.0),  # [3]
    backend: Backend = "auto",
    settings: RenderSettings | None = None,
) -> RenderResult:
    """Render B Gaussian sets (``gaussians``, leading dim B) into C cameras.

    Returns a :class:`RenderResult` with rgb [B, C, H, W, 3] and alpha [B, C, H, W, 1].
    """
    settings = settings or RenderSettings()
    device = gaussians.means.device
    if cameras.device != device:
        raise ValueError(f"cameras are on {cameras.device} but the Gaussians on {device}")
    bg = torch.as_tensor(background, dtype=gaussians.means.dtype, device=device)
    if bg.shape != (3,):
        raise ValueError(f"background must be [3], got {list(bg.shape)}")
    if backend == "auto":
        backend = "gsplat" if device.type == "cuda" else "cpu"
    if backend == "gsplat":
        if device.type != "cuda":
            raise ValueError("the gsplat backend needs CUDA tensors; use backend='cpu' on CPU")
        return render_gsplat(gaussians, cameras, bg, settings)
    if device.type != "cpu":
        raise ValueError(f"the {backend} backend runs on CPU tensors, got {device}")
    if backend == "cpu":
        return render_cpu(gaussians, cameras, bg, settings)
    if backend == "naive":
        return render_naive(gaussians, cameras, bg, settings)
    raise ValueError(f"unknown backend {backend!r} (auto, gsplat, cpu or naive)")
