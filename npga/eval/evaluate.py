"""The evaluation protocol: self-reenactment and novel view, per camera and overall.

- **Self-reenactment**: the split's timesteps (``test``: held out from training) from every
  camera, driven by the codes and poses tracked from those frames.
- **Novel view**: the held-out cameras at (up to ``NOVEL_VIEW_TIMESTEPS`` of) the training
  timesteps: expressions seen in training, from a viewpoint never seen.

PSNR is over the whole image and, where the capture has masks, inside the head mask; SSIM over
the whole image. LPIPS is not computed: its network weights are not shipped by any package this
project installs, and nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from npga.cameras import Cameras
from npga.data import CaptureDataset
from npga.eval.metrics import masked_psnr, psnr, ssim
from npga.model import GaussianAvatar, HeadPose, InferenceCache
from npga.train.capture_tracking import CaptureTracking

NOVEL_VIEW_TIMESTEPS = 24
LPIPS_NOTE = "not computed: no LPIPS weights are available locally (never downloaded)"


@dataclass
class MetricSums:
    """Running sums of per-image metrics."""

    psnr: float = 0.0
    ssim: float = 0.0
    psnr_mask: float = 0.0
    images: int = 0
    masked: int = 0

    def add(self, psnr_value: float, ssim_value: float, mask_value: float | None) -> None:
        self.psnr += psnr_value
        self.ssim += ssim_value
        self.images += 1
        if mask_value is not None:
            self.psnr_mask += mask_value
            self.masked += 1

    def summary(self) -> dict[str, Any]:
        n = max(self.images, 1)
        return {
            "psnr": round(self.psnr / n, 3),
            "ssim": round(self.ssim / n, 4),
            "psnr_mask": round(self.psnr_mask / self.masked, 3) if self.masked else None,
            "images": self.images,
        }


@dataclass
class SplitResult:
    timesteps: list[int]
    cameras: list[str]
    per_camera: dict[str, MetricSums] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        overall = MetricSums()
        for sums in self.per_camera.values():
            overall.psnr += sums.psnr
            overall.ssim += sums.ssim
            overall.psnr_mask += sums.psnr_mask
            overall.images += sums.images
            overall.masked += sums.masked
        return {
            "timesteps": len(self.timesteps),
            "cameras": self.cameras,
            "overall": overall.summary(),
            "per_camera": {name: s.summary() for name, s in self.per_camera.items()},
        }


# (timestep, camera names, ground truth [C, H, W, 3], rendered [C, H, W, 3]) -> None
FrameSink = Callable[[int, list[str], Tensor, Tensor], None]


@torch.no_grad()
def render_timestep(
    avatar: GaussianAvatar,
    tracking: CaptureTracking,
    timestep: int,
    cameras: Cameras,  # [C]
    cache: InferenceCache | None = None,  # avatar.inference_cache(), reused across timesteps
) -> Tensor:
    """The avatar at a tracked timestep from C cameras: [C, H, W, 3] in [0, 1]."""
    row = tracking.index(timestep)
    codes = torch.from_numpy(tracking.codes[row : row + 1]).to(avatar.device)
    pose = HeadPose(
        torch.from_numpy(tracking.rotation_wxyz[row : row + 1]).to(avatar.device),
        torch.from_numpy(tracking.translation[row : row + 1]).to(avatar.device),
    )
    with torch.inference_mode():
        cache = cache or avatar.inference_cache()
        result = avatar.render(codes, cameras.to(avatar.device), pose, cache=cache)
    return result.rgb[0].clamp(0, 1).float().cpu()


def evaluate_split(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    timesteps: list[int],
    cameras: list[str],
    sink: FrameSink | None = None,
) -> SplitResult:
    """Metrics of every (timestep, camera) pair whose timestep has a tracked face."""
    tracked = set(tracking.timesteps.tolist())
    usable = [t for t in timesteps if t in tracked]
    result = SplitResult(usable, cameras, {name: MetricSums() for name in cameras})
    cache = avatar.inference_cache()
    for timestep in usable:
        frame = dataset.frame(timestep, cameras)
        rendered = render_timestep(avatar, tracking, timestep, frame.cameras, cache)
        psnrs = psnr(rendered, frame.images)
        ssims = ssim(rendered, frame.images)
        masked = (
            masked_psnr(rendered, frame.images, frame.masks) if frame.masks is not None else None
        )
        for i, name in enumerate(cameras):
            mask_value = float(masked[i]) if masked is not None else None
            result.per_camera[name].add(float(psnrs[i]), float(ssims[i]), mask_value)
        if sink is not None:
            sink(timestep, cameras, frame.images, rendered)
    return result


def evaluate(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    split: str = "test",
    sinks: Mapping[str, FrameSink] | None = None,
) -> dict[str, Any]:
    """The whole protocol (see the module doc) as a JSON-ready report."""
    splits = dataset.splits
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    timesteps = splits.test_timesteps if split == "test" else splits.train_timesteps
    if not timesteps:
        raise ValueError(f"{dataset.root}: splits.json has no {split} timesteps")
    sinks = sinks or {}
    report: dict[str, Any] = {
        "split": split,
        "self_reenactment": evaluate_split(
            avatar, dataset, tracking, timesteps, dataset.camera_names, sinks.get("self")
        ).summary(),
    }
    held_out = [c for c in splits.test_cameras if c in dataset.camera_names]
    if held_out:
        train = splits.train_timesteps
        chosen = np.linspace(0, len(train) - 1, min(NOVEL_VIEW_TIMESTEPS, len(train)))
        novel_timesteps = sorted({train[round(float(i))] for i in chosen})
        report["novel_view"] = evaluate_split(
            avatar, dataset, tracking, novel_timesteps, held_out, sinks.get("novel")
        ).summary()
    report["lpips"] = LPIPS_NOTE
    return report
