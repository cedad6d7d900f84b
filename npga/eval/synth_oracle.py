"""Ground-truth bounds on a synthetic capture (``npga oracle``).

A capture written by ``npga synth`` keeps its rig (``rig.npz``) and settings (``synth.json``), so
the true head can be re-rendered anywhere. Four figures tell what limits an avatar trained on it:

- **pose error**: mean distance (mm) between the true landmarks and where the head poses under
  test (tracked, refined by training, or fitted by ``npga eval --fit-poses``) put them, after
  the one rigid map from the rig's head frame to the poses' canonical frame that fits the
  training timesteps best (an avatar's canonical frame absorbs that map);
- **true head at the poses**: PSNR of the true head (true expression and appearance) rendered
  at those poses against the capture. An avatar driven by these poses can beat it only by
  blurring (a blurred misaligned image has a lower squared error than a sharp one);
- **neutral head at the true poses**: PSNR of the true head with every rig parameter at zero,
  at the true poses: a perfect avatar without expression dynamics (what ``--model static``
  aims at);
- **expression error by parameter**: for each rig parameter, the mean squared error between the
  true head and the true head with only that parameter set to its training mean (true poses).
  It says which expressions the split's error comes from, i.e. what an avatar's dynamics must
  get right there to beat a static head.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npga.data import CaptureDataset
from npga.data.synth.head import PARAMETERS, HeadModel, build_head, pose_head
from npga.data.synth.raster import render_views
from npga.data.synth.rig import animate, vertex_light
from npga.data.synth.writer import RIG_FILE, SETTINGS_FILE, SUBJECTS, SynthConfig
from npga.geometry import quat_to_rotmat
from npga.photometric import mse, psnr
from npga.tracking.capture import CaptureTracking
from npga.tracking.procrustes import Similarity, weighted_procrustes

NUM_LANDMARKS = 478  # the first vertices of the synthetic head are its Face Mesh landmarks


@dataclass(frozen=True)
class SynthTruth:
    """What ``npga synth`` rendered a capture from."""

    head: HeadModel
    params: np.ndarray  # [T, P] rig parameters
    rotations: np.ndarray  # [T, 3, 3] head -> world
    translations: np.ndarray  # [T, 3] metres

    def world_vertices(self, timestep: int, params: np.ndarray | None = None) -> np.ndarray:
        """The head's vertices [V, 3] in the world at ``timestep`` (its own rig parameters
        unless ``params`` [P] is given)."""
        local = pose_head(self.head, self.params[timestep] if params is None else params)
        return local @ self.rotations[timestep].T + self.translations[timestep]


def load_truth(capture: Path) -> SynthTruth:
    """The rig of a ``npga synth`` capture; ValueError when ``capture`` is not one."""
    settings = capture / SETTINGS_FILE
    if not settings.is_file() or not (capture / RIG_FILE).is_file():
        raise ValueError(
            f"{capture}: not a synthetic capture ({SETTINGS_FILE} and {RIG_FILE} are written by "
            "npga synth)"
        )
    try:
        config = SynthConfig(**json.loads(settings.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{settings}: unreadable synth settings ({error})") from None
    if config.subject not in SUBJECTS:
        raise ValueError(f"{settings}: unknown subject {config.subject!r}")
    from skimage import data

    params, rotations_wxyz, translations = animate(config.frames, config.seed, config.head_motion)
    rotations = quat_to_rotmat(torch.from_numpy(rotations_wxyz).double()).numpy()
    return SynthTruth(build_head(data.astronaut()), params, rotations, translations.astype(float))


def tracked_poses(tracking: CaptureTracking) -> tuple[np.ndarray, np.ndarray]:
    """Canonical -> world rotations [T, 3, 3] and translations [T, 3] of the tracked rows."""
    rotations = quat_to_rotmat(torch.from_numpy(tracking.rotation_wxyz).double()).numpy()
    return rotations, tracking.translation.astype(float)


def canonical_alignment(
    truth: SynthTruth, tracking: CaptureTracking, timesteps: list[int]
) -> Similarity:
    """The rigid map from the rig's head frame to the tracking's canonical frame that best
    explains the tracked poses of ``timesteps`` (least squares over the neutral landmarks)."""
    neutral = pose_head(truth.head, np.zeros_like(truth.params[0]))[:NUM_LANDMARKS]  # [L, 3]
    rotations, translations = tracked_poses(tracking)
    sources, targets = [], []
    for timestep in timesteps:
        row = tracking.index(timestep)
        world = neutral @ truth.rotations[timestep].T + truth.translations[timestep]
        sources.append(neutral)
        targets.append((world - translations[row]) @ rotations[row])  # tracked canonical frame
    points = np.concatenate(sources)
    return weighted_procrustes(points, np.concatenate(targets), np.ones(len(points)))


def _render(truth: SynthTruth, vertices: np.ndarray, params: np.ndarray, cameras: Any) -> Any:
    """The true head's vertices [V, 3] from every camera: [C, H, W, 3] float in [0, 1]."""
    shade = vertex_light(truth.head, vertices, params)
    rgb, _ = render_views(
        vertices, truth.head.triangles, truth.head.uvs, shade, truth.head.texture, cameras
    )
    return torch.from_numpy(rgb).float() / 255.0


