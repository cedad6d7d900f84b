"""Hyper-parameters of ``npga train`` (one frozen dataclass, parsed only by the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from npga.model.config import DYNAMICS
from npga.train.densify import DensifyStrategy


@dataclass(frozen=True)
class LearningRates:
    """Adam step sizes per parameter kind (3DGS's values where 3DGS has the parameter)."""

    means: float = 2e-4  # metres; decays exponentially to means * means_final_fraction
    means_final_fraction: float = 0.01
    quats_wxyz: float = 1e-3
    log_scales: float = 5e-3
    opacity_logits: float = 5e-2
    sh_coeffs: float = 2.5e-3
    features: float = 2.5e-3
    networks: float = 1e-3  # fine MLP (and refiner); decays to networks * 0.1
    pose_rotation: float = 2e-3  # radians, per-timestep pose corrections (lazy Adam)
    pose_translation: float = 2e-4  # metres
    pose_final_fraction: float = 0.05  # both decay exponentially to this share


@dataclass(frozen=True)
class LossWeights:
    dssim: float = 0.2  # L = (1 - dssim) * L1 + dssim * D-SSIM, as in 3DGS
    mask: float = 0.1  # |alpha - mask|, when the capture has masks
    feature_laplacian: float = 1.0  # smoothness of the latent features f_i over the kNN graph
    dynamics_laplacian: float = 10.0  # smoothness of the predicted fine residuals
    offset: float = 1.0  # |fine position residual|^2 in face units: the prior explains motion
    scale: float = 10.0  # Gaussians larger than max_scale_face_units (in face units)
    max_scale_face_units: float = 0.15


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 6000
    resolution: int = 256  # image width the capture is loaded at
    dynamics: str = "npga"  # npga | coarse | static (the ablations)
    initial_gaussians: int = 20_000
    expression_dim: int = 32  # E of the fitted expression basis
    feature_dim: int = 32
    hidden_dim: int = 64
    cameras_per_step: int = 1  # images per step (3DGS: 1); each step is one timestep
    laplacian_neighbors: int = 8
    knn_every: int = 500  # rebuild the Laplacian's kNN graph (Gaussians move and multiply)
    checkpoint_every: int = 500
    refine_poses: bool = True  # learn per-timestep corrections of the tracked head poses
    hull_frames: int = 1  # timesteps (spread over head rotations) whose masks carve the hull
    seed: int = 0
    lr: LearningRates = field(default_factory=LearningRates)
    loss: LossWeights = field(default_factory=LossWeights)
    densify: DensifyStrategy = field(default_factory=DensifyStrategy)

    def __post_init__(self) -> None:
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"model must be one of {', '.join(DYNAMICS)}, got {self.dynamics!r}")
        for name in (
            "iterations",
            "resolution",
            "initial_gaussians",
            "expression_dim",
            "hull_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cameras_per_step < 1:
            raise ValueError("cameras_per_step must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
