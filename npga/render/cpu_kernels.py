"""Numba kernels of the CPU rasteriser: tile binning, forward and backward alpha compositing.

Plain numpy in, numpy out; the autograd wiring lives in ``npga.render.cpu``. The compositing
rules are gsplat's (classic mode): pixel centres at +0.5, alpha = min(0.999, o * exp(-sigma)),
contributions with alpha < 1/255 skipped, a pixel stops before the Gaussian that would take its
transmittance to 1e-4 or below. Gaussians are composited front to back in depth order.

Shapes: P image planes (batch x cameras), N Gaussians per plane, T tiles per plane,
E tile/Gaussian intersections. Arithmetic is float64 inside the kernels whatever the input dtype.
"""

from __future__ import annotations

import math

import numba
import numpy as np

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4

# Fast-math without "nnan"/"ninf": the kernels' NaN/Inf guards must survive optimisation.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Layout of the per-Gaussian records that the compositing loops read (one cache-friendly row).
F_MX, F_MY, F_CA, F_CB, F_CC, F_OPACITY, F_R, F_G, F_B, F_SIGMA_MAX = range(10)
NUM_FIELDS = 10
# Layout of the per-intersection gradient rows written by the backward pass.
G_MX, G_MY, G_CA, G_CB, G_CC, G_OPACITY, G_R, G_G, G_B = range(9)
NUM_GRADS = 9


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _exp_neg(sigma):  # pragma: no cover - jitted
    """exp(-sigma) for 0 <= sigma <= ~6 (all the compositing loops need), relative error < 2e-7.

    exp(-sigma/16)^16 with a degree-7 Taylor polynomial: ~17% faster per frame than libm's exp
    here, and the same function in forward and backward keeps them consistent.
    """
    x = -0.0625 * sigma
    p = 1.0 + x * (
        1.0 + x * (0.5 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (1 / 720 + x / 5040)))))
    )
    p = p * p
    p = p * p
    p = p * p
    return p * p


@numba.njit(cache=True, nogil=True)
def pack_gaussians(means2d, conics, colors, opacities):  # pragma: no cover - jitted
    """Interleave [P,N,2], [P,N,3], [P,N,3], [P,N] into records [P, N, NUM_FIELDS] (float64)."""
    p_count, n_count = opacities.shape
    packed = np.empty((p_count, n_count, NUM_FIELDS))
    for p in range(p_count):
        for n in range(n_count):
            opacity = opacities[p, n]
            packed[p, n, F_MX] = means2d[p, n, 0]
            packed[p, n, F_MY] = means2d[p, n, 1]
            packed[p, n, F_CA] = conics[p, n, 0]
            packed[p, n, F_CB] = conics[p, n, 1]
            packed[p, n, F_CC] = conics[p, n, 2]
            packed[p, n, F_OPACITY] = opacity
            packed[p, n, F_R] = colors[p, n, 0]
            packed[p, n, F_G] = colors[p, n, 1]
            packed[p, n, F_B] = colors[p, n, 2]
            # sigma beyond which alpha < 1/255 for sure (a cheap pre-test before exp).
            packed[p, n, F_SIGMA_MAX] = math.log(max(opacity, 1e-30) / ALPHA_THRESHOLD) + 1e-3
    return packed


@numba.njit(cache=True, inline="always")
def _tile_range(mean2d, radius, tile_size, tiles_x, tiles_y):  # pragma: no cover - jitted
    """Tiles [x0, x1) x [y0, y1) touched by the bounding box mean2d [2] +- radius [2]."""
    x0 = min(max(0, int(math.floor((mean2d[0] - radius[0]) / tile_size))), tiles_x)
    x1 = min(max(0, int(math.ceil((mean2d[0] + radius[0]) / tile_size))), tiles_x)
    y0 = min(max(0, int(math.floor((mean2d[1] - radius[1]) / tile_size))), tiles_y)
    y1 = min(max(0, int(math.ceil((mean2d[1] + radius[1]) / tile_size))), tiles_y)
    return x0, x1, y0, y1


