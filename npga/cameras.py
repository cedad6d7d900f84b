"""Pinhole cameras in the OpenCV convention (x right, y down, z forward)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from npga.geometry import look_at_world_to_cam


@dataclass(frozen=True)
class Cameras:
    """C pinhole cameras that share one image size."""

    world_to_cam: Tensor  # [C, 4, 4] OpenCV extrinsics
    intrinsics: Tensor  # [C, 3, 3] pixel-space K
    width: int
    height: int

    def __post_init__(self) -> None:
        c = self.world_to_cam.shape[0] if self.world_to_cam.ndim == 3 else -1
        if self.world_to_cam.shape != (c, 4, 4) or c < 1:
            raise ValueError(
                f"world_to_cam must be [C, 4, 4], got {tuple(self.world_to_cam.shape)}"
            )
        if self.intrinsics.shape != (c, 3, 3):
            raise ValueError(f"intrinsics must be [{c}, 3, 3], got {tuple(self.intrinsics.shape)}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @property
    def num_cameras(self) -> int:
        return int(self.world_to_cam.shape[0])

    @property
    def device(self) -> torch.device:
        return self.world_to_cam.device

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Cameras:
        dtype = dtype or self.world_to_cam.dtype
        return Cameras(
            self.world_to_cam.to(device, dtype),
            self.intrinsics.to(device, dtype),
            self.width,
            self.height,
        )

    def centers(self) -> Tensor:
        """Camera centres in world coordinates, [C, 3]."""
        rotation = self.world_to_cam[:, :3, :3]
        translation = self.world_to_cam[:, :3, 3:]
        return -(rotation.transpose(1, 2) @ translation).squeeze(-1)

    def resized(self, width: int, height: int) -> Cameras:
        """The same cameras rendering ``width`` x ``height`` images (intrinsics rescaled)."""
        scale = torch.tensor(
            [[width / self.width], [height / self.height], [1.0]], dtype=self.intrinsics.dtype
        ).to(self.device)
        return Cameras(self.world_to_cam, self.intrinsics * scale, width, height)

    def select(self, index: int | slice | Tensor) -> Cameras:
        w2c, k = self.world_to_cam[index], self.intrinsics[index]
        if w2c.ndim == 2:
            w2c, k = w2c[None], k[None]
        return Cameras(w2c, k, self.width, self.height)


def orbit_cameras(
    yaw_degrees: list[float],
    *,
    distance: float,
    focal_px: float,
    width: int,
    height: int,
    pitch_degrees: float = 0.0,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Cameras:
    """Cameras on a horizontal arc around ``target`` looking at it.

    Yaw 0 sits on the -z axis looking along +z (the front of an avatar whose face points to -z).
    Positive yaw moves the camera to the subject's left (+x); positive pitch moves it up (-y).
    """
    centre = torch.tensor(target, dtype=torch.float32)
    up = torch.tensor([0.0, -1.0, 0.0])
    extrinsics = []
    pitch = math.radians(pitch_degrees)
    for yaw_deg in yaw_degrees:
        yaw = math.radians(yaw_deg)
        direction = torch.tensor(
            [math.sin(yaw) * math.cos(pitch), -math.sin(pitch), -math.cos(yaw) * math.cos(pitch)]
        )
        extrinsics.append(look_at_world_to_cam(centre + distance * direction, centre, up))
    intrinsics = torch.tensor(
        [[focal_px, 0.0, width / 2], [0.0, focal_px, height / 2], [0.0, 0.0, 1.0]]
    ).expand(len(yaw_degrees), 3, 3)
    return Cameras(torch.stack(extrinsics), intrinsics.clone(), width, height)
