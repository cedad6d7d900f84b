"""Units of training and evaluation that need no capture: metrics, triangulation, densification,
pose corrections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from npga.cameras import orbit_cameras
from npga.model import HeadPose, PoseCorrections, synthetic_avatar
from npga.model.config import AvatarConfig
from npga.photometric import masked_psnr, psnr, ssim
from npga.tracking.capture import projection_matrices, triangulate, triangulate_face
from npga.tracking.template import load_default_template
from npga.train.config import TrainConfig
from npga.train.densify import DensifyState, DensifyStrategy, accumulate, refine
from npga.train.init import carve_hull, project_points
from npga.train.setup import new_optimizer


def test_psnr_of_known_error() -> None:
    target = torch.zeros(2, 16, 16, 3)
    prediction = target + 0.1  # MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(prediction, target), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_masked_psnr_ignores_pixels_outside_the_mask() -> None:
    target = torch.zeros(16, 16, 3)
    prediction = target.clone()
    prediction[:8] = 0.1  # error only in the top half
    mask = torch.zeros(16, 16, 1)
    mask[8:] = 1.0
    assert float(masked_psnr(prediction, target, mask)) > 100  # perfect inside the mask
    mask[:] = 1.0
    assert abs(float(masked_psnr(prediction, target, mask)) - psnr(prediction, target)) < 1e-4


def test_ssim_matches_scikit_image() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(32, 32, 3, generator=generator, dtype=torch.float64)
    prediction = (target + 0.1 * torch.randn(32, 32, 3, generator=generator)).clamp(0, 1)
    expected = structural_similarity(
        prediction.numpy(), target.numpy(), channel_axis=2, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )  # fmt: skip
    assert abs(float(ssim(prediction, target)) - expected) < 2e-3
    assert float(ssim(target, target)) == pytest.approx(1.0)


def test_metrics_reject_mismatched_images() -> None:
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.zeros(16, 16, 3), torch.zeros(16, 15, 3))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(8, 8, 3), torch.zeros(8, 8, 3))


def test_triangulation_recovers_points_seen_by_calibrated_cameras() -> None:
    cameras = orbit_cameras(
        [-40.0, 0.0, 35.0], distance=0.7, focal_px=500.0, width=256, height=256, pitch_degrees=10
    )
    points = torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) * 0.08
    pixels, _ = project_points(points, cameras)  # [C, N, 2]
    recovered = triangulate(pixels.double().numpy(), projection_matrices(cameras))
    np.testing.assert_allclose(recovered, points.numpy(), atol=1e-5)


def test_face_triangulation_trusts_the_views_that_face_it() -> None:
    """Side views' landmarks are biased (Face Mesh pulls a turned face towards a frontal layout);
    weighting views by how squarely they see the face keeps that bias out of the 3D landmarks."""
    template = load_default_template()
    face = torch.from_numpy(template.points * 0.09).float()  # metres, facing -z, at the origin
    cameras = orbit_cameras(
        [-65.0, -15.0, 15.0, 65.0], distance=0.6, focal_px=400.0, width=256, height=256
    )
    pixels = project_points(face, cameras)[0].double().numpy()  # [4, L, 2]
    centre = pixels.mean(axis=1, keepdims=True)
    pixels[[0, 3]] = centre[[0, 3]] + 0.9 * (pixels[[0, 3]] - centre[[0, 3]])  # side views shrunk
    projections = projection_matrices(cameras)
    centres = cameras.centers().double().numpy()
    weighted = triangulate_face(pixels, projections, centres, template)
    plain = triangulate(pixels, projections)
    error_weighted = np.linalg.norm(weighted - face.numpy(), axis=1).mean()
    error_plain = np.linalg.norm(plain - face.numpy(), axis=1).mean()
    assert error_weighted < 0.5 * error_plain, (error_weighted, error_plain)


def test_visual_hull_carves_a_sphere() -> None:
    cameras = orbit_cameras([-45.0, 0.0, 45.0, 90.0], distance=0.6, focal_px=100.0, width=64,
                            height=64, pitch_degrees=15)  # fmt: skip
    # Masks of a 5 cm sphere at the origin: pixels whose ray passes within the radius.
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    masks = []
    for c in range(4):
        k_inv = torch.linalg.inv(cameras.intrinsics[c])
        rays = torch.stack((xs, ys, torch.ones_like(xs)), -1) @ k_inv.T  # camera frame
        w2c = cameras.world_to_cam[c]
        centre_cam = w2c[:3, 3]  # the origin in camera coordinates
        along = (rays @ centre_cam) / rays.norm(dim=-1) ** 2
        distance = (rays * along[..., None] - centre_cam).norm(dim=-1)
        masks.append((distance < 0.05).float()[..., None])
    voxels, inside = carve_hull(
        torch.stack(masks), cameras, torch.eye(3), torch.zeros(3), torch.zeros(3), 0.1
    )
    radius = voxels[inside].norm(dim=1)
    assert inside.sum() > 100
    assert float(radius.max()) < 0.075  # carved close to the sphere (4 views: a loose hull)
    assert bool(inside[voxels.norm(dim=1) < 0.04].all())  # nothing inside the sphere carved


def _avatar_and_optimizer(n: int):
    avatar = synthetic_avatar(n, AvatarConfig(expression_dim=4, num_landmarks=16))
    optimizer = new_optimizer(TrainConfig(), avatar)
    for group in optimizer.param_groups:  # give every tensor a distinct Adam state
        p = group["params"][0]
        optimizer.state[p] = {
            "step": torch.tensor(3.0),
            "exp_avg": torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape),
            "exp_avg_sq": torch.ones_like(p),
        }
    return avatar, optimizer


def test_refine_clones_splits_prunes_and_keeps_adam_state_aligned() -> None:
    avatar, optimizer = _avatar_and_optimizer(200)
    g = avatar.gaussians
    with torch.no_grad():
        g.log_scales[:] = -6.0  # small: cloned
        g.log_scales[10:20] = -2.0  # large: split
        g.opacity_logits[:] = 3.0
        g.opacity_logits[50:55] = -10.0  # transparent: pruned
    means_before = g.means.detach().clone()
    state = DensifyState.empty(200, torch.device("cpu"))
    grad = torch.zeros(1, 1, 200, 2)
    grad[0, 0, :20] = 1.0  # the first 20 have a large screen-space gradient
    accumulate(state, grad, torch.ones(1, 1, 200), 64, 64)
    strategy = DensifyStrategy(grow_scale=0.05)
    report = refine(strategy, state, avatar, optimizer, 1.0, torch.Generator().manual_seed(0))
    assert (report.cloned, report.split, report.pruned) == (10, 10, 5)
    assert g.num_gaussians == 200 + 10 + 20 - 10 - 5
    # Survivors keep their parameters and Adam moments, in order; new ones start at zero.
    survivors = [i for i in range(200) if not (10 <= i < 20 or 50 <= i < 55)]
    torch.testing.assert_close(g.means[: len(survivors)].detach(), means_before[survivors])
    for group in optimizer.param_groups:
        p = group["params"][0]
        assert group["params"][0] is getattr(g, group["name"], p)
        moment = optimizer.state[p]["exp_avg"]
        assert moment.shape == p.shape
    moment = optimizer.state[g.means]["exp_avg"]
    torch.testing.assert_close(
        moment[: len(survivors)], torch.arange(600.0).reshape(200, 3)[survivors]
    )
    assert float(moment[len(survivors) :].abs().sum()) == 0.0
    assert avatar.prior.neighbor_index.shape[0] == g.num_gaussians
    assert state.grad_sum.shape == (g.num_gaussians,)


def test_refine_respects_the_gaussian_budget() -> None:
    avatar, optimizer = _avatar_and_optimizer(100)
    with torch.no_grad():
        avatar.gaussians.log_scales[:] = -6.0
        avatar.gaussians.opacity_logits[:] = 3.0
    state = DensifyState.empty(100, torch.device("cpu"))
    accumulate(state, torch.ones(1, 1, 100, 2), torch.ones(1, 1, 100), 64, 64)
    strategy = DensifyStrategy(max_gaussians=130)
    refine(strategy, state, avatar, optimizer, 1.0, torch.Generator().manual_seed(0))
    assert avatar.num_gaussians == 130


def test_pose_corrections_move_only_the_rows_a_step_saw() -> None:
    """Each training step sees one timestep; its optimiser must leave the other timesteps' poses
    where they are (a dense Adam drifts them along stale momentum for tens of steps)."""
    corrections = PoseCorrections(3)
    optimizer = corrections.optimizer(1e-2, 1e-3)
    tracked = HeadPose(torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3), torch.zeros(3, 3))
    for row in (0, 1, 1, 1):
        pose = corrections(tracked, torch.tensor([row]))
        loss = pose.translation.sum() + pose.rotation_wxyz[:, 1:].sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if row == 0:
            after_first = corrections.translation.weight[0].detach().clone()
    moved = corrections.translation.weight.detach()
    assert (after_first != 0).all()
    assert torch.equal(moved[0], after_first)  # untouched while row 1 was stepped
    assert (moved[1] != 0).all() and (moved[2] == 0).all()
    assert (corrections.rotation.weight.detach()[2] == 0).all()


def test_unseen_pose_rows_take_the_mean_correction_of_the_seen_ones() -> None:
    corrections = PoseCorrections(4)
    with torch.no_grad():
        corrections.translation.weight[:2] = torch.tensor([[1e-3, 0.0, 0.0], [3e-3, 2e-3, 0.0]])
        corrections.rotation.weight[:2] = torch.tensor([[0.0, 0.02, 0.0], [0.0, 0.04, 0.0]])
    filled = corrections.filled(torch.tensor([0, 1]))
    expected = torch.tensor([2e-3, 1e-3, 0.0])
    assert torch.allclose(filled.translation.weight[2:], expected.expand(2, 3))
    assert torch.allclose(filled.rotation.weight[3], torch.tensor([0.0, 0.03, 0.0]))
    assert torch.equal(filled.translation.weight[:2], corrections.translation.weight[:2])
    assert (corrections.translation.weight[2:] == 0).all()  # the original is left alone
