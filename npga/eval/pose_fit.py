"""Photometric head-pose fitting of held-out timesteps (``npga eval --fit-poses STEPS``).

Tracked poses of held-out frames carry Face Mesh's expression-dependent bias (see
docs/training.md). Multi-view evaluations of head avatars track their test frames
photometrically; this does the same for the pose only (6 numbers per timestep): the avatar and
the expression code stay fixed, and only the *training* cameras are used, so held-out cameras
stay unseen. Reports say which poses were used.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from npga.data import CaptureDataset
from npga.model import GaussianAvatar, HeadPose, PoseCorrections, pose_rigidly
from npga.photometric import photometric_loss
from npga.render import render
from npga.tracking.capture import CaptureTracking

FIT_LEARNING_RATES = (2e-3, 2e-4)  # rotation (radians), translation (metres), at the start
FIT_FINAL_FRACTION = 0.05  # the rates decay exponentially to this share over the steps
CAMERAS_PER_STEP = 2
DSSIM_WEIGHT = 0.2


def fit_poses(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    timesteps: list[int],
    steps: int,
    seed: int = 0,
    cameras: list[str] | None = None,
) -> CaptureTracking:
    """``tracking`` with the poses of ``timesteps`` fitted to the images of ``cameras`` (default:
    the training cameras)."""
    if cameras is None:
        cameras = [c for c in dataset.camera_names if c not in dataset.splits.test_cameras]
    rotation = tracking.rotation_wxyz.copy()
    translation = tracking.translation.copy()
    generator = torch.Generator().manual_seed(seed)
    avatar.requires_grad_(False)
    try:
        for timestep in timesteps:
            row = tracking.index(timestep)
            fitted = _fit_one(avatar, dataset, tracking, timestep, row, cameras, steps, generator)
            rotation[row], translation[row] = fitted
    finally:
        avatar.requires_grad_(True)
    return replace(tracking, rotation_wxyz=rotation, translation=translation)


def _fit_one(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    timestep: int,
    row: int,
    cameras: list[str],
    steps: int,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted rotation wxyz [4] and translation [3] of one timestep."""
    device = avatar.device
    correction = PoseCorrections(1).to(device)
    optimizer = correction.optimizer(*FIT_LEARNING_RATES)
    initial_rates = [group["lr"] for group in optimizer.param_groups]
    codes = torch.from_numpy(tracking.codes[row : row + 1]).to(device)
    tracked = HeadPose(
        torch.from_numpy(tracking.rotation_wxyz[row : row + 1]).to(device),
        torch.from_numpy(tracking.translation[row : row + 1]).to(device),
    )
    only = torch.zeros(1, dtype=torch.long, device=device)
    with torch.no_grad():  # the expression is fixed: deform once, then only the pose moves
        identity = HeadPose(codes.new_tensor([[1.0, 0.0, 0.0, 0.0]]), codes.new_zeros(1, 3))
        canonical = avatar.deform(codes, identity, avatar.inference_cache())
    for step in range(steps):
        decay = FIT_FINAL_FRACTION ** (step / steps)
        for group, rate in zip(optimizer.param_groups, initial_rates, strict=True):
            group["lr"] = rate * decay
        pick = torch.randperm(len(cameras), generator=generator)[:CAMERAS_PER_STEP]
        frame = dataset.frame(timestep, [cameras[int(i)] for i in pick])
        posed = pose_rigidly(canonical, correction(tracked, only))
        result = render(posed, frame.cameras.to(device), background=(1.0, 1.0, 1.0))
        loss = photometric_loss(result.rgb[0], frame.images.to(device), DSSIM_WEIGHT)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pose = correction(tracked, only)
    return pose.rotation_wxyz[0].cpu().numpy(), pose.translation[0].cpu().numpy()
