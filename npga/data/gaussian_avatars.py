"""GaussianAvatars / VHAP capture reader and its conversion to the own layout.

``transforms_{train,val,test}.json``: ``frames`` with ``timestep_index``, ``camera_index``,
``transform_matrix`` (OpenGL camera-to-world: x right, y up, z backwards), ``fl_x, fl_y, cx,
cy, w, h`` (per frame, or at the top level), ``file_path``, optional ``fg_mask_path`` and
``flame_param_path`` (per-timestep FLAME ``.npz``). The FLAME code of a timestep is
``expr`` (100) ++ ``jaw_pose`` (3) ++ ``eyes_pose`` (6, zeros when absent); head pose from
``rotation`` (axis-angle) and ``translation``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from npga.cameras import Cameras
from npga.data.layout import (
    CaptureCodes,
    CaptureError,
    CaptureSplits,
    downscaled_size,
    frame_path,
    middle_camera,
    write_cameras,
    write_codes,
    write_image,
    write_splits,
)
from npga.geometry import axis_angle_to_quat

SPLITS = ("train", "val", "test")
OPENGL_TO_OPENCV = (1.0, -1.0, -1.0, 1.0)  # diagonal: flips the camera's y and z


@dataclass(frozen=True)
class GaFrame:
    timestep: int
    camera: int
    image: Path
    mask: Path | None
    flame: Path | None
    split: str


@dataclass(frozen=True)
class GaCapture:
    root: Path
    frames: list[GaFrame]
    cameras: dict[int, tuple[np.ndarray, np.ndarray]]  # index -> (world_to_cam [4,4], K [3,3])
    size: tuple[int, int]  # width, height


def opengl_c2w_to_opencv_w2c(c2w: np.ndarray) -> np.ndarray:
    """c2w [4, 4] OpenGL camera-to-world -> [4, 4] OpenCV world-to-camera."""
    return np.linalg.inv(c2w @ np.diag(OPENGL_TO_OPENCV))


def _number(entry: dict[str, Any], top: dict[str, Any], key: str, where: str) -> float:
    value = entry.get(key, top.get(key))
    if not isinstance(value, int | float) or not np.isfinite(value):
        raise CaptureError(f"{where}: field '{key}' missing or not a finite number")
    return float(value)


def read_gaussian_avatars(root: Path) -> GaCapture:
    frames: list[GaFrame] = []
    cameras: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sizes = set()
    for split in SPLITS:
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            if split == "train":
                raise CaptureError(f"{path}: missing")
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CaptureError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise CaptureError(f"{path}: needs a list 'frames'")
        for i, entry in enumerate(data["frames"]):
            where = f"{path}: frames[{i}]"
            for key in ("timestep_index", "camera_index", "transform_matrix", "file_path"):
                if key not in entry:
                    raise CaptureError(f"{where}: field '{key}' missing")
            try:
                c2w = np.asarray(entry["transform_matrix"], dtype=np.float64)
            except (TypeError, ValueError):
                raise CaptureError(f"{where}: transform_matrix is not numeric") from None
            if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
                raise CaptureError(f"{where}: transform_matrix must be a finite 4x4")
            fx, fy, cx, cy, w, h = (
                _number(entry, data, k, where) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")
            )
            sizes.add((int(w), int(h)))
            k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            cameras.setdefault(int(entry["camera_index"]), (opengl_c2w_to_opencv_w2c(c2w), k))
            mask, flame = entry.get("fg_mask_path"), entry.get("flame_param_path")
            frames.append(
                GaFrame(
                    int(entry["timestep_index"]),
                    int(entry["camera_index"]),
                    root / entry["file_path"],
                    root / mask if mask else None,
                    root / flame if flame else None,
                    split,
                )
            )
    if len(sizes) != 1:
        raise CaptureError(f"{root}: frames must share one image size, got {sorted(sizes)}")
    return GaCapture(root, frames, cameras, sizes.pop())


def read_flame(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> code [109] (expr ++ jaw ++ eyes), rotation wxyz [4], translation [3]."""
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: np.asarray(npz[key], dtype=np.float64).reshape(-1) for key in npz.files}
    except (OSError, ValueError) as error:
        raise CaptureError(f"{path}: unreadable ({error})") from None
    sizes = {"expr": None, "jaw_pose": 3, "rotation": 3, "translation": 3}
    for key, size in sizes.items():
        if key not in arrays:
            raise CaptureError(f"{path}: field '{key}' missing")
        if (size is not None and arrays[key].size != size) or not np.isfinite(arrays[key]).all():
            raise CaptureError(f"{path}: field '{key}' has the wrong size or non-finite values")
    eyes = arrays.get("eyes_pose", np.zeros(6))
    code = np.concatenate([arrays["expr"], arrays["jaw_pose"], eyes])
    rotation = axis_angle_to_quat(torch.from_numpy(arrays["rotation"])).numpy()
    return code, rotation, arrays["translation"]


