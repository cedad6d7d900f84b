"""The face of the synthetic head: Face Mesh landmarks of a packaged photograph, triangulated,
with holes at the eyes (eyeballs behind) and between the lips (a mouth cavity behind).

Head-local frame: metres, x to the image right (subject's left), y down, z away from the
front camera (+z is the back of the head); origin at the centre of the skull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as Polygon
from scipy.spatial import Delaunay

EYE_DISTANCE_M = 0.09  # outer eye corners
# Face Mesh contours (indices into the 478 landmarks), each ordered from one corner to the other.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
RIGHT_EYE_CREASE = (130, 247, 30, 29, 27, 28, 56, 190, 243)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
LEFT_EYE_CREASE = (359, 467, 260, 259, 257, 258, 286, 414, 463)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 61, 291
NOSE_WING_RIGHT, NOSE_WING_LEFT = 129, 358
CHEEK_RIGHT, CHEEK_LEFT = 205, 425
BROW_RIGHT, BROW_LEFT = 105, 334
EAR_RIGHT, EAR_LEFT = 234, 454
FOREHEAD = 10


@dataclass(frozen=True)
class Face:
    points: np.ndarray  # [478, 3] head-local metres (mouth closed)
    uvs: np.ndarray  # [478, 2] photo pixels
    skin: np.ndarray  # [F, 3] triangles over the landmarks (eyes and mouth open)
    eyeballs: np.ndarray  # [G, 3] triangles over the landmarks inside the eye contours
    oval: np.ndarray  # [K] landmark indices of the face outline, a closed loop


def face_oval() -> np.ndarray:
    """The 36 landmarks of the face outline as one loop (forehead first, then image right)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    neighbours: dict[int, list[int]] = {}
    for a, b in FACEMESH_FACE_OVAL:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loop = [FOREHEAD, max(neighbours[FOREHEAD])]
    while len(loop) < len(neighbours):
        loop.append(next(n for n in neighbours[loop[-1]] if n != loop[-2]))
    return np.array(loop)


def _inside(points: np.ndarray, contour: tuple[int, ...], centroids: np.ndarray) -> np.ndarray:
    """points [478, 2]; centroids [F, 2] -> [F] bool, inside the closed contour polygon."""
    return Polygon(points[list(contour)]).contains_points(centroids)


def _pull_in(uvs: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """uvs [L, 2] -> [L, 2]: landmarks within ~12 px of the outline move up to 6 px inwards
    (towards the centre): the photo's outline reaches past the skin into hair and background."""
    centre = uvs.mean(axis=0)
    distance = np.linalg.norm(uvs[:, None] - uvs[None, oval], axis=-1).min(axis=1)  # [L]
    inwards = centre - uvs
    inwards /= np.maximum(np.linalg.norm(inwards, axis=1, keepdims=True), 1e-9)
    return uvs + 6.0 * np.clip(1.0 - distance / 12.0, 0.0, 1.0)[:, None] * inwards


def build_face(pixels: np.ndarray) -> Face:
    """pixels [478, 3]: Face Mesh landmarks of the photograph (x, y, z in pixel units)."""
    scale = EYE_DISTANCE_M / float(np.linalg.norm(pixels[33, :2] - pixels[263, :2]))
    metric = pixels * scale
    eyes_y = 0.5 * (metric[33, 1] + metric[263, 1])
    centre = np.array(
        [
            0.5 * (metric[EAR_RIGHT, 0] + metric[EAR_LEFT, 0]),
            eyes_y + 0.005,
            metric[FOREHEAD, 2] + 0.09,
        ]
    )
    points = metric - centre
    # Triangulate in cylindrical coordinates around the vertical axis: the sides of the face,
    # foreshortened in the photo, are spread out there and get well-shaped triangles.
    flat = np.stack([0.1 * np.arctan2(points[:, 0], -points[:, 2]), points[:, 1]], axis=1)
    triangles = Delaunay(flat).simplices.astype(np.int32)
    centroids = flat[triangles].mean(axis=1)  # [F, 2]
    oval = face_oval()
    in_face = Polygon(flat[oval]).contains_points(centroids)
    right_eye = RIGHT_EYE_UPPER + RIGHT_EYE_LOWER[::-1]
    left_eye = LEFT_EYE_UPPER + LEFT_EYE_LOWER[::-1]
    in_eyes = _inside(flat, right_eye, centroids) | _inside(flat, left_eye, centroids)
    in_mouth = _inside(flat, LIPS_UPPER_INNER + LIPS_LOWER_INNER[::-1], centroids)
    skin = triangles[in_face & ~in_eyes & ~in_mouth]
    return Face(
        points=points,
        uvs=_pull_in(pixels[:, :2], oval),
        skin=skin,
        eyeballs=triangles[in_face & in_eyes],
        oval=oval,
    )


def mouth_line(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points [478, 3] -> the upper inner lip as (x [11] increasing, y [11]) for np.interp."""
    contour = points[list(LIPS_UPPER_INNER)]
    order = np.argsort(contour[:, 0])
    return contour[order, 0], contour[order, 1]


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def jaw_weights(vertices: np.ndarray, points: np.ndarray, hinge: np.ndarray) -> np.ndarray:
    """vertices [V, 3] -> [V] in [0, 1]: how much each follows the jaw (below the mouth line,
    in front of the hinge); the ramp widens beyond the mouth corners."""
    xs, ys = mouth_line(points)
    x, y, z = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    beyond = np.maximum(0.0, np.maximum(xs[0] - x, x - xs[-1]))
    width = 0.003 + 0.8 * beyond
    below = smoothstep(0.0, width, y - np.interp(x, xs, ys) - 0.3 * beyond)
    front = smoothstep(hinge[2], hinge[2] - 0.03, z)
    return below * front


def split_lips(weights: np.ndarray) -> np.ndarray:
    """weights [V] (the first 478 are the landmarks): the lips part along the inner contour,
    the lower lip with the jaw, the upper one with the skull, the inner corners half-way."""
    weights[list(LIPS_LOWER_INNER)] = 1.0
    weights[list(LIPS_UPPER_INNER)] = 0.0
    weights[[78, 308]] = 0.5
    return weights


def hinge_point(points: np.ndarray) -> np.ndarray:
    """The jaw's rotation axis passes through this point [3] along x."""
    ears = 0.5 * (points[EAR_RIGHT] + points[EAR_LEFT])
    return np.array([0.0, ears[1] + 0.01, ears[2] + 0.01])


def rotate_x(vertices: np.ndarray, pivot: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate vertices [V, 3] about the x axis through pivot [3] by angles [V] (radians;
    positive opens the jaw: the chin moves down)."""
    rel = vertices - pivot
    cos, sin = np.cos(angles), np.sin(angles)
    y = rel[:, 1] * cos - rel[:, 2] * sin
    z = rel[:, 1] * sin + rel[:, 2] * cos
    return np.stack([rel[:, 0], y, z], axis=1) + pivot


def close_mouth(points: np.ndarray) -> np.ndarray:
    """points [478, 3] with the jaw rotated until the lower inner lip meets the upper one."""
    hinge = hinge_point(points)
    weights = split_lips(jaw_weights(points, points, hinge))
    angles = np.linspace(-0.4, 0.0, 401)
    lower = points[[14]]
    gaps = [rotate_x(lower, hinge, np.array([a]))[0, 1] - points[13, 1] for a in angles]
    best = float(angles[int(np.argmin(np.abs(gaps)))])
    return rotate_x(points, hinge, weights * best)
