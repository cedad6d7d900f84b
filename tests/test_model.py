"""GaussianAvatar: dynamics, gradients, batching, pose, regularisers."""

from __future__ import annotations

import math

import pytest
import torch

from npga.cameras import orbit_cameras
from npga.geometry import axis_angle_to_quat, quat_to_rotmat
from npga.model import (
    AvatarConfig,
    HeadPose,
    bind_to_landmarks,
    knn_graph,
    laplacian_loss,
    synthetic_avatar,
)

SMALL = AvatarConfig(expression_dim=8, num_landmarks=40, feature_dim=6, hidden_dim=16)


def _codes(b: int, e: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, e, generator=torch.Generator().manual_seed(seed))


def test_codes_move_the_gaussians_through_prior_and_fine_dynamics() -> None:
    avatar = synthetic_avatar(300, SMALL)
    neutral = avatar.deform(torch.zeros(1, 8))
    moved = avatar.deform(_codes(1))
    assert (moved.means - neutral.means).abs().max() > 1e-4
    # with zero code the prior is zero: only the fine MLP's bias-free response remains
    prior_only = avatar.prior(_codes(1))
    assert prior_only.shape == (1, 300, 3) and prior_only.abs().max() > 0


def test_gradients_flow_through_the_mlp_into_features_and_canonical_parameters() -> None:
    avatar = synthetic_avatar(400, SMALL)
    camera = orbit_cameras([0.0], distance=0.6, focal_px=70, width=32, height=32)
    result = avatar.render(_codes(2), camera, HeadPose.identity(2))
    result.rgb.mean().backward()
    g = avatar.gaussians
    for name in ("means", "quats_wxyz", "log_scales", "opacity_logits", "sh_coeffs", "features"):
        grad = getattr(g, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    for name, parameter in avatar.fine.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_batched_deform_and_render_equal_looped() -> None:
    avatar = synthetic_avatar(500, SMALL).eval()
    camera = orbit_cameras([0.0, 20.0], distance=0.6, focal_px=80, width=40, height=40)
    codes = _codes(3)
    rotation = axis_angle_to_quat(torch.tensor([[0.0, 0.3, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.2]]))
    pose = HeadPose(rotation, torch.tensor([[0.0, 0.0, 0.01], [0.01, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with torch.no_grad():
        batched = avatar.render(codes, camera, pose)
        for b in range(3):
            single = avatar.render(
                codes[b : b + 1], camera, HeadPose(rotation[b : b + 1], pose.translation[b : b + 1])
            )
            torch.testing.assert_close(single.rgb[0], batched.rgb[b], atol=1e-5, rtol=0)


def test_inference_cache_gives_the_same_result() -> None:
    avatar = synthetic_avatar(300, SMALL).eval()
    codes = _codes(2)
    with torch.no_grad():
        plain = avatar.deform(codes)
        cached = avatar.deform(codes, cache=avatar.inference_cache())
    for name in ("means", "quats_wxyz", "scales", "opacities", "sh_coeffs"):
        torch.testing.assert_close(
            getattr(cached, name), getattr(plain, name), atol=1e-6, rtol=1e-5
        )


def test_rotating_the_head_equals_counter_rotating_the_camera() -> None:
    """Pose is rigid, including the view-dependent (SH degree 1) colour."""
    avatar = synthetic_avatar(2000, AvatarConfig(expression_dim=8, num_landmarks=40)).eval()
    with torch.no_grad():
        avatar.gaussians.sh_coeffs[:, 1:] *= 20  # strong view dependence
    yaw = math.radians(25)
    pose = HeadPose(axis_angle_to_quat(torch.tensor([[0.0, yaw, 0.0]])), torch.zeros(1, 3))
    front = orbit_cameras([0.0], distance=0.6, focal_px=90, width=48, height=48)
    codes = torch.zeros(1, 8)
    with torch.no_grad():
        turned_head = avatar.render(codes, front, pose).rgb
        # the camera moves the opposite way around the unrotated head
        r = quat_to_rotmat(pose.rotation_wxyz)[0]
        w2c = front.world_to_cam.clone()
        w2c[0, :3, :3] = w2c[0, :3, :3] @ r
        from npga.cameras import Cameras

        turned_camera = avatar.render(codes, Cameras(w2c, front.intrinsics, 48, 48)).rgb
    torch.testing.assert_close(turned_head, turned_camera, atol=1e-4, rtol=0)


def test_refiner_starts_as_identity_and_learns() -> None:
    config = AvatarConfig(expression_dim=8, num_landmarks=40, refiner_channels=8)
    avatar = synthetic_avatar(200, config)
    camera = orbit_cameras([0.0], distance=0.6, focal_px=60, width=24, height=24)
    result = avatar.render(_codes(1), camera)
    assert avatar.refiner is not None
    result.rgb.mean().backward()
    last = avatar.refiner.net[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0


def test_knn_graph_matches_brute_force() -> None:
    points = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    neighbors = knn_graph(points, 5, chunk=64)
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))
    expected = distances.topk(5, largest=False).indices
    assert torch.equal(neighbors.sort(dim=1).values, expected.sort(dim=1).values)
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(points[:3], 3)


def test_laplacian_loss_is_zero_for_smooth_values_and_positive_otherwise() -> None:
    points = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))
    neighbors = knn_graph(points, 6)
    constant = torch.ones(200, 4)
    assert float(laplacian_loss(constant, neighbors)) == 0.0
    noisy = torch.randn(2, 200, 4, generator=torch.Generator().manual_seed(2))  # [B, N, D]
    assert float(laplacian_loss(noisy, neighbors)) > 0.5


def test_landmark_binding_follows_near_landmarks_and_fades_far_from_them() -> None:
    landmarks = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [1.0, 1, 0]])
    points = torch.tensor([[0.05, 0.0, 0.0], [0.95, 0.05, 0.0], [0.5, 0.5, 3.0]])
    index, weight = bind_to_landmarks(points, landmarks, k=2)
    assert index[0, 0] == 0 and index[1, 0] == 1
    total = weight.sum(dim=1)  # inverse-distance weights that sum to 1, times the falloff
    assert float(total[0]) > 0.98 and float(total[1]) > 0.95  # on the landmarks: follow fully
    assert float(total[2]) < 1e-6  # far behind them (the back of a head): does not move


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="sh_degree"):
        AvatarConfig(sh_degree=3)
    with pytest.raises(ValueError, match="unknown config field"):
        AvatarConfig.from_dict({**AvatarConfig().to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="codes must be"):
        synthetic_avatar(10, SMALL).deform(torch.zeros(1, 9))


def test_fused_cpu_inference_posing_matches_the_torch_path() -> None:
    avatar = synthetic_avatar(700, AvatarConfig(expression_dim=8, num_landmarks=40)).eval()
    codes = _codes(3)
    rotation = axis_angle_to_quat(torch.tensor([[0.0, 0.4, 0.1], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    pose = HeadPose(rotation * 1.3, torch.tensor([[0.01, 0.0, 0.02]]).expand(3, 3))
    reference = avatar.deform(codes, pose)  # autograd enabled: the torch path
    with torch.inference_mode():
        fused = avatar.deform(codes, pose, cache=avatar.inference_cache())
    for name in ("means", "quats_wxyz", "scales", "opacities", "sh_coeffs"):
        torch.testing.assert_close(
            getattr(fused, name), getattr(reference, name).detach(), atol=2e-6, rtol=1e-5, msg=name
        )


def test_non_finite_codes_and_poses_are_refused() -> None:
    avatar = synthetic_avatar(50, SMALL)
    codes = torch.zeros(1, 8)
    codes[0, 2] = float("nan")
    with pytest.raises(ValueError, match="codes contain NaN"):
        avatar.deform(codes)
    with pytest.raises(ValueError, match="pose contains NaN"):
        HeadPose(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="zero length"):
        HeadPose(torch.zeros(1, 4), torch.zeros(1, 3))