def _load_rgb(path: Path, size: tuple[int, int], mode: str) -> Image.Image:
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        with Image.open(path) as file:
            image = file.convert(mode)
    except (UnidentifiedImageError, OSError) as error:
        raise CaptureError(f"{path}: not a readable image ({error})") from None
    if image.size != size:
        raise CaptureError(f"{path}: image is {image.size[0]}x{image.size[1]}, expected {size}")
    return image


def import_gaussian_avatars(
    root: Path,
    out: Path,
    *,
    resolution: int | None = None,
    on_frame: Callable[[int, int], None] | None = None,  # (done, total)
) -> None:
    """Convert a GaussianAvatars/VHAP capture (all its splits) to the own layout, with the
    FLAME codes in codes.npz (expression space "flame")."""
    capture = read_gaussian_avatars(root)
    names = {index: f"cam_{index:02d}" for index in sorted(capture.cameras)}
    steps = sorted({f.timestep for f in capture.frames})
    seen: dict[tuple[int, int], GaFrame] = {}
    for frame in capture.frames:
        other = seen.setdefault((frame.timestep, frame.camera), frame)
        if other.image != frame.image:
            raise CaptureError(
                f"{root}: timestep {frame.timestep}, camera_index {frame.camera} is both "
                f"{other.image.name} ({other.split}) and {frame.image.name} ({frame.split})"
            )
    for t in steps:
        for index in names:
            if (t, index) not in seen:
                raise CaptureError(f"{root}: no frame for timestep {t}, camera_index {index}")
    target = downscaled_size(*capture.size, resolution)
    flame: dict[int, Path] = {}
    for done, frame in enumerate(capture.frames):
        pairs = [(frame.image, "RGB", False), (frame.mask, "L", True)]
        for source, mode, is_mask in pairs:
            if source is None:
                continue
            image = _load_rgb(source, capture.size, mode)
            image = image.resize(target, Image.Resampling.BOX) if image.size != target else image
            name = names[frame.camera]
            write_image(frame_path(out, frame.timestep, name, masks=is_mask), np.asarray(image))
        if frame.flame is not None:
            flame.setdefault(frame.timestep, frame.flame)
        if on_frame is not None:
            on_frame(done + 1, len(capture.frames))
    if flame:
        missing = [t for t in steps if t not in flame]
        if missing:
            raise CaptureError(f"{root}: timestep {missing[0]} has no flame_param_path")
        rows = [read_flame(flame[t]) for t in steps]
        dims = {row[0].size for row in rows}
        if len(dims) != 1:
            raise CaptureError(f"{root}: FLAME codes differ in size across timesteps: {dims}")
        codes = CaptureCodes(
            np.array(steps, dtype=np.int64),
            np.stack([r[1] for r in rows]).astype(np.float32),
            np.stack([r[2] for r in rows]).astype(np.float32),
            np.stack([r[0] for r in rows]).astype(np.float32),
            "flame",
        )
        write_codes(out, codes)
    order = sorted(names)
    cameras = Cameras(
        torch.from_numpy(np.stack([capture.cameras[i][0] for i in order])),
        torch.from_numpy(np.stack([capture.cameras[i][1] for i in order])),
        *capture.size,
    ).resized(*target)
    train_steps = {f.timestep for f in capture.frames if f.split == "train"}
    train_cams = {f.camera for f in capture.frames if f.split == "train"}
    test_steps = sorted({f.timestep for f in capture.frames} - train_steps)
    held_out = sorted(names[c] for c in names if c not in train_cams)
    write_splits(out, CaptureSplits(sorted(train_steps), test_steps, held_out))
    front = names[order[middle_camera(cameras)]]
    write_cameras(out, [names[i] for i in order], cameras, front)
