"""The synthetic head: a photo-textured mesh built from a packaged photograph (scikit-image's
astronaut) via its Face Mesh landmarks, completed into a whole head, with linear blendshapes
for the expression rig and a jaw that rotates about a hinge.

Vertices 0..477 are the Face Mesh landmarks, so the animated landmarks are ``vertices[:478]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npga.data.synth import face as f
from npga.data.synth.shell import Part, mouth_sheet, neck, skull_shell

# Rig parameters, all in [0, 1]; "_l"/"_r" are the subject's left/right.
PARAMETERS = (
    "jaw_open", "smile_l", "smile_r", "blink_l", "blink_r", "brow_l", "brow_r", "pucker",
)  # fmt: skip
JAW_MAX_RADIANS = 0.32
# Boxes (rows, columns) of the astronaut photograph: a patch of cheek and a patch of hair.
SKIN_BOX = (slice(118, 128), slice(195, 205))
HAIR_BOX = (slice(38, 62), slice(194, 258))


@dataclass(frozen=True)
class HeadModel:
    vertices: np.ndarray  # [V, 3] head-local metres, rest (neutral, mouth closed)
    triangles: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [V, 2] atlas pixels
    texture: np.ndarray  # [Ht, Wt, 3] float32 atlas
    blendshapes: np.ndarray  # [P-1, V, 3] displacements of PARAMETERS[1:] at 1
    jaw_weights: np.ndarray  # [V] share of the jaw rotation
    hinge: np.ndarray  # [3] a point on the jaw's rotation axis (along x)
    normal_group: np.ndarray  # [V] a representative of each vertex's coincident copies (seams)
    shading: np.ndarray  # [P-1, V] relative change of the light of PARAMETERS[1:] at 1


def _photo_landmarks(photo: np.ndarray) -> np.ndarray:
    """photo [H, W, 3] uint8 -> [478, 3] landmarks (pixels), rounded so runs agree exactly."""
    from npga.tracking.facemesh import FaceMeshTracker

    with FaceMeshTracker(static_images=True) as tracker:
        found = tracker.process(photo)
    if found is None:
        raise RuntimeError("Face Mesh found no face in the subject photograph")
    return np.round(found.points, 2)


def _gaussian(vertices: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """vertices [V, 3], centre [3] -> [V] weights exp(-d^2 / 2 sigma^2)."""
    return np.exp(-((vertices - centre) ** 2).sum(axis=1) / (2 * sigma**2))


def _blendshapes(vertices: np.ndarray, points: np.ndarray, eyeballs: slice) -> np.ndarray:
    """Displacements [P-1, V, 3] for smile, blink, brow and pucker (left and right).
    ``eyeballs``: the vertices behind the eye openings (they fold onto the lower lid on blink)."""
    front = f.smoothstep(0.04, 0.0, vertices[:, 2])[:, None]  # the face, not the back of the head
    shapes = {}
    for side, corner, cheek, sign in (
        ("r", f.MOUTH_CORNER_RIGHT, f.CHEEK_RIGHT, -1.0),
        ("l", f.MOUTH_CORNER_LEFT, f.CHEEK_LEFT, 1.0),
    ):
        pull = _gaussian(vertices, points[corner], 0.014)[:, None] * [0.005 * sign, -0.006, 0.003]
        lift = _gaussian(vertices, points[cheek], 0.015)[:, None] * [0.0, -0.003, -0.001]
        shapes[f"smile_{side}"] = (pull + lift) * front
    for side, upper, lower, crease, brow in (
        ("r", f.RIGHT_EYE_UPPER, f.RIGHT_EYE_LOWER, f.RIGHT_EYE_CREASE, f.BROW_RIGHT),
        ("l", f.LEFT_EYE_UPPER, f.LEFT_EYE_LOWER, f.LEFT_EYE_CREASE, f.BROW_LEFT),
    ):
        blink = np.zeros_like(vertices)
        gap = points[list(lower)] - points[list(upper)]  # [9, 3]
        blink[list(upper)] = 0.85 * gap
        blink[list(lower)] = -0.15 * gap
        blink[list(crease)] = 0.35 * gap
        ball = vertices[eyeballs]
        lower_line = points[list(lower)][np.argsort(points[list(lower), 0])]
        inside = (ball[:, 0] >= lower_line[0, 0]) & (ball[:, 0] <= lower_line[-1, 0])
        drop = np.interp(ball[:, 0], lower_line[:, 0], lower_line[:, 1]) - ball[:, 1]
        blink[eyeballs, 1] = np.where(inside, drop, 0.0)
        blink[eyeballs, 2] = np.where(inside, 0.003, 0.0)
        shapes[f"blink_{side}"] = blink
        eye_top = points[list(upper), 1].min()
        above = f.smoothstep(eye_top + 0.001, eye_top - 0.008, vertices[:, 1])[:, None]
        raise_ = _gaussian(vertices, points[brow], 0.02)[:, None] * [0.0, -0.009, -0.001]
        shapes[f"brow_{side}"] = raise_ * above * front
    mouth = points[[13, f.MOUTH_CORNER_RIGHT, f.MOUTH_CORNER_LEFT]].mean(axis=0)
    weight = _gaussian(vertices, mouth, 0.016)[:, None]
    squeeze = np.stack(
        [
            -0.4 * (vertices[:, 0] - mouth[0]),
            np.zeros(len(vertices)),
            np.full(len(vertices), -0.009),
        ],
        axis=1,
    )
    shapes["pucker"] = weight * squeeze * front
    return np.stack([shapes[name] for name in PARAMETERS[1:]])


def _segment_distance(xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """xy [V, 2]; a, b [2] -> [V] distance to the segment a-b."""
    t = np.clip((xy - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
    return np.linalg.norm(xy - (a + t[:, None] * (b - a)), axis=1)


def _shading(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Relative change [P-1, V] of the light at each vertex for each parameter at 1: smiles
    deepen the nasolabial folds, raised brows shade the forehead, a pucker darkens the lips.
    Appearance that no deformation of the neutral texture produces."""
    front = f.smoothstep(0.04, 0.0, vertices[:, 2])
    shading = dict.fromkeys(PARAMETERS[1:], np.zeros(len(vertices)))
    for side, ala, corner, brow, sign in (
        ("r", f.NOSE_WING_RIGHT, f.MOUTH_CORNER_RIGHT, f.BROW_RIGHT, -1.0),
        ("l", f.NOSE_WING_LEFT, f.MOUTH_CORNER_LEFT, f.BROW_LEFT, 1.0),
    ):
        start = points[ala, :2] + [0.006 * sign, 0.0]
        end = points[corner, :2] + [0.007 * sign, 0.004]
        fold = np.exp(-(_segment_distance(vertices[:, :2], start, end) ** 2) / (2 * 0.006**2))
        shading[f"smile_{side}"] = -0.2 * fold * front
        forehead = points[brow] + [0.0, -0.02, 0.0]
        shading[f"brow_{side}"] = -0.12 * _gaussian(vertices, forehead, 0.015) * front
    mouth = points[[13, 14]].mean(axis=0)
    shading["pucker"] = -0.15 * _gaussian(vertices, mouth, 0.01) * front
    return np.stack([shading[name] for name in PARAMETERS[1:]])


