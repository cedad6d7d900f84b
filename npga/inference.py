"""Driving an avatar: expression frames in, uint8 images out.

The one inference path that ``telepresence`` (the live render worker) and ``npga render`` (offline
videos) share, so that both show the same head for the same frames. A wire translation is in
face units (the sender's outer-eye-corner distance, docs/protocol.md); it becomes metres with the
avatar's own face unit (its template's eye-corner distance), and then the session's framer
(npga/framing.py) decides where the head is shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from npga.bundle import AvatarBundle
from npga.cameras import Cameras
from npga.codes import ExpressionFrame
from npga.detail import reduced_detail
from npga.framing import Framer, HeadFrame
from npga.model import HeadPose
from npga.tracking import topology

IDENTITY_WXYZ = (1.0, 0.0, 0.0, 0.0)


class AvatarDriver:
    """A loaded avatar ready to render driven frames (its inference cache built once)."""

    def __init__(self, bundle: AvatarBundle, detail: float = 1.0) -> None:
        """``detail``: the fraction of the Gaussians rendered, those that show most
        (npga/detail.py; 1: all)."""
        self.head = HeadFrame.of_avatar(bundle.avatar)  # of the full avatar: the same framing
        self.avatar = reduced_detail(bundle.avatar, self.head, detail)
        self.cache = self.avatar.inference_cache()
        template = self.avatar.prior.template.detach().cpu().numpy()
        self.face_unit_metres = float(topology.eye_corner_distance(template))

    @property
    def expression_dim(self) -> int:
        return int(self.avatar.config.expression_dim)

    def render(
        self,
        codes: np.ndarray,  # [B, E] expression codes
        rotations_wxyz: np.ndarray,  # [B, 4] head rotations (unit quaternions)
        translations: np.ndarray,  # [B, 3] head translations, face units (as on the wire)
        timestamps: np.ndarray,  # [B] seconds, the sender's clock (the framers' filters use it)
        camera: Cameras,  # one camera for the batch
        framers: Sequence[Framer | None] | None = None,  # per frame; None: as sent
        background: float = 1.0,
    ) -> np.ndarray:
        """[B, H, W, 3] uint8 images of the avatar."""
        rotations = np.asarray(rotations_wxyz, dtype=np.float32)
        metres = np.asarray(translations, dtype=np.float32) * self.face_unit_metres
        for i, framer in enumerate(framers or ()):
            if framer is not None:
                metres[i] = framer.translation(rotations[i], metres[i], float(timestamps[i]))
        device = self.avatar.device
        pose = HeadPose(torch.from_numpy(rotations).to(device), torch.from_numpy(metres).to(device))
        with torch.inference_mode():
            result = self.avatar.render(
                torch.from_numpy(np.asarray(codes, dtype=np.float32)).to(device),
                camera.to(device),
                pose,
                background=(background, background, background),
                cache=self.cache,
            )
            rgb = result.rgb[:, 0].clamp(0, 1).mul(255).add(0.5).to(torch.uint8)
        return np.asarray(rgb.cpu().numpy())

    def render_frames(
        self,
        frames: Sequence[ExpressionFrame | None],  # B frames; None: the neutral face
        camera: Cameras,
        framers: Sequence[Framer | None] | None = None,
        background: float = 1.0,
    ) -> np.ndarray:
        """[B, H, W, 3] uint8 images of ``frames`` (a missing frame shows the neutral face,
        unframed)."""
        b = len(frames)
        codes = np.zeros((b, self.expression_dim), dtype=np.float32)
        rotations = np.tile(np.array(IDENTITY_WXYZ, dtype=np.float32), (b, 1))
        translations = np.zeros((b, 3), dtype=np.float32)
        timestamps = np.zeros(b)
        shown: list[Framer | None] = [None] * b
        for i, frame in enumerate(frames):
            if frame is None:
                continue
            codes[i], rotations[i], translations[i] = (
                frame.code,
                frame.rotation_wxyz,
                frame.translation,
            )
            timestamps[i] = frame.timestamp
            shown[i] = framers[i] if framers is not None else None
        return self.render(codes, rotations, translations, timestamps, camera, shown, background)
