"""The rest of the synthetic head: a skull shell from the face outline to the back of the head
(hair on top and behind, skin under the jaw), a neck, and the mouth cavity behind the lips.

Each part returns vertices [V, 3] (head-local metres), triangles [F, 3] (local indices), and
texture coordinates [V, 2] in its own texture patch ([h, w, 3] float32), placed in the atlas by
``npga.data.synth.head``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npga.data.synth.face import smoothstep

SKULL_RADII = (0.082, 0.125, 0.1)  # metres: x (with hair), y, z
BACK_POLE = (0.0, -0.25, 1.0)  # towards the back of the skull (normalised where used)
RINGS = 24  # shell rings from the face outline to the back pole
PATCH = (96, 384)  # shell texture: rows along the rings, columns around the outline


@dataclass(frozen=True)
class Part:
    vertices: np.ndarray  # [V, 3]
    triangles: np.ndarray  # [F, 3] int32, local
    uvs: np.ndarray  # [V, 2] pixels in ``texture``
    texture: np.ndarray  # [h, w, 3] float32


def _grid_triangles(rows: int, cols: int) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (row-major) -> [F, 3]."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d = a + 1, a + cols
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, d + 1], 1)]).astype(np.int32)


def shell_points(outline: np.ndarray, s: np.ndarray) -> np.ndarray:
    """outline [K, 3] points on the face outline; s [S] in [0, 1] -> [S, K, 3] shell points,
    slerped on the skull ellipsoid from the outline (s = 0) to the back pole (s = 1)."""
    radii = np.asarray(SKULL_RADII)
    pole = np.asarray(BACK_POLE) / np.linalg.norm(BACK_POLE)
    normalised = outline / radii  # [K, 3]
    radius = np.linalg.norm(normalised, axis=1, keepdims=True)
    start = normalised / radius
    angle = np.arccos(np.clip(start @ pole, -1.0, 1.0))[None, :, None]  # [1, K, 1]
    t = s[:, None, None]
    sin = np.maximum(np.sin(angle), 1e-9)
    direction = (np.sin((1 - t) * angle) * start + np.sin(t * angle) * pole) / sin
    blend = smoothstep(0.0, 0.35, t)
    return direction * (radius * (1 - blend) + blend) * radii


def skull_shell(
    outline: np.ndarray, edge_colours: np.ndarray, hair: np.ndarray, skin: np.ndarray
) -> Part:
    """outline [K, 3] (closed loop, not repeated); edge_colours [K, 3] photo colours along it;
    hair [h, w, 3] a hair texture patch from the photo (w dividing PATCH[1] / 2); skin [3]."""
    loop = np.concatenate([outline, outline[:1]])  # [K+1, 3]: a seam column
    s = np.linspace(0.0, 1.0, RINGS + 1)
    vertices = shell_points(loop, s).reshape(-1, 3)
    rows, cols = PATCH
    uvs = np.stack(
        np.meshgrid(np.linspace(0.5, cols - 0.5, len(loop)), np.linspace(0.5, rows - 0.5, len(s))),
        axis=-1,
    ).reshape(-1, 2)
    # Texture: texel positions on the shell decide hair (above the ears, behind) or skin.
    along = np.linspace(0.0, len(outline), cols, endpoint=False)
    index = np.floor(along).astype(int)
    frac = (along - index)[:, None]
    texel_outline = loop[index] * (1 - frac) + loop[index + 1] * frac  # [cols, 3]
    texel = shell_points(texel_outline, np.linspace(0.0, 1.0, rows))  # [rows, cols, 3]
    hair_line = 0.02 + 0.05 * smoothstep(-0.02, 0.06, texel[..., 2])
    hairy = 1.0 - smoothstep(hair_line - 0.012, hair_line + 0.012, texel[..., 1])
    period = np.concatenate([hair, hair[:, ::-1]], axis=1)  # mirrored: seamless when wrapped
    period = np.concatenate([period, period[::-1]], axis=0)
    tiled = np.tile(period, (rows // period.shape[0] + 1, cols // period.shape[1] + 1, 1))
    procedural = hairy[..., None] * tiled[:rows, :cols] + (1 - hairy[..., None]) * skin
    edge = np.concatenate([edge_colours, edge_colours[:1]])
    edge_texels = edge[index] * (1 - frac) + edge[index + 1] * frac  # [cols, 3]
    fade = smoothstep(0.0, 0.12, np.linspace(0.0, 1.0, rows))[:, None, None]
    edge_weight = (1 - fade) * (1 - hairy[..., None])  # hair starts right at the outline
    texture = edge_weight * edge_texels[None] + (1 - edge_weight) * procedural
    triangles = _grid_triangles(len(s), len(loop))
    return Part(vertices, triangles, uvs, texture.astype(np.float32))


def neck(skin: np.ndarray, top_y: float, bottom_y: float) -> Part:
    """An elliptic cylinder under the skull from ``top_y`` to ``bottom_y`` (metres, y down),
    flaring towards the shoulders; closed around (the texture only varies with height)."""
    segments, rings = 32, 8
    angle = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    y = np.linspace(top_y, bottom_y, rings)
    a, yy = np.meshgrid(angle, y)
    flare = 1.0 + 0.6 * smoothstep(top_y + 0.12, bottom_y, yy)
    x, z = 0.062 * flare * np.sin(a), 0.02 - 0.062 * flare * np.cos(a)
    vertices = np.stack([x, yy, z], -1).reshape(-1, 3)
    shade = 0.8 + 0.15 * smoothstep(bottom_y, top_y, y)  # darker lower down
    texture = (shade[:, None, None] * skin[None, None]).astype(np.float32)  # [rings, 1, 3]
    uvs = np.stack(
        [np.full(yy.shape, 0.5), np.broadcast_to(np.arange(rings)[:, None] + 0.5, yy.shape)], -1
    )
    grid = np.arange(rings * segments).reshape(rings, segments)
    a_, b_ = grid[:-1], np.roll(grid[:-1], -1, axis=1)  # this column and the next, wrapping
    c_, d_ = grid[1:], np.roll(grid[1:], -1, axis=1)
    triangles = np.concatenate(
        [np.stack([a_, c_, b_], -1).reshape(-1, 3), np.stack([b_, c_, d_], -1).reshape(-1, 3)]
    ).astype(np.int32)
    return Part(vertices, triangles, uvs.reshape(-1, 2), texture)


def _mouth_texture(rows: int, cols: int, upper: bool) -> np.ndarray:
    """Teeth, dark interior and tongue, procedurally ([rows, cols, 3] float32); the corners
    (the inside of the cheeks) are dark."""
    v = np.linspace(0.0, 1.0, rows)[:, None, None]
    u = np.linspace(0.0, 1.0, cols)[None, :, None]
    side = np.minimum(u, 1 - u)  # 0 at the mouth corners, 0.5 in the middle
    dark = np.array([0.22, 0.06, 0.07]) * (1.0 - 0.6 * v)
    tooth = np.array([0.93, 0.9, 0.84]) * (0.85 + 0.15 * np.abs(np.cos(np.pi * 14 * u)))
    if upper:  # upper teeth along the top, then the back of the mouth
        teeth = (1.0 - smoothstep(0.22, 0.27, v)) * smoothstep(0.1, 0.2, side)
        colour = teeth * tooth + (1 - teeth) * dark
    else:  # lower teeth along the top, the tongue below
        teeth = (1.0 - smoothstep(0.16, 0.2, v)) * smoothstep(0.12, 0.22, side)
        tongue = np.array([0.7, 0.28, 0.3]) * (1.0 - 0.5 * v) * smoothstep(0.05, 0.2, side)
        colour = teeth * tooth + (1 - teeth) * np.maximum(tongue, dark)
    return (colour * (0.35 + 0.65 * smoothstep(0.0, 0.2, side))).astype(np.float32)


def mouth_sheet(lip_x: np.ndarray, lip_y: np.ndarray, lip_z: np.ndarray, upper: bool) -> Part:
    """A curved sheet behind the lips. lip_x/y/z [M]: the closed inner lip line, x increasing.

    upper: teeth 1 cm high just behind the upper lip, then bending back into the mouth.
    lower (moves with the jaw): lower teeth, then the tongue, a little deeper.
    """
    cols, rows = 17, 9
    x = np.linspace(lip_x[0] + 0.002, lip_x[-1] - 0.002, cols)
    centre = 0.5 * (lip_x[0] + lip_x[-1])
    half = 0.5 * (lip_x[-1] - lip_x[0])
    bulge = np.sqrt(np.clip(1.0 - ((x - centre) / half) ** 2, 0.0, 1.0))  # [cols]
    y0, z0 = np.interp(x, lip_x, lip_y), np.interp(x, lip_x, lip_z)
    t = np.linspace(0.0, 1.0, rows)[:, None]  # [rows, 1]
    if upper:
        y = y0 - 0.003 + 0.04 * t
        z = z0 + 0.002 + 0.004 * bulge + 0.02 * smoothstep(0.25, 1.0, t)
    else:
        y = y0 - 0.009 + 0.04 * t
        z = z0 + 0.006 + 0.004 * bulge + 0.01 * t
    vertices = np.stack([np.broadcast_to(x, y.shape), y, z], -1).reshape(-1, 3)
    texture = _mouth_texture(32, 64, upper)
    uvs = np.stack(np.meshgrid(np.linspace(0.5, 63.5, cols), np.linspace(0.5, 31.5, rows)), -1)
    return Part(vertices, _grid_triangles(rows, cols), uvs.reshape(-1, 2), texture)
