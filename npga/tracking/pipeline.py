"""Frame -> head pose, gaze and expression code: the sender's whole tracking pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from npga.codes import ExpressionFrame, FrameFlags
from npga.tracking.expression import ExpressionBasis, NeutralCalibrator, canonicalize
from npga.tracking.facemesh import FaceLandmarks, FaceMeshTracker
from npga.tracking.filters import OneEuroConfig, OneEuroFilter, QuaternionFilter
from npga.tracking.gaze import gaze_angles
from npga.tracking.procrustes import Similarity, rotation_to_quat_wxyz
from npga.tracking.template import FaceTemplate

# Face units from the camera at the neutral pose, for turning a change of scale into depth.
NOMINAL_DISTANCE = 6.0


@dataclass(frozen=True)
class TrackerConfig:
    calibration_frames: int = 30  # neutral from the first ~1 s at 30 fps
    filter: OneEuroConfig | None = field(default_factory=OneEuroConfig)  # None = unfiltered


@dataclass(frozen=True)
class FaceObservation:
    """What one frame shows, before any per-person state (neutral, filters) is applied."""

    pose: Similarity  # template -> image (pixels)
    canonical: np.ndarray  # [L, 3] landmarks with pose removed, face units
    gaze: np.ndarray  # [4] radians
    landmarks: FaceLandmarks | None = None  # raw detection (absent when replayed from disk)


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
        if self._filters is not None:
            for f in self._filters:
                f.reset()

    def close(self) -> None:
        if self._facemesh is not None:
            self._facemesh.close()

    def process(self, rgb: np.ndarray, timestamp: float) -> TrackedFrame:
        """rgb [H, W, 3] uint8 at ``timestamp`` seconds -> the tracked state."""
        return self.update(self.observe(rgb), timestamp)

    def observe(self, rgb: np.ndarray) -> FaceObservation | None:
        """Face Mesh, head pose and gaze of one frame [H, W, 3] uint8; None without a face."""
        if self._facemesh is None:
            self._facemesh = FaceMeshTracker()
        face = self._facemesh.process(rgb)
        if face is None:
            return None
        pose, canonical = canonicalize(face.points, self.template)
        return FaceObservation(pose, canonical, gaze_angles(canonical), face)

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
