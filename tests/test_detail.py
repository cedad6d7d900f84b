"""Level of detail: fewer Gaussians, the ones that show most kept, images close to the full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npga.bundle import AvatarBundle
from npga.detail import contributions, reduced_detail
from npga.framing import HeadFrame, frontal_camera
from npga.inference import AvatarDriver
from npga.model import AvatarConfig, default_camera, synthetic_avatar
from telepresence.config import ServerConfig


def _bundle() -> AvatarBundle:
    config = AvatarConfig(expression_dim=16, feature_dim=8, hidden_dim=16)
    return AvatarBundle(synthetic_avatar(4000, config, seed=3).eval(), default_camera(64))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_reduced_detail_keeps_what_shows_and_renders_close_to_the_full_avatar() -> None:
    bundle = _bundle()
    full = AvatarDriver(bundle)
    scores = contributions(bundle.avatar, full.head)
    assert scores.shape == (4000,) and bool((scores >= 0).all())
    half = AvatarDriver(bundle, detail=0.5)
    assert half.avatar.num_gaussians == 2000
    assert np.array_equal(half.head.centre, full.head.centre)  # framed as the full avatar
    kept = torch.isin(half.avatar.gaussians.means, bundle.avatar.gaussians.means).all(dim=1)
    assert bool(kept.all())  # a subset of the full avatar's Gaussians
    codes = np.random.default_rng(1).normal(0, 0.7, (3, 16)).astype(np.float32)
    identity = np.tile(np.array([1.0, 0, 0, 0], dtype=np.float32), (3, 1))
    zeros, stamps = np.zeros((3, 3), dtype=np.float32), np.zeros(3)
    camera = frontal_camera(full.head, 64, yaw_degrees=20)
    images = [d.render(codes, identity, zeros, stamps, camera) for d in (full, half)]
    worst = AvatarDriver(bundle, detail=0.02).render(codes, identity, zeros, stamps, camera)
    # the half that shows least adds little; keeping only 2 % visibly does not
    assert _psnr(images[1], images[0]) > 30
    assert _psnr(worst, images[0]) < _psnr(images[1], images[0]) - 10


def test_all_detail_is_the_avatar_itself_and_bad_fractions_are_refused() -> None:
    bundle = _bundle()
    head = HeadFrame.of_avatar(bundle.avatar)
    assert reduced_detail(bundle.avatar, head, 1.0) is bundle.avatar
    with pytest.raises(ValueError, match=r"detail must be within \(0, 1\], got 1.5"):
        reduced_detail(bundle.avatar, head, 1.5)
    with pytest.raises(ValueError, match=r"detail must be within \(0, 1\], got 0"):
        ServerConfig(detail=0.0)


def test_a_cpu_server_renders_fewer_gaussians_by_default_and_a_gpu_one_all() -> None:
    assert ServerConfig(device="cpu").render_detail == pytest.approx(0.35)
    assert ServerConfig(device="cuda").render_detail == 1.0
    assert ServerConfig(device="cpu", detail=1.0).render_detail == 1.0
