"""Track a whole source into a code recording (``npga track``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from npga.recording import CodeRecording
from npga.tracking.expression import ExpressionBasis
from npga.tracking.filters import OneEuroFilter
from npga.tracking.pipeline import ExpressionTracker, TrackerConfig
from npga.tracking.sources import FrameSource
from npga.tracking.template import FaceTemplate


@dataclass(frozen=True)
class TrackResult:
    recording: CodeRecording
    basis: ExpressionBasis
    frames: int
    detected: int  # frames in which Face Mesh found a face

    @property
    def detection_rate(self) -> float:
        return self.detected / max(self.frames, 1)


def track_source(
    source: FrameSource,
    template: FaceTemplate,
    *,
    basis: ExpressionBasis | None = None,
    fit_dim: int = 48,
    config: TrackerConfig | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> TrackResult:
    """Track every frame of ``source``. Without ``basis``, fit a ``fit_dim`` basis on the
    calibrated frames of this source and encode with it (codes then filtered like the tracker's)."""
    config = config or TrackerConfig()
    tracker = ExpressionTracker(template, basis, config)
    displacements, rotations, translations, gazes, timestamps, codes = [], [], [], [], [], []
    present: list[bool] = []  # a calibrated face in this frame
    detected = 0
    try:
        for index, frame in enumerate(source.frames()):
            state = tracker.process(frame.rgb, frame.timestamp)
            displacements.append(state.displacement.astype(np.float32))
            rotations.append(state.rotation_wxyz)
            translations.append(state.translation)
            gazes.append(state.gaze)
            present.append(state.face_present and not state.calibrating)
            detected += state.face_present
            timestamps.append(frame.timestamp)
            if state.code is not None:
                codes.append(state.code)
            if on_frame is not None:
                on_frame(index + 1)
    finally:
        tracker.close()
    if not timestamps:
        raise ValueError(f"{source.description}: no frames")
    valid = np.array(present)
    if basis is None:
        if valid.sum() < fit_dim:
            raise ValueError(
                f"{source.description}: only {int(valid.sum())} frames with a calibrated face; "
                f"fitting a {fit_dim}-dim basis needs at least {fit_dim}"
            )
        basis = ExpressionBasis.fit(np.stack(displacements)[valid], fit_dim, template)
        smoother = OneEuroFilter(config.filter) if config.filter is not None else None
        codes = []
        for d, t in zip(displacements, timestamps, strict=True):
            z = basis.encode(d.astype(np.float64))
            codes.append(smoother(z, t) if smoother is not None else z)
    recording = CodeRecording(
        codes=np.stack(codes).astype(np.float32),
        rotation_wxyz=np.stack(rotations).astype(np.float32),
        translation=np.stack(translations).astype(np.float32),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        gaze=np.stack(gazes).astype(np.float32),
        face_present=valid,
    )
    return TrackResult(recording, basis, len(timestamps), detected)
