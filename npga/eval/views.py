"""An avatar trained on one camera of a multi-view capture, seen from the capture's other
cameras (``npga eval-views``): the novel-view figures of an avatar made by ``npga create`` from
one camera of a synthetic rig.

Protocol, per evaluated timestep (up to ``timesteps`` of the avatar's training frames, so that
the expression is one the avatar has seen and only the viewpoint is new):

1. The head pose in the rig's world comes from the rig itself: Face Mesh on every camera,
   triangulated and fitted with the neutral template (as ``npga train`` tracks a capture). The
   avatar's canonical frame is the same template frame at the avatar's own scale, so the rig is
   rescaled to the avatar (camera translations and head positions divided by the ratio of the
   two face sizes; images do not change under a common scale).
2. That pose is refined photometrically on the camera the avatar was made from (``--fit-camera``,
   the rig's front camera), never on the evaluated ones.
3. The avatar, driven by its own code for that frame, is rendered from the evaluated cameras and
   compared with their images (PSNR, SSIM, PSNR inside the head mask). The masks are cut below
   the jaw as ``npga create`` cuts its own, so ``psnr_mask`` compares heads, whichever avatar
   is evaluated (a multi-view one trained on the rig's neck too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npga.cameras import Cameras
from npga.create.masks import neck_cut
from npga.data import CaptureDataset
from npga.data.layout import (
    CaptureSplits,
    frame_path,
    read_cameras,
    write_cameras,
    write_image,
    write_splits,
)
from npga.eval.evaluate import evaluate_split, evenly_spread
from npga.eval.pose_fit import fit_poses
from npga.model import GaussianAvatar
from npga.tracking.capture import (
    MIN_VIEWS,
    CaptureTracking,
    detect_landmarks,
    projection_matrices,
    triangulate_face,
)
from npga.tracking.expression import canonicalize
from npga.tracking.procrustes import rotation_to_quat_wxyz, weighted_procrustes
from npga.tracking.template import FaceTemplate
from npga.video import to_uint8


@dataclass(frozen=True)
class RigPoses:
    timesteps: list[int]  # those whose head the rig triangulates
    rotation_wxyz: np.ndarray  # [T, 4] template -> world
    translation: np.ndarray  # [T, 3] metres
    scale: float  # median metres per template unit
    landmarks: np.ndarray  # [T, C, L, 3] Face Mesh in every camera, pixels
    found: np.ndarray  # [T, C] bool


def rig_poses(dataset: CaptureDataset, timesteps: list[int], template: FaceTemplate) -> RigPoses:
    """Head poses of ``timesteps`` triangulated by the rig (see the module doc)."""
    landmarks, found = detect_landmarks(
        lambda t, c: (dataset.image(t, c).numpy() * 255 + 0.5).astype(np.uint8),
        timesteps,
        dataset.camera_names,
    )
    projections = projection_matrices(dataset.cameras)
    centres = dataset.cameras.centers().detach().double().numpy()
    kept, rows, rotations, translations, scales = [], [], [], [], []
    for ti, timestep in enumerate(timesteps):
        views = np.flatnonzero(found[ti])
        if views.size < MIN_VIEWS:
            continue
        world = triangulate_face(
            landmarks[ti, views, :, :2], projections[views], centres[views], template
        )
        pose = weighted_procrustes(template.points, world, template.weights)
        kept.append(timestep)
        rows.append(ti)
        rotations.append(rotation_to_quat_wxyz(pose.rotation))
        translations.append(pose.translation)
        scales.append(pose.scale)
    if not kept:
        raise ValueError(f"{dataset.root}: no evaluated timestep shows a face in {MIN_VIEWS} views")
    return RigPoses(
        kept,
        np.stack(rotations),
        np.stack(translations),
        float(np.median(scales)),
        landmarks[rows],
        found[rows],
    )


def rescaled_capture(
    dataset: CaptureDataset, poses: RigPoses, into: Path, factor: float, template: FaceTemplate
) -> Path:
    """The rig at ``poses.timesteps`` as a capture whose world is scaled by ``factor`` (camera
    positions multiplied by it; images linked), with head-only masks: each camera's mask cut
    below the jaw and at the neck from its Face Mesh landmarks, as ``npga create`` cuts its
    own (a one-video avatar has no neck below that cut, and the comparison is of heads)."""
    root = dataset.root
    into.mkdir(parents=True, exist_ok=True)
    rig = read_cameras(root)
    world_to_cam = rig.cameras.world_to_cam.clone()
    world_to_cam[:, :3, 3] *= factor
    scaled = Cameras(world_to_cam, rig.cameras.intrinsics, rig.cameras.width, rig.cameras.height)
    write_cameras(into, rig.names, scaled, rig.front_camera)
    size = (rig.cameras.height, rig.cameras.width)
    for ti, timestep in enumerate(poses.timesteps):
        for ci, camera in enumerate(dataset.camera_names):
            link = frame_path(into, timestep, camera)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(frame_path(root, timestep, camera).resolve())
            mask = dataset.frame(timestep, [camera]).masks
            cut = np.ones(size, np.float32)
            if poses.found[ti, ci]:
                points = poses.landmarks[ti, ci] * (size[1] / dataset.cameras.width)
                cut = neck_cut(size, points, canonicalize(points, template)[0])
            head = (mask[0, ..., 0].numpy() if mask is not None else np.ones(size)) * cut
            write_image(frame_path(into, timestep, camera, masks=True), to_uint8(head))
    write_splits(into, CaptureSplits(list(poses.timesteps), [], []))
    return into


def evaluate_views(
    avatar: GaussianAvatar,
    avatar_tracking: CaptureTracking,  # the avatar's own (refined) tracking: codes per timestep
    capture: Path,
    cameras: list[str],
    fit_camera: str,
    template: FaceTemplate,
    scratch: Path,
    *,
    frames: list[int] | None = None,
    timesteps: int = 24,
    fit_steps: int = 100,
) -> dict[str, Any]:
    """The protocol of the module doc, as a JSON-ready report. ``frames``: the avatar's frames
    to evaluate at (default: all it tracked; up to ``timesteps`` of them, evenly spread)."""
    rig = CaptureDataset(capture)
    for name in [*cameras, fit_camera]:
        if name not in rig.camera_names:
            raise ValueError(
                f"{capture}: no camera {name!r} (cameras: {', '.join(rig.camera_names)})"
            )
    pool = frames if frames is not None else [int(t) for t in avatar_tracking.timesteps]
    usable = set(avatar_tracking.timesteps.tolist()) & set(rig.timesteps)
    trained = [t for t in pool if t in usable]
    if not trained:
        raise ValueError(f"{capture}: shares no timestep with the avatar's tracked frames")
    chosen = evenly_spread(trained, timesteps)
    poses = rig_poses(rig, chosen, template)
    kept = poses.timesteps
    factor = avatar_tracking.face_unit_metres / poses.scale  # rig metres -> avatar metres
    scaled = CaptureDataset(rescaled_capture(rig, poses, scratch, factor, template))
    rows = [avatar_tracking.index(t) for t in kept]
    tracking = CaptureTracking(
        timesteps=np.asarray(kept, np.int64),
        codes=avatar_tracking.codes[rows],
        monocular_codes=avatar_tracking.monocular_codes[rows],
        calibration=avatar_tracking.calibration,
        rotation_wxyz=poses.rotation_wxyz.astype(np.float32),
        translation=(poses.translation * factor).astype(np.float32),
        neutral_landmarks=avatar_tracking.neutral_landmarks,
        face_unit_metres=avatar_tracking.face_unit_metres,
        neutral_timestep=kept[0],
        basis=avatar_tracking.basis,
        detection_rate=1.0,
    )
    fitted = fit_poses(avatar, scaled, tracking, kept, fit_steps, cameras=[fit_camera])
    avatar.eval()
    return {
        "timesteps": len(kept),
        "timesteps_evaluated": list(kept),
        "fit_camera": fit_camera,
        "rig_to_avatar_scale": round(factor, 4),
        "fit_view": evaluate_split(avatar, scaled, fitted, kept, [fit_camera]).summary(),
        "novel_view": evaluate_split(avatar, scaled, fitted, kept, cameras).summary(),
    }