def _colour(photo: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Median colour [3] of a photo box (float in [0, 1])."""
    return np.median(photo[rows, cols].reshape(-1, 3), axis=0)


def build_head(photo: np.ndarray) -> HeadModel:
    """photo [H, W, 3] uint8: a frontal portrait (the astronaut) whose face Face Mesh finds."""
    pixels = _photo_landmarks(photo)
    built = f.build_face(pixels)
    points = f.close_mouth(built.points)
    image = photo.astype(np.float32) / 255.0
    skin = _colour(image, *SKIN_BOX)
    hair = image[HAIR_BOX]  # [24, 64, 3]
    inward = pixels[built.oval, :2] + 0.12 * (pixels[:, :2].mean(0) - pixels[built.oval, :2])
    edge = image[inward[:, 1].astype(int), inward[:, 0].astype(int)]  # [K, 3]
    lip_x, lip_y = f.mouth_line(points)
    lip_z = points[list(f.LIPS_UPPER_INNER), 2][np.argsort(points[list(f.LIPS_UPPER_INNER), 0])]
    chin = float(points[152, 1])
    eyeball_ids = np.unique(built.eyeballs)
    eyeballs = Part(
        points[eyeball_ids] + [0.0, 0.0, 0.004],
        np.searchsorted(eyeball_ids, built.eyeballs).astype(np.int32),
        built.uvs[eyeball_ids],
        image,
    )
    # Each part with its share of the jaw rotation (NaN: from its position, like the face).
    parts = [
        (skull_shell(points[built.oval], edge, hair, skin), np.nan),
        (neck(skin, chin - 0.04, chin + 0.3), 0.0),
        (mouth_sheet(lip_x, lip_y, lip_z, upper=True), 0.0),  # upper teeth stay with the skull
        (mouth_sheet(lip_x, lip_y, lip_z, upper=False), 1.0),  # lower teeth, tongue: the jaw
        (eyeballs, np.nan),
    ]
    # Atlas: the photo on the left, the procedural patches stacked on its right.
    height, width = image.shape[:2]
    atlas = np.ones((height, width + 400, 3), np.float32)
    atlas[:, :width] = image
    vertices, triangles, uvs = [points], [built.skin], [built.uvs]
    jaw_share = [np.full(len(points), np.nan)]
    offset, row = len(points), 0
    for part, share in parts:
        if part.texture is image:
            part_uvs = part.uvs
        else:
            h, w = part.texture.shape[:2]
            atlas[row : row + h, width : width + w] = part.texture
            part_uvs = part.uvs + np.array([width, row])
            row += h + 2
        vertices.append(part.vertices)
        triangles.append(part.triangles + offset)
        uvs.append(part_uvs)
        jaw_share.append(np.full(len(part.vertices), share))
        offset += len(part.vertices)
    all_vertices = np.concatenate(vertices)
    hinge = f.hinge_point(points)
    shares = f.split_lips(np.concatenate(jaw_share))
    jaw = np.where(np.isnan(shares), f.jaw_weights(all_vertices, points, hinge), shares)
    return HeadModel(
        vertices=all_vertices,
        triangles=np.concatenate(triangles).astype(np.int32),
        uvs=np.concatenate(uvs),
        texture=atlas,
        blendshapes=_blendshapes(all_vertices, points, slice(offset - len(eyeball_ids), offset)),
        jaw_weights=jaw,
        hinge=hinge,
        normal_group=_coincident(all_vertices),
        shading=_shading(all_vertices, points),
    )


def _coincident(vertices: np.ndarray) -> np.ndarray:
    """vertices [V, 3] -> [V]: the first index of the vertices at the same position (to 0.01 mm),
    so that seams (duplicated vertices with other texture coordinates) shade smoothly."""
    keys = np.round(vertices * 1e5).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def pose_head(head: HeadModel, params: np.ndarray) -> np.ndarray:
    """params [P] in PARAMETERS order -> head-local vertices [V, 3]."""
    moved = head.vertices + np.tensordot(params[1:], head.blendshapes, axes=1)
    angles = head.jaw_weights * (params[0] * JAW_MAX_RADIANS)
    return f.rotate_x(moved, head.hinge, angles)
