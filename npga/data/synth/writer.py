"""``npga synth``: render the animated synthetic head from C calibrated cameras into the own
capture layout, with masks, splits and the ground-truth rig parameters (rig.npz)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from npga.cameras import Cameras, orbit_cameras
from npga.data.layout import (
    CAMERAS_FILE,
    CaptureSplits,
    frame_path,
    write_cameras,
    write_image,
    write_splits,
)
from npga.data.synth.head import PARAMETERS, HeadModel, build_head
from npga.data.synth.raster import render_views
from npga.data.synth.rig import HEAD_MOTIONS, animate, vertex_light, world_vertices

RIG_FILE = "rig.npz"
SETTINGS_FILE = "synth.json"  # the SynthConfig of the run (checked by --resume)
SUBJECTS = ("astronaut",)
DISTANCE_M = 1.0
FOCAL_PER_PIXEL = 3.1  # focal length in units of the image width (~18 degree field of view)
TARGET = (0.0, 0.01, 0.0)  # cameras look slightly below the skull centre
YAW_RANGE = 45.0
EXTRA_PITCH = 20.0  # an even camera count adds a camera above the front one


@dataclass(frozen=True)
class SynthConfig:
    frames: int = 120
    cameras: int = 8
    resolution: int = 256  # image width and height
    seed: int = 0
    subject: str = "astronaut"
    head_motion: str = "rig"  # "rig" (±18° yaw) or "wide" (±35° yaw, ±15° pitch)


def synth_cameras(count: int, resolution: int) -> tuple[list[str], Cameras, str, str | None]:
    """-> camera names, cameras [count], the front camera, a held-out camera (or None).

    An arc of yaws in [-45, 45] degrees with small alternating pitch; yaw 0 (pitch 0) is the
    front camera; an even count adds one camera above the front one.
    """
    arc = count if count % 2 else count - 1
    yaws = np.linspace(-YAW_RANGE, YAW_RANGE, arc) if arc > 1 else np.zeros(1)
    poses = [
        (float(y), 0.0 if abs(y) < 1e-6 else (6.0 if i % 2 else -4.0)) for i, y in enumerate(yaws)
    ]
    if count % 2 == 0:
        poses.append((0.0, EXTRA_PITCH))
    focal = FOCAL_PER_PIXEL * resolution
    cameras = [
        orbit_cameras(
            [yaw],
            distance=DISTANCE_M,
            focal_px=focal,
            width=resolution,
            height=resolution,
            pitch_degrees=pitch,
            target=TARGET,
        )
        for yaw, pitch in poses
    ]
    names = [f"cam_{i:02d}" for i in range(count)]
    front = names[int(np.argmin([abs(y) + abs(p) for y, p in poses]))]
    held_out = None
    if count >= 3:
        side = [i for i, (y, p) in enumerate(poses) if abs(y) > 1e-6 and p <= 6.0]
        held_out = names[min(side, key=lambda i: abs(poses[i][0] - 20.0))]
    stacked = Cameras(
        torch.cat([c.world_to_cam for c in cameras]),
        torch.cat([c.intrinsics for c in cameras]),
        resolution,
        resolution,
    )
    return names, stacked, front, held_out


def synth_splits(frames: int, held_out: str | None) -> CaptureSplits:
    """The last ~15 % of timesteps are held out as one block."""
    test = max(1, round(0.15 * frames)) if frames >= 4 else 0
    steps = list(range(frames))
    return CaptureSplits(
        steps[: frames - test], steps[frames - test :], [held_out] if held_out else []
    )


def _done(out: Path, timestep: int, names: list[str]) -> bool:
    return all(
        frame_path(out, timestep, n).is_file()
        and frame_path(out, timestep, n, masks=True).is_file()
        for n in names
    )


def _same_settings(out: Path, config: SynthConfig) -> bool:
    """Whether the settings ``out`` was started with are ``config``; fields a run of an older
    version did not record have their defaults (it rendered them)."""
    try:
        started = json.loads((out / SETTINGS_FILE).read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(started, dict) and {**asdict(SynthConfig()), **started} == asdict(config)


def write_synth(
    out: Path,
    config: SynthConfig,
    *,
    resume: bool = False,
    on_frame: Callable[[int], None] | None = None,  # called with the number of frames done
) -> None:
    if config.subject not in SUBJECTS:
        raise ValueError(f"unknown subject {config.subject!r} (known: {', '.join(SUBJECTS)})")
    if config.head_motion not in HEAD_MOTIONS:
        raise ValueError(
            f"unknown head motion {config.head_motion!r} (known: {', '.join(HEAD_MOTIONS)})"
        )
    if (out / CAMERAS_FILE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a capture; pass --resume to finish it")
    settings = json.dumps(asdict(config), sort_keys=True)
    if resume and (out / SETTINGS_FILE).exists() and not _same_settings(out, config):
        raise FileExistsError(f"{out} was started with other settings: {SETTINGS_FILE}")
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(settings)
    head: HeadModel = build_head(data.astronaut())
    names, cameras, front, held_out = synth_cameras(config.cameras, config.resolution)
    params, rotations, translations = animate(config.frames, config.seed, config.head_motion)
    landmarks = np.zeros((config.frames, 478, 3), np.float32)
    for t in range(config.frames):
        vertices = world_vertices(head, params[t], rotations[t], translations[t])  # [V, 3]
        landmarks[t] = vertices[:478]
        if not (resume and _done(out, t, names)):
            shade = vertex_light(head, vertices, params[t])
            rgb, masks = render_views(
                vertices, head.triangles, head.uvs, shade, head.texture, cameras
            )
            for c, name in enumerate(names):
                write_image(frame_path(out, t, name), rgb[c])
                write_image(frame_path(out, t, name, masks=True), masks[c])
        if on_frame is not None:
            on_frame(t + 1)
    rig = {name: params[:, i] for i, name in enumerate(PARAMETERS)}
    np.savez(
        out / RIG_FILE,
        timesteps=np.arange(config.frames, dtype=np.int64),
        parameter_names=np.array(PARAMETERS),
        head_rotation_wxyz=rotations,
        head_translation=translations,
        landmarks_world=landmarks,
        **rig,
    )
    write_splits(out, synth_splits(config.frames, held_out))
    write_cameras(out, names, cameras, front)  # last: a capture with cameras.json is complete
