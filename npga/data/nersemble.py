"""NeRSemble (v2, raw) reader and its conversion to the own capture layout.

A participant folder holds ``calibration/camera_params.json`` (``world_2_cam``: serial -> 4x4
OpenCV world-to-camera; ``intrinsics``: one 3x3 K shared by all cameras, for the videos' full
resolution), optionally ``calibration/color_calibration.json`` (serial -> 3x4 affine colour
transform, applied as ``rgb @ A[:, :3].T + A[:, 3]`` to RGB in [0, 1]) and
``sequences/<SEQ>/images/cam_<serial>.mp4``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from npga.cameras import Cameras
from npga.data.layout import (
    CaptureError,
    CaptureSplits,
    downscaled_size,
    frame_path,
    load_json,
    middle_camera,
    numeric_array,
    write_cameras,
    write_image,
    write_splits,
)
from npga.data.sources import decode


@dataclass(frozen=True)
class NersembleCalibration:
    serials: list[str]  # sorted
    world_to_cam: np.ndarray  # [C, 4, 4] OpenCV
    intrinsics: np.ndarray  # [3, 3] at the videos' resolution
    colour: dict[str, np.ndarray]  # serial -> [3, 4] affine colour transform


def _serial(key: str) -> str:
    """Calibration files key cameras by serial; accept ``cam_<serial>`` too."""
    return key.removeprefix("cam_")


def read_calibration(participant: Path) -> NersembleCalibration:
    path = participant / "calibration" / "camera_params.json"
    data = load_json(path)
    poses = data.get("world_2_cam") if isinstance(data, dict) else None
    if not isinstance(poses, dict) or not poses:
        raise CaptureError(f"{path}: needs an object 'world_2_cam' (serial -> 4x4)")
    if "intrinsics" not in data:
        raise CaptureError(f"{path}: field 'intrinsics' missing")
    poses = {_serial(key): value for key, value in poses.items()}
    serials = sorted(poses)
    extrinsics = np.stack(
        [numeric_array(poses[s], (4, 4), f"{path}: world_2_cam.{s}") for s in serials]
    )
    intrinsics = numeric_array(data["intrinsics"], (3, 3), f"{path}: intrinsics")
    colour_path = participant / "calibration" / "color_calibration.json"
    colour = {}
    if colour_path.exists():
        table = load_json(colour_path)
        if not isinstance(table, dict):
            raise CaptureError(f"{colour_path}: must map camera serials to 3x4 matrices")
        colour = {
            _serial(s): numeric_array(m, (3, 4), f"{colour_path}: {s}") for s, m in table.items()
        }
    return NersembleCalibration(serials, extrinsics, intrinsics, colour)


def video_path(participant: Path, sequence: str, serial: str) -> Path:
    return participant / "sequences" / sequence / "images" / f"cam_{serial}.mp4"


def read_video_frames(path: Path, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (index, rgb [H, W, 3] uint8) for the wanted frame indices (sorted), decoding once."""
    wanted, last = set(indices), max(indices)
    for index, rgb in enumerate(decode(path)):
        if index in wanted:
            yield index, rgb
        if index >= last:
            return
    raise CaptureError(f"{path}: has no frame {last} (fewer frames than selected)")


def _correct(rgb: np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """rgb [H, W, 3] uint8; affine [3, 4] or None -> colour-corrected uint8."""
    if affine is None:
        return rgb
    linear = rgb.astype(np.float32) / 255.0 @ affine[:, :3].T.astype(np.float32)
    corrected = linear + affine[:, 3].astype(np.float32)
    return (np.clip(corrected, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def import_nersemble(
    participant: Path,
    sequence: str,
    out: Path,
    *,
    serials: list[str] | None = None,  # default: every calibrated camera
    frames: list[int],  # video frame indices to keep; timesteps are their positions
    resolution: int | None = None,  # output width
    front_camera: str | None = None,
    test_cameras: list[str] | None = None,
    test_fraction: float = 0.0,
    on_camera: Callable[[int], None] | None = None,
) -> None:
    """Decode, colour-correct, downscale and write a NeRSemble sequence in the own layout."""
    calibration = read_calibration(participant)
    chosen = sorted(serials or calibration.serials)
    for serial in chosen:
        if serial not in calibration.serials:
            raise CaptureError(
                f"camera {serial} is not in {participant}/calibration/camera_params.json"
            )
    for serial in [*(test_cameras or []), *([front_camera] if front_camera else [])]:
        if serial not in chosen:
            raise CaptureError(f"camera {serial} (held out or front) is not among the imported")
    for serial in chosen:
        if not video_path(participant, sequence, serial).is_file():
            raise CaptureError(f"{video_path(participant, sequence, serial)}: missing")
    size: tuple[int, int] | None = None
    for done, serial in enumerate(chosen):
        path = video_path(participant, sequence, serial)
        for position, (_, rgb) in enumerate(read_video_frames(path, frames)):
            image = Image.fromarray(_correct(rgb, calibration.colour.get(serial)))
            full = image.size
            if size is None:
                size = full
            elif full != size:
                raise CaptureError(
                    f"{path}: frames are {full[0]}x{full[1]}, others {size[0]}x{size[1]}"
                )
            target = downscaled_size(full[0], full[1], resolution)
            if target != full:
                image = image.resize(target, Image.Resampling.BOX)
            write_image(frame_path(out, position, f"cam_{serial}"), np.asarray(image))
        if on_camera is not None:
            on_camera(done + 1)
    assert size is not None
    width, height = downscaled_size(size[0], size[1], resolution)
    index = [calibration.serials.index(s) for s in chosen]
    cameras = Cameras(
        torch.from_numpy(calibration.world_to_cam[index]),
        torch.from_numpy(np.repeat(calibration.intrinsics[None], len(chosen), axis=0)),
        size[0],
        size[1],
    ).resized(width, height)
    names = [f"cam_{s}" for s in chosen]
    front = f"cam_{front_camera}" if front_camera else names[middle_camera(cameras)]
    count = len(frames)
    test = round(test_fraction * count)
    steps = list(range(count))
    held_out = sorted(f"cam_{s}" for s in test_cameras or [])
    write_splits(out, CaptureSplits(steps[: count - test], steps[count - test :], held_out))
    write_cameras(out, names, cameras, front)
