"""``npga bench render``: time deformation and rasterisation of a synthetic avatar;
``npga bench detail``: the same avatar at lower levels of detail, against its full images."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from npga.bundle import AvatarBundle
from npga.framing import frontal_camera
from npga.inference import AvatarDriver
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


def bench_detail(
    bundle: AvatarBundle, fractions: list[float], resolution: int, frames: int
) -> dict[str, Any]:
    """``npga bench detail``: render time and image difference against the full avatar for each
    level of detail (npga/detail.py), on views and expressions the scoring did not use."""
    driver = AvatarDriver(bundle)
    dim = driver.expression_dim
    recording = synthetic_recording(dim, seconds=frames / 30 + 1, seed=7)
    codes = recording.codes[:frames]
    yaws = np.linspace(-30.0, 30.0, frames)
    cameras = [frontal_camera(driver.head, resolution, yaw_degrees=float(y)) for y in yaws]
    identity = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    zeros, stamp = np.zeros((1, 3), dtype=np.float32), np.zeros(1)

    def images(of: AvatarDriver) -> tuple[np.ndarray, list[float]]:
        shown, times = [], []
        for i in range(-2, frames):  # two untimed warm-up frames
            k = max(i, 0)
            began = time.perf_counter()
            image = of.render(codes[k : k + 1], identity, zeros, stamp, cameras[k])[0]
            if i >= 0:
                times.append(time.perf_counter() - began)
                shown.append(image)
        return np.stack(shown), times

    full, full_times = images(driver)
    rows = []
    for fraction in fractions:
        built = time.perf_counter()
        reduced = AvatarDriver(bundle, detail=fraction) if fraction < 1 else driver
        build_s = time.perf_counter() - built
        shown, times = (full, full_times) if fraction >= 1 else images(reduced)
        error = np.mean((shown.astype(np.float64) - full) ** 2)
        rows.append(
            {
                "detail": fraction,
                "gaussians": reduced.avatar.num_gaussians,
                "build_s": round(build_s, 2),
                **_percentiles(times),
                "psnr_vs_full_db": round(float(10 * np.log10(255.0**2 / error)), 2)
                if error > 0
                else None,
            }
        )
    return {
        "benchmark": "detail",
        "resolution": resolution,
        "frames": frames,
        "views": "frontal, yaw -30..+30 degrees",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "levels": rows,
    }
