"""Stage 2a of ``npga create``: shot cuts, and which face in each frame is the one person kept.

- **Shot cuts**: :func:`npga.tracking.identity.shot_boundaries`.
- **Tracks**: inside a shot, a face continues the track whose last face (at most
  ``MAX_GAP_FRAMES`` before) is nearest, if it is closer than half a face width.
- **People**: tracks are grouped greedily, longest first. A track joins a person when
  - its skin colour (median CIELAB of the face) is within ``SAME_COLOUR`` of the person's, and
  - wherever it shows the head in the same pose as one of the person's tracks (rotations within
    ``POSE_MATCH_DEGREES``, at least ``MIN_POSE_MATCHES`` frames), its rigid landmarks (head
    pose removed, face units) lie within ``SAME_SHAPE`` (RMS, median over the matches).
  The evidence and its thresholds are :mod:`npga.tracking.identity`'s, which the live tracker's
  lock on one person uses too. Face Mesh's canonical shape of one face changes with the head's
  turn (the median shapes of one person's tracks in poses that do not overlap differ as much as
  two people's, 0.05-0.07 face units), so colour tells people apart when poses do not overlap.
- The person kept is the one seen in the most frames ("the most persistent face").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from npga.create.observe import ClipObservations
from npga.tracking.expression import canonicalize
from npga.tracking.identity import (
    SAME_COLOUR,
    SAME_SHAPE,
    colour_distance,
    matched_shape_distances,
    rigid_landmarks,
    shot_boundaries,
)
from npga.tracking.template import FaceTemplate

MAX_GAP_FRAMES = 15  # a track survives this many frames without its face
MIN_POSE_MATCHES = 3
SAMPLE_FACES = 60  # faces of a track used to describe it


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


@dataclass
class TrackLook:
    """How a track shows its face: a sample of rotations and rigid shapes, its colour."""

    faces: list[int]
    rotations: np.ndarray  # [S, 3, 3] template -> image
    rigid_shapes: np.ndarray  # [S, R, 3] canonical rigid landmarks, face units
    colour: np.ndarray  # [3] median CIELAB


@dataclass
class Person:
    tracks: list[TrackLook] = field(default_factory=list)

    def frames(self, clip: ClipObservations) -> set[int]:
        return {int(clip.face_frame[k]) for track in self.tracks for k in track.faces}


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


def track_look(clip: ClipObservations, faces: list[int], template: FaceTemplate) -> TrackLook:
    rigid = rigid_landmarks(template)
    step = max(1, len(faces) // SAMPLE_FACES)
    rotations, shapes = [], []
    for k in faces[::step]:
        pose, canonical = canonicalize(clip.face_points[k].astype(np.float64), template)
        rotations.append(pose.rotation)
        shapes.append(canonical[rigid])
    colour = np.median(clip.face_colour[faces], axis=0)
    return TrackLook(faces, np.stack(rotations), np.stack(shapes), colour)


def matched_shape_distance(a: TrackLook, b: TrackLook) -> float | None:
    """Median RMS distance of the rigid shapes of a's faces and b's face in the nearest pose,
    over the pairs within POSE_MATCH_DEGREES; None with fewer than MIN_POSE_MATCHES pairs."""
    distances = matched_shape_distances(a.rotations, a.rigid_shapes, b.rotations, b.rigid_shapes)
    return float(np.median(distances)) if len(distances) >= MIN_POSE_MATCHES else None


def same_person(track: TrackLook, person: Person) -> bool:
    colour = np.median(np.stack([t.colour for t in person.tracks]), axis=0)
    if colour_distance(track.colour, colour) > SAME_COLOUR:
        return False
    for other in person.tracks:
        distance = matched_shape_distance(track, other)
        if distance is not None and distance > SAME_SHAPE:
            return False
    return True


def choose_person(clip: ClipObservations, template: FaceTemplate) -> PersonChoice:
    """The one person kept (see the module doc)."""
    shots = shot_boundaries(clip.thumbnails)
    tracks = sorted(link_tracks(clip, shots), key=len, reverse=True)
    people: list[Person] = []
    for faces in tracks:
        look = track_look(clip, faces, template)
        for person in people:
            if same_person(look, person):
                person.tracks.append(look)
                break
        else:
            people.append(Person([look]))
    people.sort(key=lambda p: len(p.frames(clip)), reverse=True)
    face_of_frame = np.full(clip.frames, -1, np.int64)
    if people:
        for track in people[0].tracks:
            for k in track.faces:
                frame = int(clip.face_frame[k])
                if face_of_frame[frame] < 0:
                    face_of_frame[frame] = k
    return PersonChoice(face_of_frame, shots, [len(p.frames(clip)) for p in people])