@numba.njit(cache=True, nogil=True)
def bin_gaussians(means2d, radii, depth_order, tile_size, tiles_x, tiles_y):  # pragma: no cover
    """Sort the Gaussians of every tile front to back.

    means2d [P,N,2], radii [P,N,2] int32 (0,0 = culled), depth_order [P,N] (argsort of depth).
    Returns tile_offsets [P*T + 1] int64 and entries [E] int32 (Gaussian index within its plane);
    the Gaussians of tile t of plane p are entries[tile_offsets[p*T+t] : tile_offsets[p*T+t+1]].
    """
    p_count, n_count = radii.shape[0], radii.shape[1]
    num_tiles = tiles_x * tiles_y
    counts = np.zeros(p_count * num_tiles + 1, dtype=np.int64)
    for p in range(p_count):
        for n in range(n_count):
            if radii[p, n, 0] <= 0 and radii[p, n, 1] <= 0:
                continue
            x0, x1, y0, y1 = _tile_range(means2d[p, n], radii[p, n], tile_size, tiles_x, tiles_y)
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    counts[p * num_tiles + ty * tiles_x + tx + 1] += 1
    tile_offsets = np.cumsum(counts)
    cursor = tile_offsets[:-1].copy()
    entries = np.empty(tile_offsets[-1], dtype=np.int32)
    for p in range(p_count):
        for i in range(n_count):
            n = depth_order[p, i]
            if radii[p, n, 0] <= 0 and radii[p, n, 1] <= 0:
                continue
            x0, x1, y0, y1 = _tile_range(means2d[p, n], radii[p, n], tile_size, tiles_x, tiles_y)
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    t = p * num_tiles + ty * tiles_x + tx
                    entries[cursor[t]] = n
                    cursor[t] += 1
    return tile_offsets, entries


