"""``CaptureDataset``: calibrated multi-view frames of the own capture layout (docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from npga.cameras import Cameras
from npga.data.layout import (
    FRAMES_DIR,
    MASKS_DIR,
    CaptureCodes,
    CaptureError,
    CaptureSplits,
    downscaled_size,
    frame_path,
    read_cameras,
    read_codes,
    read_splits,
)

__all__ = ["CaptureCodes", "CaptureDataset", "CaptureError", "CaptureFrame", "CaptureSplits"]


@dataclass(frozen=True)
class CaptureFrame:
    timestep: int
    images: torch.Tensor  # [C, H, W, 3] float32 in [0, 1]
    masks: torch.Tensor | None  # [C, H, W, 1] float32 in [0, 1]
    cameras: Cameras  # the C cameras of ``images``, at the loaded resolution
    camera_names: list[str]
    code: torch.Tensor | None  # [E]


def _timesteps(root: Path) -> list[int]:
    frames = root / FRAMES_DIR
    if not frames.is_dir():
        raise CaptureError(f"{frames}: missing")
    steps = []
    for entry in frames.iterdir():
        if not entry.name.isdigit():
            raise CaptureError(f"{entry}: frame folders are named by timestep (00000, 00001, ...)")
        steps.append(int(entry.name))
    if not steps:
        raise CaptureError(f"{frames}: no timesteps")
    return sorted(steps)


def _check_image(path: Path, width: int, height: int, mode: str) -> None:
    """Existence, decodable header and size of one PNG (pixels are decoded on load)."""
    if not path.is_file():
        raise CaptureError(f"{path}: missing")
    try:
        with Image.open(path) as image:
            size, image_mode = image.size, image.mode
    except (UnidentifiedImageError, OSError) as error:
        raise CaptureError(f"{path}: not a readable image ({error})") from None
    if size != (width, height):
        raise CaptureError(
            f"{path}: image is {size[0]}x{size[1]}, cameras.json says {width}x{height}"
        )
    if mode == "RGB" and image_mode not in ("RGB", "RGBA"):
        raise CaptureError(f"{path}: expected an RGB image, got mode {image_mode}")


class CaptureDataset:
    """Frames of one capture; the whole layout is validated when the dataset is opened."""

    def __init__(
        self,
        root: str | Path,
        *,
        resolution: int | None = None,  # downscale so the width is ``resolution``
        cameras: list[str] | None = None,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CaptureError(f"{self.root}: capture folder missing")
        rig = read_cameras(self.root)
        selected = sorted(rig.names if cameras is None else cameras)
        unknown = [c for c in selected if c not in rig.names]
        if unknown or not selected:
            raise CaptureError(f"{self.root / 'cameras.json'}: no camera named {unknown[:1]}")
        self.camera_names = selected
        self.front_camera = rig.front_camera
        self.timesteps = _timesteps(self.root)
        self.has_masks = (self.root / MASKS_DIR).is_dir()
        source = rig.cameras
        for t in self.timesteps:
            for name in self.camera_names:
                _check_image(frame_path(self.root, t, name), source.width, source.height, "RGB")
                if self.has_masks:
                    mask = frame_path(self.root, t, name, masks=True)
                    _check_image(mask, source.width, source.height, "L")
        self.splits: CaptureSplits = read_splits(self.root, self.timesteps, rig.names)
        self.codes: CaptureCodes | None = read_codes(self.root, self.timesteps)
        self._size = downscaled_size(source.width, source.height, resolution)
        index = torch.tensor([rig.names.index(c) for c in self.camera_names])
        self.cameras = source.select(index).resized(*self._size)
        self._cache: dict[tuple[int, str, bool], np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.timesteps)

    def __getitem__(self, index: int) -> CaptureFrame:
        return self.frame(self.timesteps[index])

    def _pixels(self, timestep: int, camera: str, mask: bool) -> np.ndarray:
        """[H, W, 3] (or [H, W, 1] for a mask) uint8 at the loaded resolution."""
        key = (timestep, camera, mask)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        path = frame_path(self.root, timestep, camera, masks=mask)
        try:
            with Image.open(path) as file:
                image = file.convert("L" if mask else "RGB")
            if image.size != self._size:
                image = image.resize(self._size, Image.Resampling.BOX)
            pixels = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise CaptureError(f"{path}: not a readable image ({error})") from None
        pixels = pixels[..., None] if mask else pixels
        if self._cache is not None:
            self._cache[key] = pixels
        return pixels

    def _check(self, timestep: int, cameras: list[str]) -> None:
        if timestep not in self.timesteps:
            raise KeyError(f"{self.root}: no timestep {timestep}")
        unknown = [c for c in cameras if c not in self.camera_names]
        if unknown:
            raise KeyError(f"{self.root}: camera {unknown[0]!r} is not loaded")

    def image(self, timestep: int, camera: str) -> torch.Tensor:
        """[H, W, 3] float32 in [0, 1]."""
        self._check(timestep, [camera])
        return torch.from_numpy(self._pixels(timestep, camera, False).astype(np.float32) / 255.0)

    def frame(self, timestep: int, cameras: list[str] | None = None) -> CaptureFrame:
        names = list(self.camera_names if cameras is None else cameras)
        self._check(timestep, names)
        images = np.stack([self._pixels(timestep, c, False) for c in names])  # [C, H, W, 3]
        masks = None
        if self.has_masks:
            stacked = np.stack([self._pixels(timestep, c, True) for c in names])  # [C, H, W, 1]
            masks = torch.from_numpy(stacked.astype(np.float32) / 255.0)
        code = None
        if self.codes is not None:
            row = int(np.flatnonzero(self.codes.timesteps == timestep)[0])
            code = torch.from_numpy(self.codes.codes[row].copy())
        index = torch.tensor([self.camera_names.index(c) for c in names])
        return CaptureFrame(
            timestep,
            torch.from_numpy(images.astype(np.float32) / 255.0),
            masks,
            self.cameras.select(index),
            names,
            code,
        )
