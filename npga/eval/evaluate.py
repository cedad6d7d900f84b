"""The evaluation protocol: self-reenactment and novel view, per camera and overall.

- **Self-reenactment**: the split's timesteps (``test``: held out from training) from every
  camera, driven by the codes and poses tracked from those frames.
- **Novel view**: the held-out cameras at (up to ``NOVEL_VIEW_TIMESTEPS`` of) the training
  timesteps: expressions seen in training, from a viewpoint never seen.

Per image: PSNR over the whole image, inside the head mask (where the capture has masks) and in
the mouth and eye regions (npga/eval/regions.py); SSIM over the whole image; FLIP if asked. The
same avatar driven by its neutral code is measured beside it, and with a face template the
expression and pose error are read in one camera (npga/eval/expression.py). LPIPS is not
computed: its network weights are not shipped by any package this project installs, and nothing
is downloaded at run time. Evaluating on other captures: npga/eval/run.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.data import CaptureDataset
from npga.eval.expression import ExpressionScore, read_face, unavailable
from npga.eval.regions import project_landmarks, region_masks
from npga.model import GaussianAvatar, HeadPose, InferenceCache
from npga.photometric import masked_psnr, psnr, ssim
from npga.tracking.capture import CaptureTracking
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.template import FaceTemplate

NOVEL_VIEW_TIMESTEPS = 24
LPIPS_NOTE = "not computed: no LPIPS weights are available locally (never downloaded)"
NEUTRAL_KEYS = ("psnr", "psnr_mask", "psnr_mouth", "psnr_eyes")  # reported for the baseline


def _mean(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per key, the mean of the rows' values that are not None (None where none is)."""
    means: dict[str, float | None] = {}
    for key in rows[0] if rows else []:
        values = [float(v) for row in rows if (v := row[key]) is not None]
        places = 4 if key in ("ssim", "flip") else 3
        means[key] = round(float(np.mean(values)), places) if values else None
    return means


@dataclass
class SplitResult:
    """Per-image metrics of one split, by camera, and its expression score."""

    timesteps: list[int]
    cameras: list[str]
    rows: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)
    neutral_rows: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)
    expression: ExpressionScore | None = None
    expression_missing: str | None = None  # why the expression error could not be measured

    def summary(self) -> dict[str, Any]:
        every = [row for name in self.cameras for row in self.rows[name]]
        neutral = [row for name in self.cameras for row in self.neutral_rows[name]]
        report: dict[str, Any] = {
            "timesteps": len(self.timesteps),
            "cameras": self.cameras,
            "images": len(every),
            **_mean(every),
            "neutral_driven": {k: v for k, v in _mean(neutral).items() if k in NEUTRAL_KEYS},
        }
        if self.expression is not None:
            report |= self.expression.summary()
        elif self.expression_missing is not None:
            report |= unavailable(self.expression_missing)
        report["per_camera"] = {name: _mean(self.rows[name]) for name in self.cameras}
        return report


# (timestep, camera names, ground truth [C, H, W, 3], rendered [C, H, W, 3]) -> None
FrameSink = Callable[[int, list[str], Tensor, Tensor], None]


def neutral_driven(tracking: CaptureTracking) -> CaptureTracking:
    """The same frames driven by the neutral code (zero): the baseline of every metric."""
    return replace(tracking, codes=np.zeros_like(tracking.codes))


def _drive(
    tracking: CaptureTracking, timestep: int, device: torch.device
) -> tuple[Tensor, HeadPose]:
    """Codes [1, E] and pose of a tracked timestep."""
    row = tracking.index(timestep)
    codes = torch.from_numpy(tracking.codes[row : row + 1]).to(device)
    pose = HeadPose(
        torch.from_numpy(tracking.rotation_wxyz[row : row + 1]).to(device),
        torch.from_numpy(tracking.translation[row : row + 1]).to(device),
    )
    return codes, pose


@torch.no_grad()
def render_timestep(
    avatar: GaussianAvatar,
    tracking: CaptureTracking,
    timestep: int,
    cameras: Cameras,  # [C]
    cache: InferenceCache | None = None,  # avatar.inference_cache(), reused across timesteps
) -> Tensor:
    """The avatar at a tracked timestep from C cameras: [C, H, W, 3] in [0, 1]."""
    codes, pose = _drive(tracking, timestep, avatar.device)
    with torch.inference_mode():
        cache = cache or avatar.inference_cache()
        result = avatar.render(codes, cameras.to(avatar.device), pose, cache=cache)
    return result.rgb[0].clamp(0, 1).float().cpu()


def image_metrics(
    rendered: Tensor,  # [H, W, 3]
    truth: Tensor,  # [H, W, 3]
    head: Tensor | None,  # [H, W, 1] head mask, if the capture has one
    regions: dict[str, Tensor],  # name -> [H, W, 1] (regions.region_masks)
    flip: bool,
) -> dict[str, float | None]:
    """PSNR over the image, the head and each region, SSIM, and (if asked) mean FLIP."""
    row: dict[str, float | None] = {
        "psnr": float(psnr(rendered, truth)),
        "ssim": float(ssim(rendered[None], truth[None])[0]),
        "psnr_mask": float(masked_psnr(rendered, truth, head)) if head is not None else None,
    }
    for name, mask in regions.items():
        row[f"psnr_{name}"] = float(masked_psnr(rendered, truth, mask)) if mask.any() else None
    if flip:
        row["flip"] = flip_error(rendered, truth)
    return row