@numba.njit(cache=True, inline="always")
def _open_tile(t, num_tiles, tiles_x, packed, tile_offsets, entries):  # pragma: no cover
    """Plane, tile row and column of global tile ``t``, its first entry, and its Gaussians'
    records copied into a contiguous [count, NUM_FIELDS] block (front to back)."""
    p = t // num_tiles
    ty = (t % num_tiles) // tiles_x
    tx = t % tiles_x
    start, end = tile_offsets[t], tile_offsets[t + 1]
    tile = np.empty((end - start, NUM_FIELDS))
    for k in range(start, end):
        n = entries[k]
        for f in range(NUM_FIELDS):
            tile[k - start, f] = packed[p, n, f]
    return p, ty, tx, start, tile


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def rasterize_forward(
    packed, background, tile_offsets, entries, width, height, tile_size, tiles_x
):  # pragma: no cover - jitted
    """Composite every pixel front to back.

    packed [P,N,NUM_FIELDS], background [P,3]. Returns rgb [P,H,W,3], final transmittance
    [P,H,W] and, per pixel, the end (exclusive) of its contributing range in ``entries`` [P,H,W].
    """
    p_count = packed.shape[0]
    tiles_y = (height + tile_size - 1) // tile_size
    num_tiles = tiles_x * tiles_y
    rgb = np.empty((p_count, height, width, 3))
    transmittance = np.empty((p_count, height, width))
    last_entry = np.empty((p_count, height, width), dtype=np.int64)
    for t in numba.prange(p_count * num_tiles):
        p, ty, tx, start, tile = _open_tile(t, num_tiles, tiles_x, packed, tile_offsets, entries)
        for i in range(ty * tile_size, min((ty + 1) * tile_size, height)):
            py = i + 0.5
            for j in range(tx * tile_size, min((tx + 1) * tile_size, width)):
                px = j + 0.5
                trans = 1.0
                acc_r = 0.0
                acc_g = 0.0
                acc_b = 0.0
                stop = start
                for q in range(tile.shape[0]):
                    dx = tile[q, F_MX] - px
                    dy = tile[q, F_MY] - py
                    sigma = (
                        0.5 * (tile[q, F_CA] * dx * dx + tile[q, F_CC] * dy * dy)
                        + tile[q, F_CB] * dx * dy
                    )
                    if sigma < 0.0 or sigma > tile[q, F_SIGMA_MAX]:
                        continue
                    alpha = min(MAX_ALPHA, tile[q, F_OPACITY] * _exp_neg(sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_trans = trans * (1.0 - alpha)
                    if next_trans <= MIN_TRANSMITTANCE:
                        break
                    weight = alpha * trans
                    acc_r += weight * tile[q, F_R]
                    acc_g += weight * tile[q, F_G]
                    acc_b += weight * tile[q, F_B]
                    trans = next_trans
                    stop = start + q + 1
                rgb[p, i, j, 0] = acc_r + trans * background[p, 0]
                rgb[p, i, j, 1] = acc_g + trans * background[p, 1]
                rgb[p, i, j, 2] = acc_b + trans * background[p, 2]
                transmittance[p, i, j] = trans
                last_entry[p, i, j] = stop
    return rgb, transmittance, last_entry


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def blend_weights(
    packed, tile_offsets, entries, width, height, tile_size, tiles_x
):  # pragma: no cover - jitted
    """What each Gaussian adds to the image: its compositing weights (alpha x transmittance)
    summed over every pixel, [P, N], by the forward pass's rules (a level-of-detail measure)."""
    p_count, n_count = packed.shape[0], packed.shape[1]
    tiles_y = (height + tile_size - 1) // tile_size
    num_tiles = tiles_x * tiles_y
    entry_weights = np.zeros(entries.shape[0])
    for t in numba.prange(p_count * num_tiles):
        p, ty, tx, start, tile = _open_tile(t, num_tiles, tiles_x, packed, tile_offsets, entries)
        for i in range(ty * tile_size, min((ty + 1) * tile_size, height)):
            py = i + 0.5
            for j in range(tx * tile_size, min((tx + 1) * tile_size, width)):
                px = j + 0.5
                trans = 1.0
                for q in range(tile.shape[0]):
                    dx = tile[q, F_MX] - px
                    dy = tile[q, F_MY] - py
                    sigma = (
                        0.5 * (tile[q, F_CA] * dx * dx + tile[q, F_CC] * dy * dy)
                        + tile[q, F_CB] * dx * dy
                    )
                    if sigma < 0.0 or sigma > tile[q, F_SIGMA_MAX]:
                        continue
                    alpha = min(MAX_ALPHA, tile[q, F_OPACITY] * _exp_neg(sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_trans = trans * (1.0 - alpha)
                    if next_trans <= MIN_TRANSMITTANCE:
                        break
                    entry_weights[start + q] += alpha * trans
                    trans = next_trans
    weights = np.zeros((p_count, n_count))
    for p in range(p_count):
        for k in range(tile_offsets[p * num_tiles], tile_offsets[(p + 1) * num_tiles]):
            weights[p, entries[k]] += entry_weights[k]
    return weights


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def rasterize_backward(
    packed,
    background,
    tile_offsets,
    entries,
    width,
    height,
    tile_size,
    tiles_x,
    transmittance,
    last_entry,
    grad_rgb,
    grad_alpha,
):  # pragma: no cover - jitted
    """Gradients of the loss w.r.t. every Gaussian's screen-space parameters.

    grad_rgb [P,H,W,3], grad_alpha [P,H,W] (alpha = 1 - final transmittance).
    Returns [P, N, NUM_GRADS]: d/d(mean x, mean y, conic a, b, c, opacity, r, g, b).
    Each tile writes its own intersection rows (no races); they are summed per Gaussian at the end.
    """
    p_count, n_count = packed.shape[0], packed.shape[1]
    tiles_y = (height + tile_size - 1) // tile_size
    num_tiles = tiles_x * tiles_y
    entry_grads = np.zeros((entries.shape[0], NUM_GRADS))
    for t in numba.prange(p_count * num_tiles):
        p, ty, tx, start, tile = _open_tile(t, num_tiles, tiles_x, packed, tile_offsets, entries)
        for i in range(ty * tile_size, min((ty + 1) * tile_size, height)):
            py = i + 0.5
            for j in range(tx * tile_size, min((tx + 1) * tile_size, width)):
                px = j + 0.5
                final_trans = transmittance[p, i, j]
                trans = final_trans
                gr, gg, gb = grad_rgb[p, i, j, 0], grad_rgb[p, i, j, 1], grad_rgb[p, i, j, 2]
                g_alpha_out = grad_alpha[p, i, j]
                # Colour of everything behind the current Gaussian (incl. background), weighted.
                rest_r = final_trans * background[p, 0]
                rest_g = final_trans * background[p, 1]
                rest_b = final_trans * background[p, 2]
                for k in range(last_entry[p, i, j] - 1, start - 1, -1):
                    g = tile[k - start]
                    dx = g[F_MX] - px
                    dy = g[F_MY] - py
                    sigma = 0.5 * (g[F_CA] * dx * dx + g[F_CC] * dy * dy) + g[F_CB] * dx * dy
                    if sigma < 0.0 or sigma > g[F_SIGMA_MAX]:
                        continue
                    vis = _exp_neg(sigma)
                    alpha = min(MAX_ALPHA, g[F_OPACITY] * vis)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    one_minus = 1.0 - alpha
                    trans = trans / one_minus  # transmittance in front of this Gaussian
                    weight = alpha * trans
                    row = entry_grads[k]
                    row[G_R] += weight * gr
                    row[G_G] += weight * gg
                    row[G_B] += weight * gb
                    d_alpha = (
                        gr * (g[F_R] * trans - rest_r / one_minus)
                        + gg * (g[F_G] * trans - rest_g / one_minus)
                        + gb * (g[F_B] * trans - rest_b / one_minus)
                        + g_alpha_out * final_trans / one_minus
                    )
                    rest_r += weight * g[F_R]
                    rest_g += weight * g[F_G]
                    rest_b += weight * g[F_B]
                    if g[F_OPACITY] * vis <= MAX_ALPHA:
                        d_sigma = -alpha * d_alpha
                        row[G_OPACITY] += vis * d_alpha
                        row[G_CA] += 0.5 * dx * dx * d_sigma
                        row[G_CB] += dx * dy * d_sigma
                        row[G_CC] += 0.5 * dy * dy * d_sigma
                        row[G_MX] += (g[F_CA] * dx + g[F_CB] * dy) * d_sigma
                        row[G_MY] += (g[F_CB] * dx + g[F_CC] * dy) * d_sigma
    grads = np.zeros((p_count, n_count, NUM_GRADS))
    for t in range(p_count * num_tiles):
        p = t // num_tiles
        for k in range(tile_offsets[t], tile_offsets[t + 1]):
            n = entries[k]
            for f in range(NUM_GRADS):
                grads[p, n, f] += entry_grads[k, f]
    return grads


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def project_and_pack(
    means,
    quats,
    scales,
    opacities,
    sh_coeffs,
    world_to_cam,
    intrinsics,
    width,
    height,
    near_plane,
    eps2d,
):  # pragma: no cover - jitted
    """Inference-only fused projection (same maths as ``projection.project``, no autograd).

    means [B,N,3], quats [B,N,4] wxyz, scales [B,N,3], opacities [B,N], sh_coeffs [B,N,K,3],
    world_to_cam [C,4,4], intrinsics [C,3,3]. Planes are b-major (p = b*C + c). Returns packed
    records [P,N,NUM_FIELDS], depths [P,N], radii [P,N,2] int32 and means2d [P,N,2].
    """
    b_count, n_count = opacities.shape
    c_count = world_to_cam.shape[0]
    p_count = b_count * c_count
    packed = np.zeros((p_count, n_count, NUM_FIELDS))
    depths = np.empty((p_count, n_count))
    radii = np.zeros((p_count, n_count, 2), dtype=np.int32)
    means2d = np.zeros((p_count, n_count, 2))
    sh_c0, sh_c1 = 0.28209479177387814, 0.4886025119029199
    for pn in numba.prange(p_count * n_count):
        p = pn // n_count
        n = pn % n_count
        b = p // c_count
        c = p % c_count
        r = world_to_cam[c]
        fx, fy = intrinsics[c, 0, 0], intrinsics[c, 1, 1]
        cx, cy = intrinsics[c, 0, 2], intrinsics[c, 1, 2]
        mx, my, mz = means[b, n, 0], means[b, n, 1], means[b, n, 2]
        x = r[0, 0] * mx + r[0, 1] * my + r[0, 2] * mz + r[0, 3]
        y = r[1, 0] * mx + r[1, 1] * my + r[1, 2] * mz + r[1, 3]
        z = r[2, 0] * mx + r[2, 1] * my + r[2, 2] * mz + r[2, 3]
        depths[p, n] = z
        if not z > near_plane:  # also culls NaN
            continue
        # world covariance: M = R(q) diag(s); Sigma = M M^T
        qw, qx, qy, qz = quats[b, n, 0], quats[b, n, 1], quats[b, n, 2], quats[b, n, 3]
        inv_norm = 1.0 / max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
        qw, qx, qy, qz = qw * inv_norm, qx * inv_norm, qy * inv_norm, qz * inv_norm
        # columns of R(q), each scaled by its axis' standard deviation
        s0, s1, s2 = scales[b, n, 0], scales[b, n, 1], scales[b, n, 2]
        m00, m10, m20 = (
            (1 - 2 * (qy * qy + qz * qz)) * s0,
            2 * (qx * qy + qw * qz) * s0,
            2 * (qx * qz - qw * qy) * s0,
        )
        m01, m11, m21 = (
            2 * (qx * qy - qw * qz) * s1,
            (1 - 2 * (qx * qx + qz * qz)) * s1,
            2 * (qy * qz + qw * qx) * s1,
        )
        m02, m12, m22 = (
            2 * (qx * qz + qw * qy) * s2,
            2 * (qy * qz - qw * qx) * s2,
            (1 - 2 * (qx * qx + qy * qy)) * s2,
        )
        # T = J W M (2x3): the 2D covariance is T T^T
        lim_x_pos = (width - cx) / fx + 0.15 * width / fx
        lim_x_neg = cx / fx + 0.15 * width / fx
        lim_y_pos = (height - cy) / fy + 0.15 * height / fy
        lim_y_neg = cy / fy + 0.15 * height / fy
        tx = z * min(lim_x_pos, max(-lim_x_neg, x / z))
        ty = z * min(lim_y_pos, max(-lim_y_neg, y / z))
        j00, j02 = fx / z, -fx * tx / (z * z)
        j11, j12 = fy / z, -fy * ty / (z * z)
        cov_a = 0.0
        cov_b = 0.0
        cov_c = 0.0
        for k in range(3):
            mx_k, my_k, mz_k = (
                (m00, m10, m20) if k == 0 else ((m01, m11, m21) if k == 1 else (m02, m12, m22))
            )
            # column k of W M
            w0 = r[0, 0] * mx_k + r[0, 1] * my_k + r[0, 2] * mz_k
            w1 = r[1, 0] * mx_k + r[1, 1] * my_k + r[1, 2] * mz_k
            w2 = r[2, 0] * mx_k + r[2, 1] * my_k + r[2, 2] * mz_k
            t0 = j00 * w0 + j02 * w2
            t1 = j11 * w1 + j12 * w2
            cov_a += t0 * t0
            cov_b += t0 * t1
            cov_c += t1 * t1
        cov_a += eps2d
        cov_c += eps2d
        det = cov_a * cov_c - cov_b * cov_b
        opacity = opacities[b, n]
        if not (det > 0.0 and opacity >= ALPHA_THRESHOLD and math.isfinite(cov_a + cov_c)):
            continue
        u = fx * x / z + cx
        v = fy * y / z + cy
        if not (math.isfinite(u) and math.isfinite(v)):
            continue
        means2d[p, n, 0] = u
        means2d[p, n, 1] = v
        extend = min(3.33, math.sqrt(2.0 * math.log(opacity / ALPHA_THRESHOLD)))
        rx = math.ceil(extend * math.sqrt(cov_a))
        ry = math.ceil(extend * math.sqrt(cov_c))
        if u + rx <= 0 or u - rx >= width or v + ry <= 0 or v - ry >= height:
            continue
        radii[p, n, 0] = int(rx)
        radii[p, n, 1] = int(ry)
        # view-dependent colour from degree <= 1 SH
        rec = packed[p, n]
        for ch in range(3):
            rec[F_R + ch] = sh_c0 * sh_coeffs[b, n, 0, ch]
        if sh_coeffs.shape[2] == 4:
            ox = -(r[0, 0] * r[0, 3] + r[1, 0] * r[1, 3] + r[2, 0] * r[2, 3])
            oy = -(r[0, 1] * r[0, 3] + r[1, 1] * r[1, 3] + r[2, 1] * r[2, 3])
            oz = -(r[0, 2] * r[0, 3] + r[1, 2] * r[1, 3] + r[2, 2] * r[2, 3])
            dx, dy, dz = mx - ox, my - oy, mz - oz
            inv = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            dx, dy, dz = dx * inv, dy * inv, dz * inv
            for ch in range(3):
                rec[F_R + ch] += sh_c1 * (
                    -dy * sh_coeffs[b, n, 1, ch]
                    + dz * sh_coeffs[b, n, 2, ch]
                    - dx * sh_coeffs[b, n, 3, ch]
                )
        for ch in range(3):
            rec[F_R + ch] = max(rec[F_R + ch] + 0.5, 0.0)
        rec[F_MX] = u
        rec[F_MY] = v
        rec[F_CA] = cov_c / det
        rec[F_CB] = -cov_b / det
        rec[F_CC] = cov_a / det
        rec[F_OPACITY] = opacity
        rec[F_SIGMA_MAX] = math.log(opacity / ALPHA_THRESHOLD) + 1e-3
    return packed, depths, radii, means2d
