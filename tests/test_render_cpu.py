"""The CPU backend against a brute-force dense reference, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from dense_reference import dense_composite
from npga.render import PosedGaussians, RenderSettings, render, resolve_device
from npga.render.projection import project
from scenes import random_gaussians, small_cameras

PARAMS = ("means", "quats_wxyz", "scales", "opacities", "sh_coeffs")


def _reference(g: PosedGaussians, cameras, background):
    screen = project(g, cameras, RenderSettings())
    rgb, alpha = dense_composite(screen, background, cameras.width, cameras.height)
    c, h, w = cameras.num_cameras, cameras.height, cameras.width
    return rgb.reshape(g.batch_size, c, h, w, 3), alpha.reshape(g.batch_size, c, h, w, 1)


def _grads(rgb, alpha, g: PosedGaussians, weights_rgb, weights_alpha):
    loss = (rgb * weights_rgb).sum() + (alpha * weights_alpha).sum()
    return torch.autograd.grad(loss, [getattr(g, name) for name in PARAMS])


@pytest.mark.parametrize("backend", ["cpu", "naive"])
@pytest.mark.parametrize("sh", [1, 4])
def test_matches_dense_reference_in_values_and_gradients(backend: str, sh: int) -> None:
    g = random_gaussians(80, batch=2, sh=sh, seed=sh)
    cameras = small_cameras()
    background = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    result = render(g, cameras, background=background, backend=backend)  # type: ignore[arg-type]
    rgb_ref, alpha_ref = _reference(g, cameras, background)
    assert result.rgb.shape == (2, 2, 36, 40, 3)
    assert result.alpha.shape == (2, 2, 36, 40, 1)
    torch.testing.assert_close(result.rgb, rgb_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.alpha, alpha_ref, atol=1e-5, rtol=0)
    # the scene is not trivial: some pixels are covered, some are not
    assert 0.05 < float(alpha_ref.detach().mean()) < 0.95

    gen = torch.Generator().manual_seed(1)
    w_rgb = torch.randn(rgb_ref.shape, generator=gen, dtype=torch.float64)
    w_alpha = torch.randn(alpha_ref.shape, generator=gen, dtype=torch.float64)
    ours = _grads(result.rgb, result.alpha, g, w_rgb, w_alpha)
    reference = _grads(rgb_ref, alpha_ref, g, w_rgb, w_alpha)
    for name, a, b in zip(PARAMS, ours, reference, strict=True):
        scale = float(b.detach().abs().max())
        assert scale > 0, name
        torch.testing.assert_close(a, b, atol=1e-5 * max(1.0, scale), rtol=1e-5, msg=name)


def test_float32_matches_float64_reference() -> None:
    g64 = random_gaussians(200, seed=3)
    g32 = PosedGaussians(*(getattr(g64, name).detach().float() for name in PARAMS))
    cameras = small_cameras()
    rgb_ref, _ = _reference(g64, cameras, torch.ones(3, dtype=torch.float64))
    result = render(g32, cameras.to("cpu", torch.float32))
    torch.testing.assert_close(result.rgb.double(), rgb_ref, atol=1e-4, rtol=0)


def test_inference_path_matches_autograd_path() -> None:
    g = random_gaussians(300, batch=2, seed=5)
    cameras = small_cameras(width=64, height=48)
    with_grad = render(g, cameras)
    with torch.no_grad():
        without = render(g, cameras)
    assert with_grad.rgb.requires_grad and not without.rgb.requires_grad
    torch.testing.assert_close(without.rgb, with_grad.rgb.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(without.alpha, with_grad.alpha.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(without.means2d, with_grad.means2d.detach(), atol=1e-9, rtol=0)
    assert torch.equal(without.radii, with_grad.radii)


def test_batched_render_equals_rendering_one_by_one() -> None:
    g = random_gaussians(120, batch=3, seed=7)
    cameras = small_cameras()
    with torch.no_grad():
        batched = render(g, cameras)
        for b in range(3):
            single = PosedGaussians(*(getattr(g, name)[b : b + 1] for name in PARAMS))
            torch.testing.assert_close(render(single, cameras).rgb[0], batched.rgb[b])


def test_means2d_receives_gradients_for_densification() -> None:
    g = random_gaussians(50, seed=9)
    result = render(g, small_cameras())
    result.means2d.retain_grad()
    result.rgb.sum().backward()
    assert result.means2d.grad is not None
    visible = result.radii > 0
    assert visible.any()
    assert result.means2d.grad[visible].abs().sum() > 0
    assert torch.all(result.means2d.grad[~visible] == 0)


def test_cuda_request_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")


def test_gsplat_backend_on_cpu_tensors_is_refused() -> None:
    g = random_gaussians(5)
    with pytest.raises(ValueError, match="gsplat backend needs CUDA"):
        render(g, small_cameras(), backend="gsplat")


def test_bad_shapes_are_refused() -> None:
    g = random_gaussians(5)
    with pytest.raises(ValueError, match="opacities must be"):
        PosedGaussians(g.means, g.quats_wxyz, g.scales, g.opacities[:, :4], g.sh_coeffs)
    with pytest.raises(ValueError, match="sh_coeffs"):
        PosedGaussians(g.means, g.quats_wxyz, g.scales, g.opacities, g.sh_coeffs[:, :, :2])


@pytest.mark.parametrize("grad", [True, False])
def test_non_finite_gaussians_are_culled_not_fatal(grad: bool) -> None:
    g = random_gaussians(60, seed=11)
    means = g.means.detach().clone()
    means[0, 3] = float("nan")
    means[0, 7, 0] = float("inf")
    bad = PosedGaussians(means, *(getattr(g, name).detach() for name in PARAMS[1:]))
    with torch.set_grad_enabled(grad):
        result = render(bad, small_cameras())
    assert torch.isfinite(result.rgb).all()
    assert result.radii[0, :, 3].eq(0).all() and result.radii[0, :, 7].eq(0).all()
