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


def test_gsplat_gradients_match_cpu_backend() -> None:
    """Training on CUDA relies on gsplat's backward agreeing with the CPU kernels' analytic one."""
    avatar = synthetic_avatar(5_000).eval()
    camera = default_camera(128)
    with torch.no_grad():
        posed = avatar.deform(torch.zeros(1, avatar.config.expression_dim), HeadPose.identity(1))
    target = torch.rand(1, 1, 128, 128, 3, generator=torch.Generator().manual_seed(1))

    def gradients(device: str, backend: str) -> dict[str, torch.Tensor]:
        leaves = {
            name: getattr(posed, name).detach().to(device).requires_grad_(True)
            for name in ("means", "quats_wxyz", "scales", "opacities", "sh_coeffs")
        }
        result = render(type(posed)(**leaves), camera.to(device), backend=backend)
        (result.rgb - target.to(device)).square().mean().backward()
        return {name: leaf.grad.cpu() for name, leaf in leaves.items()}

    cpu, gpu = gradients("cpu", "cpu"), gradients("cuda", "gsplat")
    for name in cpu:
        a, b = cpu[name].flatten(), gpu[name].flatten()
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        relative = ((a - b).norm() / a.norm()).item()
        assert cosine > 0.99 and relative < 0.1, (name, cosine, relative)
