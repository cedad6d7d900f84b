"""From a tracked capture to a fresh avatar, its optimizer and the camera it is shown through."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from npga.bundle import FACEMESH_SPACE
from npga.cameras import Cameras
from npga.data import CaptureDataset
from npga.geometry import quat_to_rotmat
from npga.model import AvatarConfig, GaussianAvatar, HeadPose
from npga.render.projection import SH_C0
from npga.tracking.capture import CaptureTracking
from npga.train.config import TrainConfig
from npga.train.init import initial_gaussians

INITIAL_OPACITY = 0.1  # 3DGS
FEATURE_INIT_STD = 0.01


def avatar_config(config: TrainConfig) -> AvatarConfig:
    return AvatarConfig(
        expression_dim=config.expression_dim,
        feature_dim=config.feature_dim,
        hidden_dim=config.hidden_dim,
        expression_space=FACEMESH_SPACE,
        dynamics=config.dynamics,
    )


def head_pose(tracking: CaptureTracking, rows: list[int] | slice) -> HeadPose:
    """Canonical -> world poses of the tracked rows."""
    return HeadPose(
        torch.from_numpy(tracking.rotation_wxyz[rows]).float(),
        torch.from_numpy(tracking.translation[rows]).float(),
    )


def pose_matrix(tracking: CaptureTracking, timestep: int) -> torch.Tensor:
    """The 4x4 canonical -> world transform of one tracked timestep."""
    row = tracking.index(timestep)
    pose = head_pose(tracking, [row])
    matrix = torch.eye(4)
    matrix[:3, :3] = quat_to_rotmat(pose.rotation_wxyz)[0]
    matrix[:3, 3] = pose.translation[0]
    return matrix


def hull_views(
    config: TrainConfig,
    tracking: CaptureTracking,
    train_timesteps: list[int],
    cameras: list[str],
) -> list[tuple[int, str]]:
    """The (timestep, camera) images whose masks carve the initial visual hull.

    With ``config.hull_frames`` = 1 (multi-view captures): the neutral timestep from every
    training camera. With more (one-camera captures, where the head's own rotation supplies the
    views): the neutral timestep and the training timesteps whose head rotations are farthest
    apart, from every training camera.
    """
    chosen = [tracking.neutral_timestep]
    if config.hull_frames > 1:
        rows = [tracking.index(t) for t in train_timesteps]
        quats = tracking.rotation_wxyz[rows].astype(np.float64)  # [T, 4]
        quats *= np.sign(quats[:, :1] + 1e-12)

        def angle(q: np.ndarray) -> np.ndarray:  # [T] rotation angle to q, radians
            return 2 * np.arccos(np.clip(np.abs(quats @ q), 0.0, 1.0))

        distance = angle(tracking.rotation_wxyz[tracking.index(chosen[0])].astype(np.float64))
        while len(chosen) < min(config.hull_frames, len(rows)):
            far = int(np.argmax(distance))
            chosen.append(train_timesteps[far])
            distance = np.minimum(distance, angle(quats[far]))
    return [(t, camera) for t in chosen for camera in cameras]


@torch.no_grad()
def new_avatar(
    config: TrainConfig,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    views: list[tuple[int, str]],
    generator: torch.Generator,
) -> GaussianAvatar:
    """An untrained avatar: Gaussians on the visual hull carved from ``views`` (each seen from
    the canonical frame at its timestep's head pose), the tracked expression space as its prior."""
    torch.manual_seed(config.seed)  # the MLP's default initialisation
    images, masks, world_to_cam, intrinsics = [], [], [], []
    for timestep, camera in views:
        frame = dataset.frame(timestep, [camera])
        images.append(frame.images)
        if frame.masks is not None:
            masks.append(frame.masks)
        world_to_cam.append(frame.cameras.world_to_cam.float() @ pose_matrix(tracking, timestep))
        intrinsics.append(frame.cameras.intrinsics.float())
    seen_from_canonical = Cameras(
        torch.cat(world_to_cam), torch.cat(intrinsics), frame.cameras.width, frame.cameras.height
    )
    template = torch.from_numpy(tracking.neutral_landmarks).float()
    init = initial_gaussians(
        config.initial_gaussians,
        template,
        tracking.face_unit_metres,
        torch.cat(images),
        torch.cat(masks) if len(masks) == len(views) else None,
        seen_from_canonical,
        torch.eye(3),
        torch.zeros(3),
        generator,
    )
    avatar = GaussianAvatar(avatar_config(config), init.means.shape[0])
    g = avatar.gaussians
    g.means.copy_(init.means)
    g.log_scales.fill_(math.log(init.spacing))
    g.opacity_logits.fill_(math.log(INITIAL_OPACITY / (1 - INITIAL_OPACITY)))
    g.sh_coeffs.zero_()
    g.sh_coeffs[:, 0] = (init.colors - 0.5) / SH_C0
    g.features.copy_(FEATURE_INIT_STD * torch.randn(g.features.shape, generator=generator))
    avatar.prior.template.copy_(template)
    basis = tracking.basis.landmark_basis() * tracking.face_unit_metres  # [E, L, 3] metres
    avatar.prior.basis.copy_(torch.from_numpy(basis.astype(np.float32)))
    avatar.prior.rebind(g.means)
    return avatar


def default_camera(dataset: CaptureDataset, tracking: CaptureTracking) -> Cameras:
    """The front camera seen from the avatar's canonical frame at the neutral head pose: what a
    live sender at rest looks through (the server applies its relative pose on top)."""
    front = dataset.cameras.select(dataset.camera_names.index(dataset.front_camera))
    world_to_cam = front.world_to_cam.float() @ pose_matrix(tracking, tracking.neutral_timestep)
    return Cameras(world_to_cam, front.intrinsics.float(), front.width, front.height)


def learning_rate(config: TrainConfig, name: str) -> float:
    """Initial Adam step size of the parameter ``name`` (a state-dict name)."""
    rates = config.lr
    if name.startswith("gaussians."):
        return float(getattr(rates, name.removeprefix("gaussians.")))
    return rates.networks


def new_optimizer(config: TrainConfig, avatar: GaussianAvatar) -> torch.optim.Adam:
    """One parameter group per tensor, named after it (densification finds groups by name)."""
    groups = []
    for name, parameter in avatar.named_parameters():
        short = name.removeprefix("gaussians.")
        groups.append({"params": [parameter], "lr": learning_rate(config, name), "name": short})
    return torch.optim.Adam(groups, eps=1e-15)


def scheduled_rates(config: TrainConfig, step: int) -> dict[str, float]:
    """Step sizes at ``step``: means, networks and pose corrections decay exponentially, the
    rest stay."""
    rates = config.lr
    progress = min(step / max(config.iterations, 1), 1.0)
    pose_decay = rates.pose_final_fraction**progress
    return {
        "means": rates.means * rates.means_final_fraction**progress,
        "networks": rates.networks * 0.1**progress,
        "pose_rotation": rates.pose_rotation * pose_decay,
        "pose_translation": rates.pose_translation * pose_decay,
    }


def apply_rates(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    rates = scheduled_rates(config, step)
    for group in optimizer.param_groups:
        if group["name"] in rates:
            group["lr"] = rates[group["name"]]
        elif "." in group["name"]:  # a network parameter (fine.*, refiner.*)
            group["lr"] = rates["networks"]


def parameters_by_name(avatar: GaussianAvatar) -> dict[str, nn.Parameter]:
    return {name.removeprefix("gaussians."): p for name, p in avatar.named_parameters()}
