"""Frame -> head pose, gaze and expression code: the sender's whole tracking pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from npga.codes import ExpressionFrame, FrameFlags
from npga.tracking.expression import ExpressionBasis, NeutralCalibrator
from npga.tracking.facemesh import FaceLandmarks, FaceMeshTracker
from npga.tracking.filters import OneEuroConfig, OneEuroFilter, QuaternionFilter
from npga.tracking.gaze import gaze_angles
from npga.tracking.identity import Continuity, LockConfig, PersonLock
from npga.tracking.procrustes import Similarity, rotation_to_quat_wxyz
from npga.tracking.template import FaceTemplate

# Face units from the camera at the neutral pose, for turning a change of scale into depth.
NOMINAL_DISTANCE = 6.0


@dataclass(frozen=True)
class TrackerConfig:
    calibration_frames: int = 30  # neutral from the first ~1 s at 30 fps
    filter: OneEuroConfig | None = field(default_factory=OneEuroConfig)  # None = unfiltered
    max_faces: int = 2  # faces Face Mesh looks for; the lock follows one (identity.PersonLock)
    lock: LockConfig = field(default_factory=LockConfig)
    glide_seconds: float = 0.4  # a re-acquired face's pose is reached over this long


@dataclass(frozen=True)
class FaceObservation:
    """What one frame shows, before any per-person state (neutral, filters) is applied."""

    pose: Similarity  # template -> image (pixels)
    canonical: np.ndarray  # [L, 3] landmarks with pose removed, face units
    gaze: np.ndarray  # [4] radians
    landmarks: FaceLandmarks | None = None  # raw detection (absent when replayed from disk)
    continuity: Continuity = Continuity.TRACKED  # after a loss or a cut: glide, re-anchor


@dataclass(frozen=True)
class TrackedFrame:
    """What the tracker knows after one frame."""

    face_present: bool
    calibrating: bool
    rotation_wxyz: np.ndarray  # [4] relative to the neutral head pose
    translation: np.ndarray  # [3] face units, relative to neutral
    gaze: np.ndarray  # [4] radians
    displacement: np.ndarray  # [L, 3] canonical landmarks minus neutral, face units
    code: np.ndarray | None  # [E] when a basis is set
    landmarks: FaceLandmarks | None  # raw detection, None when no face

    def to_expression_frame(self, seq: int, timestamp: float) -> ExpressionFrame:
        if self.code is None:
            raise ValueError("no expression basis: cannot make an expression frame")
        flags = FrameFlags(0)
        if self.face_present:
            flags |= FrameFlags.FACE_PRESENT
        flags |= FrameFlags.CALIBRATING if self.calibrating else FrameFlags.CALIBRATED
        return ExpressionFrame(
            seq=seq % 2**32,
            timestamp=timestamp,
            rotation_wxyz=self.rotation_wxyz,
            translation=self.translation,
            gaze=self.gaze,
            code=self.code,
            flags=flags,
        )


class ExpressionTracker:
    """Face Mesh + head pose + neutral calibration + expression code + gaze, filtered.

    Never raises on a frame without a face: it reports ``face_present=False`` and holds the
    last pose, gaze and code. Until the neutral is calibrated, codes are zero.

    With several faces in view it follows one person (:class:`~npga.tracking.identity.
    PersonLock`). A face re-acquired after a loss glides from the held pose to its own over
    ``glide_seconds``; after a shot cut the translation is also re-anchored (a cut moves the
    camera, not the person), so neither shows as a jump.

    ``process`` = ``update(observe(frame))``: ``observe`` is the expensive, stateless part (Face
    Mesh, Procrustes, gaze); ``update`` applies calibration, filtering and the basis, so stored
    observations can be replayed exactly (resumable offline tracking).
    """

    def __init__(
        self,
        template: FaceTemplate,
        basis: ExpressionBasis | None = None,
        config: TrackerConfig | None = None,
        facemesh: FaceMeshTracker | None = None,
    ) -> None:
        self.template = template
        self.basis = basis
        self.config = config or TrackerConfig()
        self._facemesh = facemesh
        self.lock = PersonLock(template, self.config.lock)
        self._glide: tuple[float, np.ndarray, np.ndarray] | None = None  # start, rotation, shift
        self._calibrator = NeutralCalibrator(frames=self.config.calibration_frames)
        self._neutral: np.ndarray | None = None
        self._neutral_rotation = np.eye(3)
        self._neutral_translation = np.zeros(3)
        self._neutral_scale = 1.0
        filter_config = self.config.filter
        self._filters = (
            (QuaternionFilter(filter_config), OneEuroFilter(filter_config),
             OneEuroFilter(filter_config), OneEuroFilter(filter_config))
            if filter_config is not None
            else None
        )  # fmt: skip
        num_landmarks = template.points.shape[0]
        self._last = TrackedFrame(
            face_present=False,
            calibrating=True,
            rotation_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
            translation=np.zeros(3),
            gaze=np.zeros(4),
            displacement=np.zeros((num_landmarks, 3)),
            code=np.zeros(basis.dim) if basis is not None else None,
            landmarks=None,
        )

    @property
    def calibrated(self) -> bool:
        return self._neutral is not None

    def recalibrate(self) -> None:
        """Measure the neutral again from the next frames with a face."""
        self._calibrator.reset()
        self._neutral = None
        self.lock.reset()
        if self._filters is not None:
            for f in self._filters:
                f.reset()

    def close(self) -> None:
        if self._facemesh is not None:
            self._facemesh.close()

    def process(self, rgb: np.ndarray, timestamp: float) -> TrackedFrame:
        """rgb [H, W, 3] uint8 at ``timestamp`` seconds -> the tracked state."""
        return self.update(self.observe(rgb, timestamp), timestamp)

    def observe(self, rgb: np.ndarray, timestamp: float) -> FaceObservation | None:
        """Face Mesh, head pose and gaze of the followed person in one frame [H, W, 3] uint8
        at ``timestamp`` seconds; None when they are not in view."""
        if self._facemesh is None:
            self._facemesh = FaceMeshTracker(max_faces=self.config.max_faces)
        face = self.lock.select(rgb, self._facemesh.process_all(rgb), timestamp)
        if face is None:
            return None
        return FaceObservation(
            face.pose, face.canonical, gaze_angles(face.canonical), face.landmarks,
            face.continuity,
        )  # fmt: skip

    def update(self, observation: FaceObservation | None, timestamp: float) -> TrackedFrame:
        """Advance the per-person state (neutral, filters) by one observed frame."""
        if observation is None:
            self._last = TrackedFrame(
                **{**self._last.__dict__, "face_present": False, "landmarks": None}
            )
            return self._last
        pose, canonical, face = observation.pose, observation.canonical, observation.landmarks
        if self._neutral is None:
            neutral = self._calibrator.add(canonical)
            if neutral is None:
                self._last = TrackedFrame(
                    **{**self._last.__dict__, "face_present": True, "calibrating": True,
                       "landmarks": face}
                )  # fmt: skip
                return self._last
            self._neutral = neutral
            self._neutral_rotation = pose.rotation
            self._neutral_translation = pose.translation
            self._neutral_scale = pose.scale
        elif observation.continuity != Continuity.TRACKED:
            if observation.continuity == Continuity.NEW_SHOT:
                self._reanchor(pose, self._last.translation)
            self._glide = (timestamp, self._last.rotation_wxyz, self._last.translation)
            if self._filters is not None:  # they restart from the face found again
                for f in self._filters:
                    f.reset()
        relative = pose.rotation @ self._neutral_rotation.T
        rotation = rotation_to_quat_wxyz(relative)
        shift = (pose.translation - self._neutral_translation) / self._neutral_scale
        depth = NOMINAL_DISTANCE * (self._neutral_scale / pose.scale - 1.0)
        translation = np.array([shift[0], shift[1], depth])
        displacement = canonical - self._neutral
        gaze = observation.gaze
        code = self.basis.encode(displacement) if self.basis is not None else None
        if self._filters is not None:
            rotation = self._filters[0](rotation, timestamp)
            translation = self._filters[1](translation, timestamp)
            gaze = self._filters[2](gaze, timestamp)
            if code is not None:
                code = self._filters[3](code, timestamp)
        if self._glide is not None:
            rotation, translation = self._glided(rotation, translation, timestamp)
        self._last = TrackedFrame(
            face_present=True,
            calibrating=False,
            rotation_wxyz=rotation,
            translation=translation,
            gaze=gaze,
            displacement=displacement,
            code=code,
            landmarks=face,
        )
        return self._last

    def _reanchor(self, pose: Similarity, translation: np.ndarray) -> None:
        """Move the neutral's position and scale so that ``pose`` gives ``translation`` [3]."""
        self._neutral_scale = pose.scale * (1.0 + translation[2] / NOMINAL_DISTANCE)
        self._neutral_translation = pose.translation.copy()
        self._neutral_translation[:2] -= self._neutral_scale * translation[:2]

    def _glided(
        self, rotation: np.ndarray, translation: np.ndarray, timestamp: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The way from the held pose (rotation wxyz [4], translation [3]) to this one."""
        assert self._glide is not None
        start, from_rotation, from_translation = self._glide
        progress = (timestamp - start) / self.config.glide_seconds
        if not 0.0 <= progress < 1.0:
            self._glide = None
            return rotation, translation
        weight = progress * progress * (3 - 2 * progress)  # smoothstep
        return (
            slerp(from_rotation, rotation, weight),
            from_translation + weight * (translation - from_translation),
        )


def slerp(q0: np.ndarray, q1: np.ndarray, weight: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions [4] (wxyz), the short way round."""
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + weight * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = np.arccos(dot)
    return (np.sin((1 - weight) * angle) * q0 + np.sin(weight * angle) * q1) / np.sin(angle)
