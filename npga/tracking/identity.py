"""Who is who: shot cuts, how a face looks (skin colour, rigid shape per head pose), and the live
tracker's lock on one person.

The same evidence serves ``npga create`` (which groups a whole clip's faces into people) and the
live tracker (:class:`PersonLock`, which decides frame by frame which of the faces in view is
the person it follows):

- **Shot cuts**: a frame whose grey thumbnail differs from the previous one's by more than
  ``CUT_THRESHOLD`` (mean absolute difference) starts a new shot.
- **Colour**: the median CIELAB of the skin inside the landmarks' outline; two faces are the
  same person only within ``SAME_COLOUR`` (lightness counted half: lighting changes it most).
- **Shape**: the rigid landmarks with the head pose removed (face units). Face Mesh's canonical
  shape of one face changes with the head's turn, so shapes are compared only at matched poses
  (rotations within ``POSE_MATCH_DEGREES``); there one person differs by 0.027-0.031 face units,
  a person with 35 % wider proportions by 0.056-0.084 (measured on synthetic clips).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

from npga.tracking.expression import canonicalize
from npga.tracking.facemesh import FaceLandmarks
from npga.tracking.procrustes import Similarity
from npga.tracking.template import FaceTemplate

THUMBNAIL = 16  # side of the grey thumbnail compared for shot cuts
CUT_THRESHOLD = 0.12  # mean |thumbnail difference| that marks a cut
SAME_COLOUR = 8.0  # CIELAB distance (L counted half) of one person's median skin colours
SAME_SHAPE = 0.045  # face units, RMS over the rigid landmarks at matched poses
POSE_MATCH_DEGREES = 10.0
# One frame's shape is noisier than a track's median (one person measured up to 0.046 on the first
# frame after a re-detection), so the live lock vetoes a face by its shape only beyond this.
LIVE_SAME_SHAPE = 1.5 * SAME_SHAPE


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """[THUMBNAIL, THUMBNAIL] float32 grey thumbnail in [0, 1] of a frame [H, W, 3] uint8."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether two consecutive thumbnails [THUMBNAIL, THUMBNAIL] lie across a shot cut."""
    return float(np.abs(current - previous).mean()) > CUT_THRESHOLD


def shot_boundaries(thumbnails: np.ndarray) -> np.ndarray:
    """Shot index of every frame [F] from the frames' thumbnails [F, h, w]."""
    if thumbnails.shape[0] == 0:
        return np.zeros(0, np.int64)
    change = np.abs(np.diff(thumbnails, axis=0)).mean(axis=(1, 2))  # [F - 1]
    return np.concatenate(([0], np.cumsum(change > CUT_THRESHOLD))).astype(np.int64)


