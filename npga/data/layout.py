"""Reading and writing the pieces of the own capture layout (docs/data.md).

Every reader raises ``CaptureError`` with one line naming the file and the field at fault.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from npga.cameras import Cameras

CAMERAS_FILE = "cameras.json"
SPLITS_FILE = "splits.json"
CODES_FILE = "codes.npz"
FRAMES_DIR = "frames"
MASKS_DIR = "masks"


class CaptureError(ValueError):
    """A capture that cannot be read: one line naming the first missing/inconsistent file."""


@dataclass(frozen=True)
class CaptureSplits:
    train_timesteps: list[int]
    test_timesteps: list[int]
    test_cameras: list[str]  # held-out cameras (novel-view evaluation)


@dataclass(frozen=True)
class CaptureCodes:
    """codes.npz: per-timestep head pose and expression code."""

    timesteps: np.ndarray  # [T] int64
    rotation_wxyz: np.ndarray  # [T, 4] head rotation (world), float32
    translation: np.ndarray  # [T, 3] head translation (world, metres), float32
    codes: np.ndarray  # [T, E] float32
    expression_space: str  # e.g. "facemesh-pca" or "flame"


@dataclass(frozen=True)
class CameraRig:
    """cameras.json: named cameras in a fixed (sorted) order and the front camera."""

    names: list[str]
    cameras: Cameras  # [C] at the size written in the file
    front_camera: str


def frame_path(root: Path, timestep: int, camera: str, masks: bool = False) -> Path:
    return root / (MASKS_DIR if masks else FRAMES_DIR) / f"{timestep:05d}" / f"{camera}.png"


def numeric_array(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``, or a CaptureError naming ``where``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{where} is not numeric") from None
    if array.shape != shape:
        dims = "x".join(str(d) for d in shape)
        raise CaptureError(f"{where} must be {dims}, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise CaptureError(f"{where} contains NaN or Inf")
    return array


def load_json(path: Path) -> Any:
    """A JSON file's content, or a CaptureError naming the missing or unreadable file."""
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CaptureError(f"{path}: not valid JSON ({error})") from None


def read_cameras(root: Path) -> CameraRig:
    path = root / CAMERAS_FILE
    data = load_json(path)
    entries = data.get("cameras") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise CaptureError(f"{path}: needs a non-empty object 'cameras'")
    names = sorted(entries)
    sizes, extrinsics, intrinsics = set(), [], []
    for name in names:
        entry, where = entries[name], f"{path}: cameras.{name}"
        if not isinstance(entry, dict):
            raise CaptureError(f"{where} must be an object")
        for key in ("world_to_cam", "intrinsics", "width", "height"):
            if key not in entry:
                raise CaptureError(f"{where}.{key} missing")
        extrinsics.append(numeric_array(entry["world_to_cam"], (4, 4), f"{where}.world_to_cam"))
        intrinsics.append(numeric_array(entry["intrinsics"], (3, 3), f"{where}.intrinsics"))
        width, height = entry["width"], entry["height"]
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise CaptureError(f"{where}: width/height must be positive integers")
        sizes.add((width, height))
    if len(sizes) != 1:
        raise CaptureError(f"{path}: all cameras must share one image size, got {sorted(sizes)}")
    front = data.get("front_camera", names[0])
    if front not in entries:
        raise CaptureError(f"{path}: front_camera {front!r} is not one of the cameras")
    width, height = sizes.pop()
    cameras = Cameras(
        torch.from_numpy(np.stack(extrinsics)).float(),
        torch.from_numpy(np.stack(intrinsics)).float(),
        width,
        height,
    )
    return CameraRig(names, cameras, front)


def write_cameras(root: Path, names: list[str], cameras: Cameras, front_camera: str) -> None:
    """names: the C camera names in the order of ``cameras`` [C]."""
    entries = {
        name: {
            "world_to_cam": cameras.world_to_cam[i].double().tolist(),
            "intrinsics": cameras.intrinsics[i].double().tolist(),
            "width": cameras.width,
            "height": cameras.height,
        }
        for i, name in enumerate(names)
    }
    data = {"front_camera": front_camera, "cameras": entries}
    (root / CAMERAS_FILE).write_text(json.dumps(data, indent=1))


def _int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise CaptureError(f"{where} must be a list of integers")
    return sorted(value)


