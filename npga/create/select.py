"""Stage 2b of ``npga create``: which frames of the kept person train, and which are held out.

- Frames whose face is blurred (sharpness under ``BLUR_FRACTION`` of the clip's median, from
  motion blur or defocus) or cut by the image border are dropped.
- The last ``HELD_OUT_FRACTION`` of the usable frames (in time) are held out for evaluation; up
  to ``max_test`` of them, evenly spaced, are written.
- Training frames are chosen among the others by farthest-point sampling over head rotation and
  expression (the canonical landmarks' leading principal components), so that the few hundred
  frames a recipe trains on cover the turns and expressions of the whole clip rather than its
  most common pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npga.create.observe import ClipObservations
from npga.create.people import PersonChoice
from npga.tracking.expression import canonicalize
from npga.tracking.procrustes import rotation_to_quat_wxyz
from npga.tracking.template import FaceTemplate

BLUR_FRACTION = 0.35
HELD_OUT_FRACTION = 0.1
EXPRESSION_COMPONENTS = 8  # principal components of the canonical landmarks used for coverage
BORDER_MARGIN = 2.0  # pixels: a face with a landmark this close to the border is cut off


@dataclass(frozen=True)
class FrameSelection:
    train_frames: list[int]  # clip frame indices, sorted
    test_frames: list[int]
    usable_frames: int  # frames of the kept person that passed the checks
    dropped_blurred: int
    dropped_cut_off: int


def _inside(points: np.ndarray, width: int, height: int) -> bool:
    x, y = points[:, 0], points[:, 1]
    m = BORDER_MARGIN
    return bool(x.min() >= m and y.min() >= m and x.max() <= width - m and y.max() <= height - m)


def coverage_features(points: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """[T, 4 + EXPRESSION_COMPONENTS] per-face features of head rotation (quaternion, radians
    scale) and expression (canonical landmarks' principal components, face units), from
    landmarks [T, L, 3]."""
    rotations, shapes = [], []
    for face in points:
        pose, canonical = canonicalize(face.astype(np.float64), template)
        q = rotation_to_quat_wxyz(pose.rotation)
        rotations.append(q * np.sign(q[0]) * 2.0)  # ~ radians for small turns
        shapes.append(canonical.reshape(-1))
    shape = np.stack(shapes)
    centred = shape - shape.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = centred @ vt[:EXPRESSION_COMPONENTS].T / np.sqrt(shape.shape[1] / 3)
    return np.concatenate((np.stack(rotations), 4.0 * components), axis=1)


def farthest_points(features: np.ndarray, count: int) -> list[int]:
    """``count`` rows of features [T, D] spread out greedily, starting from the one nearest the
    mean (deterministic)."""
    count = min(count, features.shape[0])
    first = int(np.argmin(np.linalg.norm(features - features.mean(axis=0), axis=1)))
    chosen = [first]
    distance = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < count:
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
    return chosen


def select_frames(
    clip: ClipObservations,
    person: PersonChoice,
    template: FaceTemplate,
    max_train: int,
    max_test: int,
) -> FrameSelection:
    """The training and held-out frames (see the module doc)."""
    frames = np.flatnonzero(person.face_of_frame >= 0)
    faces = person.face_of_frame[frames]
    inside = np.array(
        [_inside(clip.face_points[k], clip.width, clip.height) for k in faces], dtype=bool
    )
    sharp = clip.face_sharpness[faces]
    median = float(np.median(sharp[inside])) if inside.any() else 0.0
    not_blurred = sharp >= BLUR_FRACTION * median
    keep = inside & not_blurred
    usable = frames[keep]
    n_test = max(1, round(HELD_OUT_FRACTION * usable.size)) if usable.size > 1 else 0
    train_pool, test_pool = usable[: usable.size - n_test], usable[usable.size - n_test :]
    if test_pool.size:
        spaced = np.linspace(0, test_pool.size - 1, min(max_test, test_pool.size))
        test = sorted({int(test_pool[round(float(i))]) for i in spaced})
    else:
        test = []
    train: list[int] = []
    if train_pool.size:
        points = clip.face_points[person.face_of_frame[train_pool]]
        picked = farthest_points(coverage_features(points, template), max_train)
        train = sorted(int(train_pool[i]) for i in picked)
    return FrameSelection(
        train_frames=train,
        test_frames=test,
        usable_frames=int(usable.size),
        dropped_blurred=int((inside & ~not_blurred).sum()),
        dropped_cut_off=int((~inside).sum()),
    )