def split_bounds(
    truth: SynthTruth,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    alignment: Similarity,
    timesteps: list[int],
    mean_params: np.ndarray,  # [P] the rig's mean over the training timesteps
) -> dict[str, Any]:
    """The four figures of the module doc over ``timesteps`` x every camera of the capture."""
    rotations, translations = tracked_poses(tracking)
    errors, at_tracked, static = [], [], []
    by_parameter = np.zeros(len(PARAMETERS))
    for timestep in timesteps:
        row = tracking.index(timestep)
        params = truth.params[timestep]
        local = alignment.apply(pose_head(truth.head, params))  # tracked canonical frame
        placed = local @ rotations[row].T + translations[row]
        true = truth.world_vertices(timestep)
        errors.append(np.linalg.norm(placed - true, axis=1)[:NUM_LANDMARKS].mean() * 1000)
        frame = dataset.frame(timestep, dataset.camera_names)
        at_tracked.append(psnr(_render(truth, placed, params, frame.cameras), frame.images))
        neutral_params = np.zeros_like(params)
        neutral = truth.world_vertices(timestep, neutral_params)
        static.append(psnr(_render(truth, neutral, neutral_params, frame.cameras), frame.images))
        for index in range(len(PARAMETERS)):
            others = params.copy()
            others[index] = mean_params[index]
            vertices = truth.world_vertices(timestep, others)
            rendered = _render(truth, vertices, others, frame.cameras)
            by_parameter[index] += float(mse(rendered, frame.images).mean()) / len(timesteps)
    return {
        "timesteps": len(timesteps),
        "pose_error_mm": round(float(np.mean(errors)), 2),
        "true_head_at_poses_psnr": round(float(torch.cat(at_tracked).mean()), 3),
        "neutral_head_at_true_poses_psnr": round(float(torch.cat(static).mean()), 3),
        "expression_mse_by_parameter": {
            name: float(f"{value:.3g}")
            for name, value in zip(PARAMETERS, by_parameter, strict=True)
        },
    }


def oracle_report(
    capture: Path,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    every: int = 1,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The bounds for the training and the test timesteps (every ``every``-th tracked one)."""
    truth = load_truth(capture)
    tracked = set(tracking.timesteps.tolist())
    splits = {
        "train": [t for t in dataset.splits.train_timesteps if t in tracked],
        "test": [t for t in dataset.splits.test_timesteps if t in tracked],
    }
    if not splits["train"]:
        raise ValueError(f"{capture}: no tracked training timesteps to align the frames with")
    alignment = canonical_alignment(truth, tracking, splits["train"])
    mean_params = truth.params[splits["train"]].mean(axis=0)
    report: dict[str, Any] = {}
    for name, timesteps in splits.items():
        if timesteps:
            report[name] = split_bounds(
                truth, dataset, tracking, alignment, timesteps[::every], mean_params
            )
        if progress is not None:
            progress(1)
    return report
