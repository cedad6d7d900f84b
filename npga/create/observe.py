"""Stage 1 of ``npga create``: decode the clip and observe every frame (faces, sharpness, a
thumbnail for shot cuts), checkpointed so that an interrupted run resumes where it stopped.

Face Mesh runs in static-image mode (every frame detected afresh, up to ``MAX_FACES`` faces):
as fast as tracking mode here (5 ms a frame), it does not carry a face box across a shot cut or
from one person to another, and a resumed run observes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.identity import THUMBNAIL, skin_colour, thumbnail
from npga.tracking.sources import VideoFileSource

MAX_FACES = 3  # faces looked for in every frame
DETECT_MAX_SIDE = 1280  # larger frames are downscaled for Face Mesh (landmarks scaled back)
SHARPNESS_SIDE = 96  # the face box is resampled to this size before measuring sharpness
CHECKPOINT_EVERY = 300  # frames
NUM_LANDMARKS = 478


@dataclass
class ClipObservations:
    """What every frame of a clip shows. Faces are stored flat: face k is in frame
    ``face_frame[k]``."""

    fps: float
    width: int  # upright frame size, pixels
    height: int
    timestamps: np.ndarray  # [F] float64 seconds
    thumbnails: np.ndarray  # [F, THUMBNAIL, THUMBNAIL] float32 grey in [0, 1]
    face_frame: np.ndarray  # [K] int64
    face_points: np.ndarray  # [K, 478, 3] float32 Face Mesh landmarks, frame pixels
    face_sharpness: np.ndarray  # [K] float32 variance of the Laplacian inside the face box
    face_colour: np.ndarray  # [K, 3] float32 median CIELAB (L 0-100, a, b) of the face's skin
    complete: bool  # the whole clip was observed

    @property
    def frames(self) -> int:
        return int(self.timestamps.shape[0])

    @classmethod
    def empty(cls, fps: float) -> ClipObservations:
        return cls(
            fps=fps,
            width=0,
            height=0,
            timestamps=np.zeros(0),
            thumbnails=np.zeros((0, THUMBNAIL, THUMBNAIL), np.float32),
            face_frame=np.zeros(0, np.int64),
            face_points=np.zeros((0, NUM_LANDMARKS, 3), np.float32),
            face_sharpness=np.zeros(0, np.float32),
            face_colour=np.zeros((0, 3), np.float32),
            complete=False,
        )

    def faces_in(self, frame: int) -> np.ndarray:
        """Indices [k] of the faces seen in ``frame``."""
        return np.flatnonzero(self.face_frame == frame)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            fps=np.float64(self.fps),
            size=np.array([self.width, self.height], np.int64),
            timestamps=self.timestamps,
            thumbnails=self.thumbnails,
            face_frame=self.face_frame,
            face_points=self.face_points,
            face_sharpness=self.face_sharpness,
            face_colour=self.face_colour,
            complete=np.bool_(self.complete),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ClipObservations:
        try:
            with np.load(path, allow_pickle=False) as data:
                width, height = (int(v) for v in data["size"])
                return cls(
                    fps=float(data["fps"]),
                    width=width,
                    height=height,
                    timestamps=data["timestamps"],
                    thumbnails=data["thumbnails"],
                    face_frame=data["face_frame"],
                    face_points=data["face_points"],
                    face_sharpness=data["face_sharpness"],
                    face_colour=data["face_colour"],
                    complete=bool(data["complete"]),
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: unreadable observations ({error})") from None


def sharpness(rgb: np.ndarray, points: np.ndarray) -> float:
    """Variance of the Laplacian of the face box (landmarks [L, 3] pixels) at a fixed size:
    low for motion blur and defocus, comparable between frames of different face sizes."""
    x0, y0 = np.floor(points[:, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(points[:, :2].max(axis=0)).astype(int)
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    box = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(box.astype(np.float32), cv2.CV_32F).var())


def _detection_scale(width: int, height: int) -> float:
    return min(1.0, DETECT_MAX_SIDE / max(width, height))


def observe_clip(
    source: VideoFileSource,
    checkpoint: Path,
    resume: bool,
    on_frame: Callable[[int], None] | None = None,
) -> ClipObservations:
    """Observe every frame of ``source`` (see the module doc); ``checkpoint`` holds the state."""
    log = ClipObservations.load(checkpoint) if resume and checkpoint.is_file() else None
    if log is not None and log.complete:
        return log
    log = log or ClipObservations.empty(source.fps)
    timestamps, thumbs = list(log.timestamps), list(log.thumbnails)
    face_frame, face_points = list(log.face_frame), list(log.face_points)
    face_sharpness, face_colour = list(log.face_sharpness), list(log.face_colour)

    def snapshot(complete: bool) -> ClipObservations:
        return ClipObservations(
            fps=log.fps,
            width=log.width,
            height=log.height,
            timestamps=np.asarray(timestamps, np.float64),
            thumbnails=np.asarray(thumbs, np.float32).reshape(-1, THUMBNAIL, THUMBNAIL),
            face_frame=np.asarray(face_frame, np.int64),
            face_points=np.asarray(face_points, np.float32).reshape(-1, NUM_LANDMARKS, 3),
            face_sharpness=np.asarray(face_sharpness, np.float32),
            face_colour=np.asarray(face_colour, np.float32).reshape(-1, 3),
            complete=complete,
        )

    with FaceMeshTracker(static_images=True, max_faces=MAX_FACES) as facemesh:
        try:
            for index, frame in enumerate(source.frames()):
                if index < len(timestamps):
                    continue  # observed before the interruption
                rgb = frame.rgb
                log.height, log.width = rgb.shape[:2]
                scale = _detection_scale(log.width, log.height)
                small = (
                    cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                    if scale < 1.0
                    else rgb
                )
                for face in facemesh.process_all(small):
                    points = face.points / scale
                    face_frame.append(index)
                    face_points.append(points.astype(np.float32))
                    face_sharpness.append(sharpness(rgb, points))
                    face_colour.append(skin_colour(rgb, points))
                timestamps.append(frame.timestamp)
                thumbs.append(thumbnail(rgb))
                if on_frame is not None:
                    on_frame(index + 1)
                if len(timestamps) % CHECKPOINT_EVERY == 0:
                    snapshot(False).save(checkpoint)
        except BaseException:
            if timestamps:
                snapshot(False).save(checkpoint)
            raise
    result = snapshot(True)
    result.save(checkpoint)
    return result
