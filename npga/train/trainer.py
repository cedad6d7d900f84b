"""The training loop of ``npga train``: one :class:`Trainer` per run directory.

A run directory holds the capture tracking (``tracking.npz``, ``basis.json``), the checkpoint
(``checkpoint/``) and, at the end, the avatar bundle (``avatar.safetensors``, ``avatar.json``).
Each step renders one training timestep from ``cameras_per_step`` random training cameras;
the sampler has its own seeded generator, saved in the checkpoint, so a resumed run continues
the exact sequence of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from npga.bundle import save_bundle
from npga.data import CaptureDataset
from npga.model import GaussianAvatar, PoseCorrections, knn_graph, laplacian_loss
from npga.photometric import photometric_loss
from npga.render import render
from npga.tracking.capture import REFINED_TRACKING_FILE, CaptureTracking
from npga.train import checkpoint as ckpt
from npga.train.config import TrainConfig
from npga.train.densify import DensifyState, accumulate, refine
from npga.train.losses import dynamics_laplacian, offset_penalty, scale_penalty
from npga.train.setup import (
    apply_rates,
    avatar_config,
    default_camera,
    head_pose,
    hull_views,
    new_avatar,
    new_optimizer,
)

BACKGROUND = (1.0, 1.0, 1.0)
KNN_CHUNK = 1024
SCENE_EXTENT_FACE_UNITS = 2.5  # the head's size, for densification's scale thresholds


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """torch.use_deterministic_algorithms(enabled) inside the block, the previous mode after it."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@dataclass(frozen=True)
class StepStats:
    step: int
    loss: float
    psnr: float  # of this step's training images
    num_gaussians: int


