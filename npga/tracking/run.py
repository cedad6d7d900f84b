"""Track a whole source into a code recording (``npga track``), resumably.

Tracking runs in two passes. The expensive one (Face Mesh, the lock on one person, Procrustes,
gaze per frame) stores its observations and checkpoints them, with the lock's state, every
``CHECKPOINT_EVERY`` frames (and when interrupted); ``resume`` skips the frames already observed.
The cheap one replays the stored observations through :meth:`ExpressionTracker.update` (neutral
calibration, relative pose, basis, filters), so an interrupted and resumed run gives the
recording an uninterrupted one gives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npga.recording import CodeRecording
from npga.tracking.expression import ExpressionBasis
from npga.tracking.filters import OneEuroFilter
from npga.tracking.identity import Continuity
from npga.tracking.pipeline import ExpressionTracker, FaceObservation, TrackerConfig
from npga.tracking.procrustes import Similarity
from npga.tracking.sources import FrameSource
from npga.tracking.template import FaceTemplate

CHECKPOINT_EVERY = 200


@dataclass
class ObservationLog:
    """Per-frame observations in columns; the checkpoint format of offline tracking."""

    found: list[bool] = field(default_factory=list)
    canonical: list[np.ndarray] = field(default_factory=list)  # [L, 3] float32 each
    rotation: list[np.ndarray] = field(default_factory=list)  # [3, 3]
    translation: list[np.ndarray] = field(default_factory=list)  # [3]
    scale: list[float] = field(default_factory=list)
    gaze: list[np.ndarray] = field(default_factory=list)  # [4]
    timestamps: list[float] = field(default_factory=list)
    continuity: list[int] = field(default_factory=list)  # identity.Continuity per frame
    lock: dict[str, np.ndarray] = field(default_factory=dict)  # PersonLock.state() at the end

    def __len__(self) -> int:
        return len(self.timestamps)

    def append(self, observation: FaceObservation | None, timestamp: float, num_landmarks: int):
        self.found.append(observation is not None)
        if observation is None:
            self.canonical.append(np.zeros((num_landmarks, 3), np.float32))
            self.rotation.append(np.eye(3))
            self.translation.append(np.zeros(3))
            self.scale.append(1.0)
            self.gaze.append(np.zeros(4))
            self.continuity.append(int(Continuity.TRACKED))
        else:
            self.canonical.append(observation.canonical.astype(np.float32))
            self.rotation.append(observation.pose.rotation)
            self.translation.append(observation.pose.translation)
            self.scale.append(observation.pose.scale)
            self.gaze.append(observation.gaze)
            self.continuity.append(int(observation.continuity))
        self.timestamps.append(timestamp)

    def observation(self, index: int) -> FaceObservation | None:
        if not self.found[index]:
            return None
        pose = Similarity(self.rotation[index], self.translation[index], self.scale[index])
        return FaceObservation(
            pose, self.canonical[index].astype(np.float64), self.gaze[index],
            continuity=Continuity(self.continuity[index]),
        )  # fmt: skip

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            found=np.array(self.found, dtype=bool),
            canonical=np.stack(self.canonical),
            rotation=np.stack(self.rotation),
            translation=np.stack(self.translation),
            scale=np.array(self.scale),
            gaze=np.stack(self.gaze),
            timestamps=np.array(self.timestamps),
            continuity=np.array(self.continuity, dtype=np.int8),
            **{f"lock_{name}": value for name, value in self.lock.items()},
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ObservationLog:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    found=[bool(x) for x in data["found"]],
                    canonical=list(data["canonical"]),
                    rotation=list(data["rotation"]),
                    translation=list(data["translation"]),
                    scale=[float(x) for x in data["scale"]],
                    gaze=list(data["gaze"]),
                    timestamps=[float(x) for x in data["timestamps"]],
                    continuity=[int(x) for x in data["continuity"]]
                    if "continuity" in data.files  # checkpoints before 2026-12-02 lack it
                    else [0] * len(data["timestamps"]),
                    lock={k[5:]: data[k] for k in data.files if k.startswith("lock_")},
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: unreadable tracking checkpoint ({error})") from None


@dataclass(frozen=True)
class TrackResult:
    recording: CodeRecording
    basis: ExpressionBasis
    frames: int
    detected: int  # frames in which Face Mesh found a face

    @property
    def detection_rate(self) -> float:
        return self.detected / max(self.frames, 1)


def observe_source(
    source: FrameSource,
    template: FaceTemplate,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_frame: Callable[[int], None] | None = None,
) -> ObservationLog:
    """The expensive pass: one observation per frame, checkpointed."""
    log = ObservationLog.load(checkpoint) if resume and checkpoint and checkpoint.exists() else None
    log = log or ObservationLog()
    observer = ExpressionTracker(template)
    if log.lock:
        observer.lock.restore(log.lock)  # who was followed when the run stopped
    num_landmarks = template.points.shape[0]
    try:
        for index, frame in enumerate(source.frames()):
            if index < len(log):
                continue  # observed before the interruption
            observation = observer.observe(frame.rgb, frame.timestamp)
            log.append(observation, frame.timestamp, num_landmarks)
            if on_frame is not None:
                on_frame(index + 1)
            if checkpoint is not None and len(log) % CHECKPOINT_EVERY == 0:
                log.lock = observer.lock.state()
                log.save(checkpoint)
    finally:
        observer.close()
        if checkpoint is not None and len(log):
            log.lock = observer.lock.state()
            log.save(checkpoint)
    if not len(log):
        raise ValueError(f"{source.description}: no frames")
    return log


def recording_from_observations(
    log: ObservationLog,
    template: FaceTemplate,
    basis: ExpressionBasis | None = None,
    fit_dim: int = 48,
    config: TrackerConfig | None = None,
) -> TrackResult:
    """The cheap pass: calibration, relative pose, gaze and codes. Without ``basis``, fit a
    ``fit_dim`` basis on the calibrated frames and encode with it (filtered like the tracker)."""
    config = config or TrackerConfig()
    tracker = ExpressionTracker(template, basis, config)
    states = [tracker.update(log.observation(i), t) for i, t in enumerate(log.timestamps)]
    valid = np.array([s.face_present and not s.calibrating for s in states])
    if basis is None:
        if valid.sum() < fit_dim:
            raise ValueError(
                f"only {int(valid.sum())} frames with a calibrated face; fitting a "
                f"{fit_dim}-dim basis needs at least {fit_dim}"
            )
        displacements = np.stack([s.displacement for s in states])
        basis = ExpressionBasis.fit(displacements[valid], fit_dim, template)
        smoother = OneEuroFilter(config.filter) if config.filter is not None else None
        codes: list[np.ndarray] = []
        for d, t in zip(displacements, log.timestamps, strict=True):
            z = basis.encode(d)
            codes.append(smoother(z, t) if smoother is not None else z)
    else:
        codes = [s.code if s.code is not None else np.zeros(basis.dim) for s in states]
    recording = CodeRecording(
        codes=np.stack(codes).astype(np.float32),
        rotation_wxyz=np.stack([s.rotation_wxyz for s in states]).astype(np.float32),
        translation=np.stack([s.translation for s in states]).astype(np.float32),
        timestamps=np.asarray(log.timestamps, dtype=np.float64),
        gaze=np.stack([s.gaze for s in states]).astype(np.float32),
        face_present=valid,
    )
    return TrackResult(recording, basis, len(log), int(sum(log.found)))
