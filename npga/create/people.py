"""Stage 2a of ``npga create``: shot cuts, and which face in each frame is the one person kept.

- **Shot cuts**: a frame whose grey thumbnail differs from the previous one's by more than
  ``CUT_THRESHOLD`` (mean absolute difference) starts a new shot.
- **Tracks**: inside a shot, a face continues the track whose last face (at most
  ``MAX_GAP_FRAMES`` before) is nearest, if it is closer than half a face width.
- **People**: tracks are grouped by the shape of the face: the median canonical landmarks
  (head pose removed, face units) of a track; tracks closer than ``SAME_PERSON`` (RMS, face
  units) are one person. A face's shape does not change with pose or (in the median) expression,
  while two people's differ.
- The person kept is the one seen in the most frames ("the most persistent face").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npga.create.observe import ClipObservations
from npga.tracking.expression import canonicalize
from npga.tracking.template import FaceTemplate

CUT_THRESHOLD = 0.12  # mean |thumbnail difference| that marks a cut
MAX_GAP_FRAMES = 15  # a track survives this many frames without its face
SAME_PERSON = 0.035  # RMS distance of median face shapes (face units) below which tracks merge


@dataclass(frozen=True)
class PersonChoice:
    """The face kept per frame and what was seen."""

    face_of_frame: np.ndarray  # [F] int64: index into the clip's faces, -1 where none kept
    shot_of_frame: np.ndarray  # [F] int64
    frames_per_person: list[int]  # frames each person was seen in, the kept one first

    @property
    def people_seen(self) -> int:
        return len(self.frames_per_person)

    @property
    def shots(self) -> int:
        return int(self.shot_of_frame.max()) + 1 if self.shot_of_frame.size else 0


def shot_boundaries(thumbnails: np.ndarray) -> np.ndarray:
    """Shot index of every frame [F] from the frames' thumbnails [F, h, w]."""
    if thumbnails.shape[0] == 0:
        return np.zeros(0, np.int64)
    change = np.abs(np.diff(thumbnails, axis=0)).mean(axis=(1, 2))  # [F - 1]
    return np.concatenate(([0], np.cumsum(change > CUT_THRESHOLD))).astype(np.int64)


def _face_width(points: np.ndarray) -> float:
    return float(np.ptp(points[:, 0]))


def link_tracks(clip: ClipObservations, shots: np.ndarray) -> list[list[int]]:
    """Faces (indices into the clip's faces) grouped into tracks, in time order."""
    tracks: list[list[int]] = []
    open_tracks: list[int] = []  # indices into tracks, of the current shot
    for frame in range(clip.frames):
        if frame and shots[frame] != shots[frame - 1]:
            open_tracks = []
        open_tracks = [
            i for i in open_tracks if frame - clip.face_frame[tracks[i][-1]] <= MAX_GAP_FRAMES
        ]
        taken: set[int] = set()
        for face in clip.faces_in(frame):
            centre = clip.face_points[face, :, :2].mean(axis=0)
            best, best_distance = -1, np.inf
            for i in open_tracks:
                if i in taken:
                    continue
                last = clip.face_points[tracks[i][-1]]
                distance = float(np.linalg.norm(last[:, :2].mean(axis=0) - centre))
                if distance < 0.5 * _face_width(last) and distance < best_distance:
                    best, best_distance = i, distance
            if best < 0:
                tracks.append([int(face)])
                open_tracks.append(len(tracks) - 1)
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append(int(face))
                taken.add(best)
    return tracks


def face_shape(clip: ClipObservations, faces: list[int], template: FaceTemplate) -> np.ndarray:
    """The median canonical landmarks [L, 3] (face units) of some faces."""
    step = max(1, len(faces) // 60)  # a sample is enough for a median
    shapes = [canonicalize(clip.face_points[k].astype(np.float64), template)[1] for k in faces]
    return np.median(np.stack(shapes[::step]), axis=0)


def choose_person(clip: ClipObservations, template: FaceTemplate) -> PersonChoice:
    """The one person kept (see the module doc)."""
    shots = shot_boundaries(clip.thumbnails)
    tracks = sorted(link_tracks(clip, shots), key=len, reverse=True)
    people: list[tuple[np.ndarray, list[list[int]]]] = []  # (shape, tracks)
    for track in tracks:
        shape = face_shape(clip, track, template)
        for person_shape, person_tracks in people:
            if np.sqrt(((shape - person_shape) ** 2).sum(axis=1).mean()) < SAME_PERSON:
                person_tracks.append(track)
                break
        else:
            people.append((shape, [track]))

    def frames_of(person_tracks: list[list[int]]) -> set[int]:
        return {int(clip.face_frame[k]) for track in person_tracks for k in track}

    people.sort(key=lambda p: len(frames_of(p[1])), reverse=True)
    face_of_frame = np.full(clip.frames, -1, np.int64)
    if people:
        for track in people[0][1]:
            for k in track:
                frame = int(clip.face_frame[k])
                if face_of_frame[frame] < 0:
                    face_of_frame[frame] = k
    return PersonChoice(face_of_frame, shots, [len(frames_of(p[1])) for p in people])