def flip_error(rendered: Tensor, truth: Tensor) -> float:
    """Mean FLIP (NVIDIA's perceptual difference, LDR, 67 pixels per degree) of [H, W, 3]."""
    import flip_evaluator

    _, mean, _ = flip_evaluator.evaluate(
        truth.numpy().astype(np.float32),
        rendered.numpy().astype(np.float32),
        "LDR",
        applyMagma=False,
    )
    return float(mean)


@dataclass(frozen=True)
class ExpressionSetup:
    """What the expression and pose error need: the camera they are read in and the tracker."""

    camera: str
    template: FaceTemplate


def evaluate_split(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    timesteps: list[int],
    cameras: list[str],
    *,
    expression: ExpressionSetup | None = None,
    flip: bool = False,
    sink: FrameSink | None = None,
) -> SplitResult:
    """Metrics of every (timestep, camera) pair whose timestep has a tracked face, of the avatar
    and of the avatar driven by its neutral code; with ``expression``, the expression and pose
    error in its camera (one of ``cameras``)."""
    tracked = set(tracking.timesteps.tolist())
    usable = [t for t in timesteps if t in tracked]
    result = SplitResult(
        usable, cameras, {name: [] for name in cameras}, {name: [] for name in cameras}
    )
    cache = avatar.inference_cache()
    baseline = neutral_driven(tracking)
    with ExitStack() as stack:
        facemesh = None
        if expression is not None:
            facemesh = stack.enter_context(FaceMeshTracker(static_images=True))
            try:
                result.expression = _expression_score(
                    avatar, dataset, tracking, expression, facemesh, cache
                )
            except ValueError as error:
                result.expression_missing = str(error)
        for timestep in usable:
            frame = dataset.frame(timestep, cameras)
            rendered = render_timestep(avatar, tracking, timestep, frame.cameras, cache)
            neutral = render_timestep(avatar, baseline, timestep, frame.cameras, cache)
            codes, pose = _drive(tracking, timestep, avatar.device)
            points = project_landmarks(avatar, codes, pose, frame.cameras)  # [C, L, 2]
            height, width = rendered.shape[1:3]
            for i, name in enumerate(cameras):
                regions = region_masks(points[i], height, width)
                head = frame.masks[i] if frame.masks is not None else None
                truth = frame.images[i]
                result.rows[name].append(image_metrics(rendered[i], truth, head, regions, flip))
                result.neutral_rows[name].append(
                    image_metrics(neutral[i], truth, head, regions, flip=False)
                )
            if expression is not None and facemesh is not None and result.expression:
                i = cameras.index(expression.camera)
                result.expression.add(
                    read_face(facemesh, frame.images[i], expression.template),
                    read_face(facemesh, rendered[i], expression.template),
                    read_face(facemesh, neutral[i], expression.template),
                )
            if sink is not None:
                sink(timestep, cameras, frame.images, rendered)
    return result


def _expression_score(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    setup: ExpressionSetup,
    facemesh: FaceMeshTracker,
    cache: InferenceCache,
) -> ExpressionScore:
    """The score with its neutral references: the driver and the avatar at the neutral frame."""
    neutral = tracking.neutral_timestep
    frame = dataset.frame(neutral, [setup.camera])
    rendered = render_timestep(avatar, tracking, neutral, frame.cameras, cache)[0]
    truth = read_face(facemesh, frame.images[0], setup.template)
    render = read_face(facemesh, rendered, setup.template)
    if truth is None or render is None:
        side = "the image" if truth is None else "the avatar's render"
        raise ValueError(
            f"Face Mesh finds no face in {side} of camera {setup.camera!r} at the neutral frame "
            f"(timestep {neutral})"
        )
    return ExpressionScore(truth, render)


def evenly_spread(values: Sequence[int], count: int) -> list[int]:
    """Up to ``count`` of ``values``, evenly spread from the first to the last, sorted."""
    picks = np.linspace(0, len(values) - 1, min(count, len(values)))
    return sorted({int(values[round(float(i))]) for i in picks})


def novel_view_timesteps(dataset: CaptureDataset) -> list[int]:
    """Up to ``NOVEL_VIEW_TIMESTEPS`` training timesteps, evenly spread."""
    return evenly_spread(dataset.splits.train_timesteps, NOVEL_VIEW_TIMESTEPS)


def evaluate(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    split: str = "test",
    sinks: Mapping[str, FrameSink] | None = None,
    *,
    template: FaceTemplate | None = None,
    flip: bool = False,
) -> dict[str, Any]:
    """The whole protocol (see the module doc) as a JSON-ready report. With ``template``, the
    expression and pose error too (self-reenactment: the front camera; novel view: the first
    held-out camera)."""
    splits = dataset.splits
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    timesteps = splits.test_timesteps if split == "test" else splits.train_timesteps
    if not timesteps:
        raise ValueError(f"{dataset.root}: splits.json has no {split} timesteps")
    sinks = sinks or {}

    def setup(camera: str) -> ExpressionSetup | None:
        return ExpressionSetup(camera, template) if template is not None else None

    report: dict[str, Any] = {
        "split": split,
        "self_reenactment": evaluate_split(
            avatar,
            dataset,
            tracking,
            timesteps,
            dataset.camera_names,
            expression=setup(dataset.front_camera),
            flip=flip,
            sink=sinks.get("self"),
        ).summary(),
    }
    held_out = [c for c in splits.test_cameras if c in dataset.camera_names]
    if held_out:
        report["novel_view"] = evaluate_split(
            avatar,
            dataset,
            tracking,
            novel_view_timesteps(dataset),
            held_out,
            expression=setup(held_out[0]),
            flip=flip,
            sink=sinks.get("novel"),
        ).summary()
    report["lpips"] = LPIPS_NOTE
    return report