class Trainer:
    """Owns the avatar, optimizer and training state of one run (see the module doc)."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: CaptureDataset,
        tracking: CaptureTracking,
        out: Path,
        *,
        device: torch.device | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.device = device or torch.device("cpu")
        self.dataset = dataset
        self.tracking = tracking
        self.out = out
        self.face_unit = tracking.face_unit_metres
        self.scene_extent = SCENE_EXTENT_FACE_UNITS * self.face_unit
        held_out = set(dataset.splits.test_cameras)
        self.train_cameras = [c for c in dataset.camera_names if c not in held_out]
        tracked = set(tracking.timesteps.tolist())
        self.train_timesteps = [t for t in dataset.splits.train_timesteps if t in tracked]
        if not self.train_cameras or not self.train_timesteps:
            raise ValueError(f"{dataset.root}: no training cameras or no tracked training frames")
        self.generator = torch.Generator().manual_seed(config.seed)
        if resume:
            tensors, metadata = ckpt.read_checkpoint(out)
            if metadata.get("config") != config.to_dict():
                raise ValueError(
                    f"{ckpt.checkpoint_dir(out)}: the checkpoint was trained with other settings; "
                    "resume with the same options"
                )
            num_gaussians = tensors["model.gaussians.means"].shape[0]
            self.avatar = GaussianAvatar(avatar_config(config), num_gaussians).to(self.device)
            self._setup_poses_and_optimizer()
            tensors = {k: v.to(self.device) for k, v in tensors.items()}
            state = ckpt.restore(tensors, metadata, self._modules(), self._optimizers())
            self.generator.set_state(state.rng.cpu())
        else:
            views = hull_views(config, tracking, self.train_timesteps, self.train_cameras)
            avatar = new_avatar(config, dataset, tracking, views, self.generator)
            self.avatar = avatar.to(self.device)
            self._setup_poses_and_optimizer()
            n = self.avatar.num_gaussians
            state = ckpt.TrainingState(
                step=0,
                knn=self._knn(),
                densify=DensifyState.empty(n, self.avatar.device),
                rng=self.generator.get_state(),
                history=[],
            )
        self.state = state

    @property
    def step(self) -> int:
        return self.state.step

    def _setup_poses_and_optimizer(self) -> None:
        self.poses = PoseCorrections(len(self.tracking.timesteps)).to(self.device)
        self.optimizer = new_optimizer(self.config, self.avatar)
        rates = self.config.lr
        self.pose_optimizer = (
            self.poses.optimizer(rates.pose_rotation, rates.pose_translation)
            if self.config.refine_poses
            else None
        )

    def _modules(self) -> dict[str, nn.Module]:
        return {"model": self.avatar, "poses": self.poses}

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer] + ([self.pose_optimizer] if self.pose_optimizer else [])

    @torch.no_grad()
    def refined_tracking(self) -> CaptureTracking:
        """The run's tracking with the learnt pose corrections applied. The rows that training
        never saw (held-out timesteps) get the training rows' mean correction: the avatar's
        canonical frame has followed that common part of the corrections."""
        trained = torch.tensor([self.tracking.index(t) for t in self.train_timesteps])
        corrections = self.poses.filled(trained.to(self.device))
        rows = torch.arange(len(self.tracking.timesteps), device=self.device)
        pose = corrections(head_pose(self.tracking, slice(None)).to(self.device), rows)
        return replace(
            self.tracking,
            rotation_wxyz=pose.rotation_wxyz.cpu().numpy().astype(np.float32),
            translation=pose.translation.cpu().numpy().astype(np.float32),
        )

    def _knn(self) -> torch.Tensor:
        means = self.avatar.gaussians.means.detach()
        return knn_graph(means, self.config.laplacian_neighbors, chunk=KNN_CHUNK)

    def train_step(self) -> StepStats:
        """One optimisation step. Deterministic on the CPU: torch's scatter-adds (the backward
        of the Laplacian's and the prior's gathers) run in their deterministic mode. Not on CUDA:
        gsplat's backward accumulates with atomics, and cuBLAS would refuse the mode unless
        CUBLAS_WORKSPACE_CONFIG is set before the process starts."""
        with deterministic_algorithms(self.device.type == "cpu"):
            return self._train_step()

    def _train_step(self) -> StepStats:
        config, avatar, weights = self.config, self.avatar, self.config.loss
        g = avatar.gaussians
        for optimizer in self._optimizers():
            apply_rates(optimizer, config, self.state.step)
        t_index = int(torch.randint(len(self.train_timesteps), (1,), generator=self.generator))
        timestep = self.train_timesteps[t_index]
        pick = torch.randperm(len(self.train_cameras), generator=self.generator)
        names = [self.train_cameras[int(i)] for i in pick[: config.cameras_per_step]]
        frame = self.dataset.frame(timestep, names)
        images, cameras = frame.images.to(self.device), frame.cameras.to(self.device)
        masks = frame.masks.to(self.device) if frame.masks is not None else None
        row = self.tracking.index(timestep)
        codes = torch.from_numpy(self.tracking.codes[row : row + 1]).to(self.device)  # [1, E]
        pose = head_pose(self.tracking, [row]).to(self.device)
        pose = self.poses(pose, torch.tensor([row], device=self.device))
        posed, fine = avatar.deform_with_residuals(codes, pose)
        result = render(posed, cameras, background=BACKGROUND)
        result.means2d.retain_grad()
        rgb = result.rgb[0]  # [C, H, W, 3]
        loss = photometric_loss(rgb, images, weights.dssim)
        if masks is not None:
            loss = loss + weights.mask * (result.alpha[0] - masks).abs().mean()
        if fine is not None:
            loss = loss + weights.dynamics_laplacian * dynamics_laplacian(
                fine, self.state.knn, self.face_unit
            )
            loss = loss + weights.offset * offset_penalty(fine, self.face_unit)
            loss = loss + weights.feature_laplacian * laplacian_loss(g.features, self.state.knn)
        max_scale = weights.max_scale_face_units * self.face_unit
        loss = loss + weights.scale * scale_penalty(g.log_scales, max_scale) / self.face_unit
        for optimizer in self._optimizers():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        assert result.means2d.grad is not None
        accumulate(
            self.state.densify, result.means2d.grad, result.radii, cameras.width, cameras.height,
        )  # fmt: skip
        for optimizer in self._optimizers():
            optimizer.step()
        self.state.step += 1
        if config.densify.refines_at(self.state.step):
            refine(
                config.densify, self.state.densify, avatar, self.optimizer, self.scene_extent,
                self.generator,
            )  # fmt: skip
            self.state.knn = self._knn()
        elif self.state.step % config.knn_every == 0:
            self.state.knn = self._knn()
        mse = float((rgb.detach() - images).pow(2).mean())
        return StepStats(
            self.state.step,
            float(loss.detach()),
            -10 * math.log10(max(mse, 1e-12)),
            g.num_gaussians,
        )

    def save_checkpoint(self) -> None:
        self.state.rng = self.generator.get_state()
        ckpt.save_checkpoint(
            self.out, self._modules(), self._optimizers(), self.state, self.config.to_dict()
        )

    def run(
        self,
        on_step: Callable[[StepStats], None] | None = None,
        checkpoint_seconds: float | None = None,
    ) -> float:
        """Train up to ``config.iterations``; checkpoints every ``config.checkpoint_every``
        steps, also every ``checkpoint_seconds`` of wall time if given (a process killed
        outright loses at most that much), and when interrupted.

        Returns the seconds spent in this call.
        """
        start = last = saved = time.perf_counter()
        try:
            while self.state.step < self.config.iterations:
                stats = self.train_step()
                if stats.step % 50 == 0:
                    self.state.history.append(
                        {"step": stats.step, "loss": stats.loss, "psnr": stats.psnr}
                    )
                if on_step is not None:
                    on_step(stats)
                overdue = checkpoint_seconds is not None and (
                    time.perf_counter() - saved >= checkpoint_seconds
                )
                if stats.step % self.config.checkpoint_every == 0 or overdue:
                    last = saved = self._account(last)
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self._account(last)
            self.save_checkpoint()
            raise
        self._account(last)
        return time.perf_counter() - start

    def _account(self, since: float) -> float:
        """Add the time since ``since`` to the run's training time; returns now."""
        now = time.perf_counter()
        self.state.seconds += now - since
        return now

    def write_bundle(self, summary: dict[str, Any]) -> Path:
        """The avatar bundle and the refined tracking (which ``npga eval`` reads) into the run."""
        tracking = self.refined_tracking()
        tracking.save(self.out, REFINED_TRACKING_FILE)
        camera = default_camera(self.dataset, tracking)
        return save_bundle(self.out, self.avatar, camera, summary, tracking.calibration)