def skin_colour(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median CIELAB [3] (L in 0-100, a and b around 0) of the face inside its landmarks'
    outline [L, 3] pixels of ``rgb`` [H, W, 3] uint8 (eyes and mouth are not cut out: the
    median is robust to them)."""
    hull = cv2.convexHull(np.round(points[:, :2]).astype(np.int32))
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull, (1,))
    inside = rgb[mask.astype(bool)]
    if inside.shape[0] == 0:
        return np.zeros(3, np.float32)
    lab = cv2.cvtColor(inside[None].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0]
    return np.median(lab, axis=0).astype(np.float32)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """CIELAB distance of two colours [3] with lightness counted half."""
    d = a - b
    return float(np.sqrt((d[0] / 2) ** 2 + d[1] ** 2 + d[2] ** 2))


def rigid_landmarks(template: FaceTemplate) -> np.ndarray:
    """[L] bool: the landmarks that barely move with expressions (the template's heavy ones)."""
    return template.weights >= 0.5 * float(template.weights.max())


def rotation_degrees(rotation: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Angles [S] in degrees between ``rotation`` [3, 3] and each of ``rotations`` [S, 3, 3]."""
    cosine = (np.einsum("ij,kij->k", rotation, rotations) - 1) / 2
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def matched_shape_distances(
    rotations_a: np.ndarray,  # [A, 3, 3]
    shapes_a: np.ndarray,  # [A, R, 3] rigid landmarks, face units
    rotations_b: np.ndarray,  # [B, 3, 3]
    shapes_b: np.ndarray,  # [B, R, 3]
) -> list[float]:
    """RMS distances between each of a's shapes and b's shape in the nearest pose, for the pairs
    whose rotations are within POSE_MATCH_DEGREES."""
    distances: list[float] = []
    if rotations_b.shape[0] == 0:
        return distances
    for rotation, shape in zip(rotations_a, shapes_a, strict=True):
        angles = rotation_degrees(rotation, rotations_b)
        j = int(np.argmin(angles))
        if angles[j] < POSE_MATCH_DEGREES:
            distances.append(float(np.sqrt(((shape - shapes_b[j]) ** 2).sum(axis=1).mean())))
    return distances


class Continuity(IntEnum):
    """How the face of a frame follows from the frames before."""

    TRACKED = 0  # the face of the previous frames
    REACQUIRED = 1  # found again after a loss, in the same shot
    NEW_SHOT = 2  # found again after a shot cut


@dataclass(frozen=True)
class SelectedFace:
    """The face of the person followed in one frame."""

    landmarks: FaceLandmarks
    pose: Similarity  # template -> image (pixels)
    canonical: np.ndarray  # [L, 3] landmarks with pose removed, face units
    continuity: Continuity


@dataclass(frozen=True)
class LockConfig:
    reacquire_seconds: float = 0.25  # a face missing longer than this is re-acquired
    follow_seconds: float = 0.5  # within this (and no cut) a face near the last one continues
    release_seconds: float = 10.0  # the person unseen this long: follow whoever is in view
    colour_every: int = 5  # frames between skin-colour samples of the followed face
    colour_samples: int = 30
    pose_samples: int = 24  # rigid shapes kept at distinct head poses


class PersonLock:
    """Which of the faces in view is the person being followed.

    - At the start (and after :meth:`reset`) it takes the most prominent face: the largest,
      weighted towards the centre of the image.
    - While that face is in view it follows it by position: the face nearest to where it was,
      within half a face width, unless a shot cut came in between.
    - After a cut or a loss it accepts only a face that looks like the person: skin colour within
      ``SAME_COLOUR`` and, where it has seen the person at a similar head pose, rigid shape within
      ``LIVE_SAME_SHAPE``. Frames that show only someone else have no face.
    - Unseen for ``release_seconds`` (new lighting, another person at the camera), the person is
      forgotten and the most prominent face is taken again.
    """

    def __init__(self, template: FaceTemplate, config: LockConfig | None = None) -> None:
        self.template = template
        self.config = config or LockConfig()
        self._rigid = rigid_landmarks(template)
        self._previous_thumbnail: np.ndarray | None = None
        self._cut_since_seen = False
        self._followed_before = False
        self.reset()

    def reset(self) -> None:
        """Forget the person: the next frame's most prominent face is followed."""
        self._colours: deque[np.ndarray] = deque(maxlen=self.config.colour_samples)
        self._rotations: list[np.ndarray] = []
        self._shapes: list[np.ndarray] = []
        self._last_centre: np.ndarray | None = None
        self._last_width = 0.0
        self._last_seen = -np.inf
        self._accepted = 0

    @property
    def locked(self) -> bool:
        return self._last_centre is not None

    def state(self) -> dict[str, np.ndarray]:
        """Everything the lock knows, as arrays (a resumable run checkpoints it)."""
        rigid = int(self._rigid.sum())
        return {
            "colours": np.asarray(list(self._colours), np.float32).reshape(-1, 3),
            "rotations": np.asarray(self._rotations, np.float64).reshape(-1, 3, 3),
            "shapes": np.asarray(self._shapes, np.float64).reshape(-1, rigid, 3),
            "last_centre": np.asarray(
                [] if self._last_centre is None else self._last_centre, np.float64
            ),
            "scalars": np.array(
                [
                    self._last_width,
                    self._last_seen,
                    self._cut_since_seen,
                    self._followed_before,
                    self._accepted,
                ],
                np.float64,
            ),
            "thumbnail": np.asarray(
                [] if self._previous_thumbnail is None else self._previous_thumbnail, np.float32
            ),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s arrays."""
        self.reset()
        self._colours.extend(np.asarray(state["colours"], np.float32))
        self._rotations = list(np.asarray(state["rotations"], np.float64))
        self._shapes = list(np.asarray(state["shapes"], np.float64))
        centre = np.asarray(state["last_centre"], np.float64)
        self._last_centre = centre if centre.size == 2 else None
        width, seen, cut, before, accepted = np.asarray(state["scalars"], np.float64)
        self._last_width, self._last_seen = float(width), float(seen)
        self._cut_since_seen, self._followed_before = bool(cut), bool(before)
        self._accepted = int(accepted)
        thumb = np.asarray(state["thumbnail"], np.float32)
        self._previous_thumbnail = thumb if thumb.size else None

    def select(
        self, rgb: np.ndarray, faces: list[FaceLandmarks], timestamp: float
    ) -> SelectedFace | None:
        """The followed person's face among ``faces`` (Face Mesh on ``rgb`` [H, W, 3] uint8 at
        ``timestamp`` seconds), or None when they are not in view."""
        small = thumbnail(rgb)
        if self._previous_thumbnail is not None and is_cut(self._previous_thumbnail, small):
            self._cut_since_seen = True
        self._previous_thumbnail = small
        if self.locked and timestamp - self._last_seen > self.config.release_seconds:
            self.reset()
        if not faces:
            return None
        if not self.locked:
            choice = self._most_prominent(faces, rgb.shape[1], rgb.shape[0])
            continuity = (
                Continuity.TRACKED
                if not self._followed_before
                else Continuity.NEW_SHOT
                if self._cut_since_seen
                else Continuity.REACQUIRED
            )
            return self._accept(rgb, faces[choice], None, timestamp, continuity)
        gap = timestamp - self._last_seen
        if not self._cut_since_seen and gap <= self.config.follow_seconds:
            nearest = self._nearest(faces)
            if nearest is not None:
                continuity = (
                    Continuity.TRACKED
                    if gap <= self.config.reacquire_seconds
                    else Continuity.REACQUIRED
                )
                return self._accept(rgb, faces[nearest], None, timestamp, continuity)
        best, best_distance, best_fit = -1, np.inf, None
        for index, face in enumerate(faces):
            fit = canonicalize(face.points, self.template)
            distance = self._looks_like(rgb, face, fit)
            if distance is not None and distance < best_distance:
                best, best_distance, best_fit = index, distance, fit
        if best < 0:
            return None
        continuity = Continuity.NEW_SHOT if self._cut_since_seen else Continuity.REACQUIRED
        return self._accept(rgb, faces[best], best_fit, timestamp, continuity)

    def _most_prominent(self, faces: list[FaceLandmarks], width: int, height: int) -> int:
        centre = np.array([width / 2, height / 2])
        diagonal = float(np.hypot(width, height))

        def prominence(face: FaceLandmarks) -> float:
            off_centre = float(np.linalg.norm(face.points[:, :2].mean(axis=0) - centre))
            return float(np.ptp(face.points[:, 0])) * (1.0 - off_centre / diagonal)

        return int(np.argmax([prominence(f) for f in faces]))

    def _nearest(self, faces: list[FaceLandmarks]) -> int | None:
        assert self._last_centre is not None
        distances = [
            float(np.linalg.norm(f.points[:, :2].mean(axis=0) - self._last_centre)) for f in faces
        ]
        index = int(np.argmin(distances))
        return index if distances[index] < 0.5 * self._last_width else None

    def _looks_like(
        self, rgb: np.ndarray, face: FaceLandmarks, fit: tuple[Similarity, np.ndarray]
    ) -> float | None:
        """The colour distance of ``face`` to the person, or None when it is someone else."""
        colour = colour_distance(skin_colour(rgb, face.points), np.median(self._colours, axis=0))
        if colour > SAME_COLOUR:
            return None
        pose, canonical = fit
        shapes = matched_shape_distances(
            pose.rotation[None], canonical[self._rigid][None],
            np.asarray(self._rotations), np.asarray(self._shapes),
        )  # fmt: skip
        if shapes and shapes[0] > LIVE_SAME_SHAPE:
            return None
        return colour

    def _accept(
        self,
        rgb: np.ndarray,
        face: FaceLandmarks,
        fit: tuple[Similarity, np.ndarray] | None,
        timestamp: float,
        continuity: Continuity,
    ) -> SelectedFace:
        pose, canonical = fit or canonicalize(face.points, self.template)
        if not self._colours or self._accepted % self.config.colour_every == 0:
            self._colours.append(skin_colour(rgb, face.points))
        if len(self._rotations) < self.config.pose_samples and (
            not self._rotations
            or rotation_degrees(pose.rotation, np.asarray(self._rotations)).min()
            > POSE_MATCH_DEGREES / 2
        ):
            self._rotations.append(pose.rotation)
            self._shapes.append(canonical[self._rigid])
        self._accepted += 1
        self._last_centre = face.points[:, :2].mean(axis=0)
        self._last_width = float(np.ptp(face.points[:, 0]))
        self._last_seen = timestamp
        self._cut_since_seen = False
        self._followed_before = True
        return SelectedFace(face, pose, canonical, continuity)
