"""``CaptureDataset``: calibrated multi-view frames of the own capture layout (docs/data.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from npga.cameras import Cameras
from npga.data.layout import (
    CAMERAS_FILE,
    FRAMES_DIR,
    SPLITS_FILE,
    CaptureCodes,
    CaptureError,
    CaptureSplits,
    downscaled_size,
    frame_path,
    read_cameras,
    read_codes,
    read_splits,
)
from npga.data.sources import VIDEOS_DIR, PngFrames, VideoFrames

__all__ = ["CaptureCodes", "CaptureDataset", "CaptureError", "CaptureFrame", "CaptureSplits"]

FINGERPRINT_FRAMES = 4  # front-camera frames hashed into a capture's fingerprint
FINGERPRINT_VIDEO_BYTES = 1 << 20  # ... or the first MiB of its video


@dataclass(frozen=True)
class CaptureFrame:
    timestep: int
    images: torch.Tensor  # [C, H, W, 3] float32 in [0, 1]
    masks: torch.Tensor | None  # [C, H, W, 1] float32 in [0, 1]
    cameras: Cameras  # the C cameras of ``images``, at the loaded resolution
    camera_names: list[str]
    code: torch.Tensor | None  # [E]


def _frame_source(root: Path) -> PngFrames | VideoFrames:
    if (root / FRAMES_DIR).is_dir():
        return PngFrames(root)
    if (root / VIDEOS_DIR).is_dir():
        return VideoFrames(root)
    raise CaptureError(f"{root / FRAMES_DIR}: missing (and no {VIDEOS_DIR}/ either)")


class CaptureDataset:
    """Frames of one capture; the whole layout is validated when the dataset is opened."""

    def __init__(
        self,
        root: str | Path,
        *,
        resolution: int | None = None,  # downscale so the width is ``resolution``
        cameras: list[str] | None = None,
        cache: bool = True,
        world_scale: float = 1.0,  # camera positions times this: the rig at an avatar's scale
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
        source = rig.cameras
        self._frames = _frame_source(self.root)
        self._frames.validate(self.camera_names, source.width, source.height)
        self.timesteps = self._frames.timesteps
        self.has_masks = self._frames.has_masks
        self.splits: CaptureSplits = read_splits(self.root, self.timesteps, rig.names)
        self.codes: CaptureCodes | None = read_codes(self.root, self.timesteps)
        self._size = downscaled_size(source.width, source.height, resolution)
        index = torch.tensor([rig.names.index(c) for c in self.camera_names])
        rig_cameras = source.select(index).resized(*self._size)
        if world_scale != 1.0:
            world_to_cam = rig_cameras.world_to_cam.clone()
            world_to_cam[:, :3, 3] *= world_scale
            rig_cameras = replace(rig_cameras, world_to_cam=world_to_cam)
        self.cameras = rig_cameras
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
        frames = self._frames
        if isinstance(frames, PngFrames):
            return self._keep(key, frames.read(timestep, camera, mask))
        # A video decodes from its start: keep every frame on the way (all of them if cached).
        for t, image in enumerate(frames.frames(camera, mask)):
            pixels = self._keep((t, camera, mask), image)
            if t == timestep and self._cache is None:
                return pixels
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        raise CaptureError(f"{frames.path(camera, mask)}: has no frame {timestep}")

    def _keep(self, key: tuple[int, str, bool], image: Image.Image) -> np.ndarray:
        """Downscale one decoded image and cache it."""
        if image.size != self._size:
            image = image.resize(self._size, Image.Resampling.BOX)
        pixels = np.asarray(image, dtype=np.uint8)
        pixels = pixels[..., None] if key[2] else pixels
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

    def fingerprint(self) -> str:
        """A short hash of the rig, the splits and the front camera's stored frames (up to
        ``FINGERPRINT_FRAMES`` PNGs, or the start of its video), whatever resolution it is
        loaded at: what a bundle records of the capture it was trained on (a path would leak
        the trainer's folders, and two performances of one rig share cameras.json and
        splits.json)."""
        digest = hashlib.sha256()
        for name in (CAMERAS_FILE, SPLITS_FILE):
            path = self.root / name
            digest.update(path.read_bytes() if path.is_file() else b"")
        digest.update(json.dumps(self.timesteps).encode())
        if isinstance(self._frames, PngFrames):
            picks = np.linspace(0, len(self) - 1, min(FINGERPRINT_FRAMES, len(self)))
            for i in sorted({round(float(p)) for p in picks}):
                digest.update(
                    frame_path(self.root, self.timesteps[i], self.front_camera).read_bytes()
                )
        else:
            with self._frames.path(self.front_camera, False).open("rb") as video:
                digest.update(video.read(FINGERPRINT_VIDEO_BYTES))
        return digest.hexdigest()[:16]
