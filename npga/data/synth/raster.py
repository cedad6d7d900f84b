"""A z-buffered, textured triangle rasteriser (numba) for the synthetic capture rig.

Perspective-correct texture coordinates, bilinear texture lookups, per-vertex shading
(Gouraud), 2x2 supersampling; coverage gives the foreground mask.
"""

from __future__ import annotations

import numba
import numpy as np

from npga.cameras import Cameras

NEAR = 1e-3  # metres: triangles with a vertex closer than this to the camera are skipped
SUPERSAMPLE = 2


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear(texture, u, v, out):  # pragma: no cover - jitted
    """Sample texture [Ht, Wt, 3] at pixel coordinates (u, v) (centres at +0.5) into out [3]."""
    height, width = texture.shape[0], texture.shape[1]
    x = min(max(u - 0.5, 0.0), width - 1.0)
    y = min(max(v - 0.5, 0.0), height - 1.0)
    x0, y0 = int(x), int(y)
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    for k in range(3):
        top = texture[y0, x0, k] * (1 - fx) + texture[y0, x1, k] * fx
        bottom = texture[y1, x0, k] * (1 - fx) + texture[y1, x1, k] * fx
        out[k] = top * (1 - fy) + bottom * fy


@numba.njit(cache=True, nogil=True)
def rasterize_kernel(screen, triangles, uvs, shade, texture, width, height):  # pragma: no cover
    """screen [V, 3] (x, y pixels; z camera depth), triangles [F, 3], uvs [V, 2] texture pixels,
    shade [V], texture [Ht, Wt, 3] -> rgb [H, W, 3] float32 and coverage [H, W] uint8."""
    rgb = np.zeros((height, width, 3), dtype=np.float32)
    depth = np.full((height, width), np.inf)
    covered = np.zeros((height, width), dtype=np.uint8)
    sample = np.zeros(3)
    for f in range(triangles.shape[0]):
        a, b, c = triangles[f, 0], triangles[f, 1], triangles[f, 2]
        za, zb, zc = screen[a, 2], screen[b, 2], screen[c, 2]
        if za < NEAR or zb < NEAR or zc < NEAR:
            continue
        ax, ay, bx, by, cx, cy = (
            screen[a, 0],
            screen[a, 1],
            screen[b, 0],
            screen[b, 1],
            screen[c, 0],
            screen[c, 1],
        )
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-12:
            continue
        x0 = max(int(np.floor(min(ax, bx, cx))), 0)
        x1 = min(int(np.ceil(max(ax, bx, cx))), width - 1)
        y0 = max(int(np.floor(min(ay, by, cy))), 0)
        y1 = min(int(np.ceil(max(ay, by, cy))), height - 1)
        ia, ib, ic = 1.0 / za, 1.0 / zb, 1.0 / zc
        for py in range(y0, y1 + 1):
            sy = py + 0.5
            for px in range(x0, x1 + 1):
                sx = px + 0.5
                wa = ((bx - sx) * (cy - sy) - (by - sy) * (cx - sx)) / area
                wb = ((cx - sx) * (ay - sy) - (cy - sy) * (ax - sx)) / area
                wc = 1.0 - wa - wb
                if wa < 0 or wb < 0 or wc < 0:
                    continue
                inverse = wa * ia + wb * ib + wc * ic
                z = 1.0 / inverse
                if z >= depth[py, px]:
                    continue
                pa, pb, pc = wa * ia * z, wb * ib * z, wc * ic * z  # perspective-correct
                u = pa * uvs[a, 0] + pb * uvs[b, 0] + pc * uvs[c, 0]
                v = pa * uvs[a, 1] + pb * uvs[b, 1] + pc * uvs[c, 1]
                light = pa * shade[a] + pb * shade[b] + pc * shade[c]
                _bilinear(texture, u, v, sample)
                depth[py, px] = z
                covered[py, px] = 1
                for k in range(3):
                    rgb[py, px, k] = sample[k] * light
    return rgb, covered


def project(points: np.ndarray, world_to_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """points [V, 3] world, world_to_cam [4, 4], intrinsics [3, 3] -> [V, 3] (x px, y px, depth)."""
    cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    depth = cam[:, 2:3]
    pixels = cam @ intrinsics.T
    return np.concatenate([pixels[:, :2] / np.maximum(depth, NEAR), depth], axis=1)


def render_views(
    vertices: np.ndarray,  # [V, 3] world
    triangles: np.ndarray,  # [F, 3] int32
    uvs: np.ndarray,  # [V, 2] texture pixels
    shade: np.ndarray,  # [V] light factor
    texture: np.ndarray,  # [Ht, Wt, 3] float32 in [0, 1]
    cameras: Cameras,  # [C]
    background: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """-> rgb [C, H, W, 3] uint8 and masks [C, H, W] uint8 (coverage, 0..255)."""
    s = SUPERSAMPLE
    width, height = cameras.width, cameras.height
    rgbs, masks = [], []
    for c in range(cameras.num_cameras):
        k = cameras.intrinsics[c].double().numpy().copy()
        k[:2] *= s
        screen = project(vertices, cameras.world_to_cam[c].double().numpy(), k)
        rgb, covered = rasterize_kernel(
            screen, triangles, uvs, shade, texture, s * width, s * height
        )
        rgb = rgb.reshape(height, s, width, s, 3).mean(axis=(1, 3))
        alpha = covered.reshape(height, s, width, s).mean(axis=(1, 3))[..., None]
        composite = rgb + (1.0 - alpha) * background
        rgbs.append(np.clip(composite * 255.0 + 0.5, 0, 255).astype(np.uint8))
        masks.append(np.clip(alpha[..., 0] * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(rgbs), np.stack(masks)
