"""``npga bench render``: time deformation and rasterisation of a synthetic avatar."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from npga.model import AvatarConfig, HeadPose, default_camera, synthetic_avatar
from npga.recording import synthetic_recording
from npga.render import Backend, render


@dataclass(frozen=True)
class RenderBenchConfig:
    gaussians: int = 20_000
    resolution: int = 256  # square images; ``width`` overrides the width
    width: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    frames: int = 30  # timed frames
    warmup: int = 3  # untimed frames (JIT compilation, caches)
    batch: int = 1  # expressions rendered per call
    naive_frames: int = 3  # timed frames of the naive baseline
    compare_naive: bool = False


def _percentiles(times_s: list[float]) -> dict[str, Any]:
    ms = np.asarray(times_s) * 1e3
    return {
        "ms_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_p95": round(float(np.percentile(ms, 95)), 3),
        "ms_mean": round(float(ms.mean()), 3),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_frames(
    config: RenderBenchConfig, backend: Backend, frames: int, warmup: int
) -> dict[str, Any]:
    avatar = synthetic_avatar(config.gaussians, AvatarConfig()).to(config.device).eval()
    width = config.width or config.resolution
    camera = default_camera(config.resolution).resized(width, config.resolution).to(config.device)
    recording = synthetic_recording(
        avatar.config.expression_dim, seconds=(frames + warmup) / 30 + 1
    )
    codes = torch.from_numpy(recording.codes).to(config.device)
    rotations = torch.from_numpy(recording.rotation_wxyz).to(config.device)
    translations = torch.from_numpy(recording.translation_metres()).float().to(config.device)
    deform_s: list[float] = []
    raster_s: list[float] = []
    b = config.batch
    with torch.inference_mode():
        cache = avatar.inference_cache()
        for i in range(frames + warmup):
            index = torch.arange(i * b, (i + 1) * b, device=config.device) % codes.shape[0]
            pose = HeadPose(rotations[index], translations[index])
            _synchronize(config.device)
            t0 = time.perf_counter()
            posed = avatar.deform(codes[index], pose, cache)
            _synchronize(config.device)
            t1 = time.perf_counter()
            result = render(posed, camera, backend=backend)
            _synchronize(config.device)
            t2 = time.perf_counter()
            if i >= warmup:
                deform_s.append(t1 - t0)
                raster_s.append(t2 - t1)
    total = [d + r for d, r in zip(deform_s, raster_s, strict=True)]
    summary: dict[str, Any] = {"backend": backend, "frames": frames, **_percentiles(total)}
    p50 = float(np.percentile(total, 50))
    summary["fps"] = round(b / p50, 2)  # avatar frames per second (batch included)
    summary["deform"] = _percentiles(deform_s)
    summary["rasterize"] = _percentiles(raster_s)
    summary["coverage"] = round(float(result.alpha.mean()), 4)  # sanity: the avatar is visible
    return summary


def bench_render(config: RenderBenchConfig, backend: Backend = "auto") -> dict[str, Any]:
    """Deformation + rasterisation timings; with ``compare_naive`` also the naive baseline."""
    report: dict[str, Any] = {
        "benchmark": "render",
        "device": str(config.device),
        "device_name": torch.cuda.get_device_name(config.device)
        if config.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gaussians": config.gaussians,
        "width": config.width or config.resolution,
        "height": config.resolution,
        "batch": config.batch,
    }
    report.update(_time_frames(config, backend, config.frames, config.warmup))
    if config.compare_naive:
        if config.device.type != "cpu":
            raise ValueError("--compare-naive runs the CPU baseline; use --device cpu")
        naive = _time_frames(config, "naive", config.naive_frames, warmup=1)
        report["naive"] = naive
        report["speedup_vs_naive"] = round(naive["ms_p50"] / report["ms_p50"], 2)
    return report
