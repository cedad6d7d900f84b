"""The avatars a server can render, and the renderer the scheduler calls from its worker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from npga.bundle import DEMO_AVATAR_DIR, AvatarBundle, load_bundle
from npga.cameras import Cameras
from npga.codes import ExpressionFrame
from npga.framing import Framer, HeadFrame, frontal_camera
from npga.inference import AvatarDriver

DEMO_AVATAR_ID = "demo"


@dataclass
class LoadedAvatar:
    id: str
    bundle: AvatarBundle
    driver: AvatarDriver  # renders its expression frames (npga's one inference path)
    camera: Cameras  # frontal on its head, at the server's resolution
    encoder_json: str  # ExpressionBasis JSON for senders
    _cameras: dict[int, Cameras] = field(default_factory=dict)  # by size (render levels)

    def camera_at(self, size: int) -> Cameras:
        """The frontal camera at ``size`` x ``size`` (the same view at a lower resolution)."""
        if size == self.camera.width:
            return self.camera
        if size not in self._cameras:
            self._cameras[size] = frontal_camera(self.head, size)
        return self._cameras[size]

    @property
    def expression_dim(self) -> int:
        return self.bundle.config.expression_dim

    @property
    def head(self) -> HeadFrame:
        """Where its head is: what the frontal camera and the framers aim at."""
        return self.driver.head

    @property
    def face_unit_metres(self) -> float:
        """The avatar's outer-eye-corner distance: what a wire translation's unit is."""
        return self.driver.face_unit_metres


class AvatarRegistry:
    """Avatars by id (the bundle directory's name); all loaded and validated at start."""

    def __init__(
        self, avatars: dict[str, LoadedAvatar], resolution: int, detail: float = 1.0
    ) -> None:
        if not avatars:
            raise ValueError("no avatars to serve")
        self._avatars = avatars
        self.resolution = resolution
        self.detail = detail  # fraction of each avatar's Gaussians rendered (npga/detail.py)
        self._added: set[str] = set()  # avatars added while serving (creation jobs)

    def add(self, avatar_id: str, bundle: AvatarBundle) -> None:
        """Serve one more avatar from now on (a creation job finished)."""
        if avatar_id in self._avatars:
            raise ValueError(f"an avatar is named {avatar_id!r} already")
        self._avatars[avatar_id] = _prepare(avatar_id, bundle, self.resolution, self.detail)
        self._added.add(avatar_id)

    def remove(self, avatar_id: str) -> bool:
        """Stop serving an avatar that :meth:`add` added; False for any other id."""
        if avatar_id not in self._added:
            return False
        self._added.discard(avatar_id)
        del self._avatars[avatar_id]
        return True

    @classmethod
    def load(
        cls, dirs: tuple[Path, ...], device: torch.device, resolution: int, detail: float = 1.0
    ) -> AvatarRegistry:
        bundles: dict[str, AvatarBundle] = {}
        for directory in dirs:
            if directory.name in bundles:
                raise ValueError(f"two avatars are named {directory.name!r}")
            bundles[directory.name] = load_bundle(directory, device)
        if not bundles:
            bundles[DEMO_AVATAR_ID] = demo_bundle(device)
        return cls.from_bundles(bundles, resolution, detail)

    @classmethod
    def from_bundles(
        cls, bundles: dict[str, AvatarBundle], resolution: int, detail: float = 1.0
    ) -> AvatarRegistry:
        prepared = {k: _prepare(k, b, resolution, detail) for k, b in bundles.items()}
        return cls(prepared, resolution, detail)

    @property
    def ids(self) -> list[str]:
        return sorted(list(self._avatars))  # a copy: jobs add avatars while workers read

    @property
    def default_id(self) -> str:
        return self.ids[0]

    def get(self, avatar_id: str) -> LoadedAvatar:
        try:
            return self._avatars[avatar_id]
        except KeyError:
            raise KeyError(f"unknown avatar {avatar_id!r} (have: {', '.join(self.ids)})") from None

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "id": a.id,
                "gaussians": a.bundle.avatar.num_gaussians,
                "gaussians_rendered": a.driver.avatar.num_gaussians,
                "expression_dim": a.expression_dim,
                "expression_space": a.bundle.config.expression_space,
            }
            for a in (self._avatars[i] for i in self.ids)
        ]


def demo_bundle(device: torch.device) -> AvatarBundle:
    """The built-in avatar: trained by `npga train` on a synthetic capture (docs/training.md)."""
    return load_bundle(DEMO_AVATAR_DIR, device)


def _prepare(avatar_id: str, bundle: AvatarBundle, resolution: int, detail: float) -> LoadedAvatar:
    driver = AvatarDriver(bundle, detail)
    return LoadedAvatar(
        id=avatar_id,
        bundle=bundle,
        driver=driver,
        camera=frontal_camera(driver.head, resolution),
        encoder_json=json.dumps(bundle.expression_encoder().to_json()),
    )


def render_avatar(
    avatar: LoadedAvatar,
    frames: list[ExpressionFrame | None],
    framers: list[Framer | None] | None = None,
    background: float = 1.0,
    size: int | None = None,
) -> np.ndarray:
    """Render B expression frames (None = neutral) of one avatar: [B, size, size, 3] uint8
    (size: the server's resolution unless given), each framed by its session's framer (None:
    the translation as sent; npga/framing.py).

    Called from the render worker thread, never from the event loop (the framers' state lives
    there too).
    """
    camera = avatar.camera if size is None else avatar.camera_at(size)
    return avatar.driver.render_frames(frames, camera, framers, background)
