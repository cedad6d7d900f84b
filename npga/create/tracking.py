"""Stage 4 of ``npga create``: codes and head poses of a one-camera capture, from the live
sender's own monocular pipeline.

Every frame goes through exactly the canonicalisation a webcam sender runs
(:func:`npga.tracking.expression.canonicalize`: weighted Procrustes onto the neutral template),
so the avatar trains on the code distribution it will be driven with; the live calibration is
therefore the identity. The expression basis is fitted on the clip's training frames. Head
poses come from the same Procrustes fit through the virtual camera (:mod:`npga.create.camera`);
training refines them photometrically, as it does for multi-view captures. The neutral frame is
the most neutral one that faces the camera, so the bundle's default camera is frontal.
"""

from __future__ import annotations

import numpy as np

from npga.create.camera import FACE_UNIT_METRES, CropCamera, head_pose_metres
from npga.tracking.capture import FORWARD, CaptureTracking, fit_expression_space
from npga.tracking.expression import canonicalize
from npga.tracking.procrustes import rotation_to_quat_wxyz
from npga.tracking.template import FaceTemplate

# The neutral frame (whose head pose the bundle's default camera looks from) is the most neutral
# training frame among those facing the camera within this angle: the default view is frontal.
FRONTAL_DEGREES = 12.0


def facing_degrees(forward: np.ndarray, position: np.ndarray) -> float:
    """Angle between the face's forward direction [3] and the direction from the face at
    ``position`` [3] to the camera (the origin), degrees: 0 when the face looks into the camera."""
    to_camera = -position / np.linalg.norm(position)
    return float(np.degrees(np.arccos(np.clip(forward @ to_camera, -1.0, 1.0))))


def track_monocular(
    landmarks: np.ndarray,  # [T, L, 3] Face Mesh landmarks of the capture's frames, crop pixels
    timesteps: list[int],  # [T] the capture's timesteps, in the order of ``landmarks``
    train_timesteps: list[int],
    camera: CropCamera,
    template: FaceTemplate,
    expression_dim: int,
) -> CaptureTracking:
    """A :class:`CaptureTracking` of a one-camera capture (see the module doc)."""
    train = set(train_timesteps)
    train_rows = [i for i, t in enumerate(timesteps) if t in train]
    if len(train_rows) < expression_dim:
        raise ValueError(
            f"only {len(train_rows)} usable training frames; a {expression_dim}-dim expression "
            f"basis needs at least {expression_dim} (record a longer clip)"
        )
    rotations, translations, canonical, facings = [], [], [], []
    for points in landmarks:
        pose, shape = canonicalize(points.astype(np.float64), template)
        rotation, translation = head_pose_metres(pose, camera)
        rotations.append(rotation_to_quat_wxyz(rotation))
        facings.append(rotation @ FORWARD)
        translations.append(translation)
        canonical.append(shape)
    basis, codes = fit_expression_space(np.stack(canonical), train_rows, expression_dim, template)
    frontal = [
        r for r in train_rows if facing_degrees(facings[r], translations[r]) < FRONTAL_DEGREES
    ]
    candidates = frontal or train_rows
    neutral_row = candidates[int(np.argmin(np.linalg.norm(codes[candidates], axis=1)))]
    dim = basis.dim
    return CaptureTracking(
        timesteps=np.asarray(timesteps, dtype=np.int64),
        codes=codes,
        monocular_codes=codes.copy(),
        calibration=np.eye(dim, dtype=np.float32),
        rotation_wxyz=np.stack(rotations).astype(np.float32),
        translation=np.stack(translations).astype(np.float32),
        neutral_landmarks=(canonical[neutral_row] * FACE_UNIT_METRES).astype(np.float32),
        face_unit_metres=FACE_UNIT_METRES,
        neutral_timestep=int(timesteps[neutral_row]),
        basis=basis,
        detection_rate=1.0,
    )