def read_splits(root: Path, timesteps: list[int], cameras: list[str]) -> CaptureSplits:
    """Without splits.json every timestep trains and no camera is held out."""
    path = root / SPLITS_FILE
    if not path.exists():
        return CaptureSplits(list(timesteps), [], [])
    data = load_json(path)
    if not isinstance(data, dict):
        raise CaptureError(f"{path}: must be a JSON object")
    train = _int_list(data.get("train_timesteps", []), f"{path}: train_timesteps")
    test = _int_list(data.get("test_timesteps", []), f"{path}: test_timesteps")
    held_out = data.get("test_cameras", [])
    if not isinstance(held_out, list) or not all(isinstance(c, str) for c in held_out):
        raise CaptureError(f"{path}: test_cameras must be a list of camera names")
    known = set(timesteps)
    for key, values in (("train_timesteps", train), ("test_timesteps", test)):
        unknown = [t for t in values if t not in known]
        if unknown:
            raise CaptureError(f"{path}: {key} names unknown timestep {unknown[0]}")
    unknown_cameras = [c for c in held_out if c not in cameras]
    if unknown_cameras:
        raise CaptureError(f"{path}: test_cameras names unknown camera {unknown_cameras[0]!r}")
    return CaptureSplits(train, test, sorted(held_out))


def write_splits(root: Path, splits: CaptureSplits) -> None:
    data = {
        "train_timesteps": splits.train_timesteps,
        "test_timesteps": splits.test_timesteps,
        "test_cameras": splits.test_cameras,
    }
    (root / SPLITS_FILE).write_text(json.dumps(data))


def read_codes(root: Path, timesteps: list[int]) -> CaptureCodes | None:
    """codes.npz, if present; it must hold one code for every timestep of the capture."""
    path = root / CODES_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as error:
        raise CaptureError(f"{path}: unreadable ({error})") from None
    for key in ("timesteps", "rotation_wxyz", "translation", "codes", "expression_space"):
        if key not in arrays:
            raise CaptureError(f"{path}: field {key!r} missing")
    steps = arrays["timesteps"]
    t = steps.shape[0] if steps.ndim == 1 else -1
    if t < 0 or steps.dtype.kind not in "iu":
        raise CaptureError(f"{path}: timesteps must be a 1-D integer array, got {steps.shape}")
    codes = arrays["codes"]
    shapes = {"rotation_wxyz": (t, 4), "translation": (t, 3)}
    shapes["codes"] = (t, codes.shape[1] if codes.ndim == 2 and codes.shape[1] > 0 else -1)
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise CaptureError(f"{path}: {key} must be {list(shape)}, got {arrays[key].shape}")
        if arrays[key].dtype.kind != "f" or not np.isfinite(arrays[key]).all():
            raise CaptureError(f"{path}: {key} must be finite floats")
    space = arrays["expression_space"]
    if space.ndim != 0 or space.dtype.kind != "U":
        raise CaptureError(f"{path}: expression_space must be a 0-d string array")
    missing = sorted(set(timesteps) - set(steps.tolist()))
    if missing:
        raise CaptureError(f"{path}: timesteps has no code for frame timestep {missing[0]}")
    return CaptureCodes(
        steps.astype(np.int64),
        arrays["rotation_wxyz"].astype(np.float32),
        arrays["translation"].astype(np.float32),
        codes.astype(np.float32),
        str(space),
    )


def write_codes(root: Path, codes: CaptureCodes) -> None:
    np.savez(
        root / CODES_FILE,
        timesteps=codes.timesteps.astype(np.int64),
        rotation_wxyz=codes.rotation_wxyz.astype(np.float32),
        translation=codes.translation.astype(np.float32),
        codes=codes.codes.astype(np.float32),
        expression_space=np.array(codes.expression_space),
    )


def downscaled_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """The image size when the width becomes ``resolution`` (aspect kept, never upscaled)."""
    if resolution is None or resolution >= width:
        return width, height
    return resolution, max(1, math.floor(height * resolution / width + 0.5))


def write_image(path: Path, pixels: np.ndarray) -> None:
    """pixels [H, W, 3] or [H, W] uint8 -> PNG, atomically (an interrupted write leaves no
    truncated PNG behind); parent folders are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    Image.fromarray(pixels).save(partial, format="PNG", compress_level=1)
    os.replace(partial, path)


def middle_camera(cameras: Cameras) -> int:
    """The index of the camera whose optical axis is closest to the rig's mean viewing
    direction (the front camera of an arc around a face)."""
    forward = cameras.world_to_cam[:, 2, :3].double()  # [C, 3] optical axes in world
    return int(torch.argmax(forward @ forward.mean(dim=0)))
