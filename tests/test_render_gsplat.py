"""gsplat (CUDA) against the CPU backend. Runs only where CUDA is available."""

from __future__ import annotations

import pytest
import torch

from npga.model import HeadPose, default_camera, synthetic_avatar
from npga.render import render

pytestmark = pytest.mark.gpu


def test_gsplat_matches_cpu_backend_on_an_avatar_image() -> None:
    avatar = synthetic_avatar(20_000).eval()
    camera = default_camera(256)
    codes = torch.randn(2, avatar.config.expression_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        posed = avatar.deform(codes, HeadPose.identity(2))
        cpu = render(posed, camera, backend="cpu")
        cuda_avatar = avatar.to("cuda")
        posed_cuda = cuda_avatar.deform(codes.cuda(), HeadPose.identity(2, "cuda"))
        gpu = render(posed_cuda, camera.to("cuda"), backend="gsplat")
    difference = (gpu.rgb.cpu() - cpu.rgb).abs().mean().item()
    assert difference <= 1e-3, difference
    assert (gpu.alpha.cpu() - cpu.alpha).abs().mean().item() <= 1e-3
    assert float(cpu.alpha.mean()) > 0.2  # the avatar is in view
