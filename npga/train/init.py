"""Initial canonical Gaussians: the visual hull of the neutral frame, coloured from the views.

Why the visual hull: the capture's masks pin down the silhouette of the whole head (hair, ears,
neck included) from every camera, which a landmark cloud (face only) or random points in a box
cannot; Gaussians start on the surface the images show, so early iterations fit appearance
instead of moving mass around. A thin shell of interior points is kept near the mouth so that the
mouth interior has Gaussians to show when the jaw opens. Without masks, the hull falls back to an
ellipsoid around the neutral landmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from npga.cameras import Cameras

HULL_GRID = 72  # voxels per side of the carving grid
HULL_HALF_EXTENT = 2.6  # half side of the grid, in face units around the landmark centroid
MOUTH_INTERIOR_FRACTION = 0.08  # of the Gaussians, inside the hull behind the lips
# Face Mesh landmarks around the mouth opening: inner upper/lower lip, left/right corners.
MOUTH_LANDMARKS = (13, 14, 78, 308)


@dataclass(frozen=True)
class InitialGaussians:
    means: Tensor  # [N, 3] canonical metres
    colors: Tensor  # [N, 3] RGB in [0, 1]
    spacing: float  # mean nearest-neighbour distance, metres (initial scale)


def transform_points(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """rotation [3, 3] @ points [N, 3] + translation [3]."""
    return points @ rotation.T + translation


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """World points [N, 3] -> pixel coordinates [C, N, 2] and depths [C, N]."""
    w2c = cameras.world_to_cam.to(points.dtype)
    k = cameras.intrinsics.to(points.dtype)
    cam = points[None] @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]  # [C, N, 3]
    depth = cam[..., 2]
    pixels = cam @ k.transpose(1, 2)
    return pixels[..., :2] / pixels[..., 2:3].clamp_min(1e-6), depth


def sample_images(images: Tensor, pixels: Tensor) -> Tensor:
    """Bilinear samples of images [C, H, W, D] at pixels [C, N, 2] -> [C, N, D] (0 outside)."""
    h, w = images.shape[1:3]
    grid = torch.stack(
        (pixels[..., 0] / w * 2 - 1, pixels[..., 1] / h * 2 - 1), dim=-1
    )  # [C, N, 2] in [-1, 1] (align_corners=False)
    sampled = F.grid_sample(
        images.permute(0, 3, 1, 2), grid[:, :, None], align_corners=False, padding_mode="zeros"
    )  # [C, D, N, 1]
    return sampled[..., 0].permute(0, 2, 1)


def carve_hull(
    masks: Tensor,  # [C, H, W, 1] of the neutral frame
    cameras: Cameras,  # the C cameras (world)
    rotation: Tensor,  # [3, 3] canonical -> world at the neutral frame
    translation: Tensor,  # [3]
    centre: Tensor,  # [3] canonical metres
    half_extent: float,  # metres
) -> tuple[Tensor, Tensor]:
    """Voxel centres [V, 3] (canonical) and an inside flag [V] from silhouette carving."""
    axis = torch.linspace(-half_extent, half_extent, HULL_GRID)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    voxels = grid + centre
    pixels, depth = project_points(transform_points(voxels, rotation, translation), cameras)
    h, w = masks.shape[1:3]
    in_image = (
        (pixels[..., 0] >= 0) & (pixels[..., 0] < w) & (pixels[..., 1] >= 0) & (pixels[..., 1] < h)
    ) & (depth > 0)
    silhouette = sample_images(masks, pixels)[..., 0] > 0.5  # [C, V]
    inside = (silhouette | ~in_image).all(dim=0) & in_image.any(dim=0)
    return voxels, inside


def _surface(inside: Tensor) -> Tensor:
    """Inside voxels with an outside 6-neighbour: [V] bool of a flattened HULL_GRID^3 grid."""
    cube = inside.reshape(HULL_GRID, HULL_GRID, HULL_GRID).float()[None, None]
    kernel = torch.zeros(1, 1, 3, 3, 3)
    for offset in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[(0, 0, *offset)] = 1.0
    neighbours = F.conv3d(cube, kernel, padding=1)[0, 0].reshape(-1)
    return inside & (neighbours < 6)


def _ellipsoid(centre: Tensor, radii: Tensor, count: int, generator: torch.Generator) -> Tensor:
    directions = torch.randn(count, 3, generator=generator)
    return centre + directions / directions.norm(dim=1, keepdim=True) * radii


def initial_gaussians(
    count: int,
    neutral_landmarks: Tensor,  # [L, 3] canonical metres
    face_unit: float,  # metres
    images: Tensor,  # [C, H, W, 3] neutral frame, float in [0, 1]
    masks: Tensor | None,  # [C, H, W, 1]
    cameras: Cameras,  # [C]
    rotation: Tensor,  # [3, 3] canonical -> world at the neutral frame
    translation: Tensor,  # [3]
    generator: torch.Generator,
) -> InitialGaussians:
    """``count`` Gaussians on the head's visual hull (see the module doc)."""
    centre = neutral_landmarks.mean(dim=0)
    voxel = 2 * HULL_HALF_EXTENT * face_unit / (HULL_GRID - 1)
    if masks is not None:
        voxels, inside = carve_hull(
            masks, cameras, rotation, translation, centre, HULL_HALF_EXTENT * face_unit
        )
        surface = voxels[_surface(inside)]
        mouth = neutral_landmarks[list(MOUTH_LANDMARKS)].mean(dim=0)
        interior = voxels[inside & ((voxels - mouth).norm(dim=1) < 0.5 * face_unit)]
    else:
        surface = interior = torch.empty(0, 3)
    n_interior = min(int(count * MOUTH_INTERIOR_FRACTION), interior.shape[0])
    if surface.shape[0] < 64:  # no usable masks: an ellipsoid around the face
        radii = torch.tensor([1.3, 1.9, 1.6]) * face_unit
        means = _ellipsoid(
            centre + torch.tensor([0.0, -0.2, 0.9]) * face_unit, radii, count, generator
        )
    else:
        pick = torch.randint(0, surface.shape[0], (count - n_interior,), generator=generator)
        inner = torch.randperm(interior.shape[0], generator=generator)[:n_interior]
        means = torch.cat((surface[pick], interior[inner]))
        means = means + (torch.rand(means.shape, generator=generator) - 0.5) * voxel
    colors = _colour_from_views(means, centre, images, cameras, rotation, translation)
    spacing = math.sqrt(surface_area(means) / count) if count > 1 else voxel
    return InitialGaussians(means.float(), colors, spacing)


def surface_area(points: Tensor) -> float:
    """Rough area (m^2) of the shell through points [N, 3]: that of their bounding ellipsoid."""
    a, b, c = ((points.amax(dim=0) - points.amin(dim=0)) / 2).tolist()
    p = 1.6075  # Knud Thomsen's approximation
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def _colour_from_views(
    means: Tensor,  # [N, 3] canonical
    centre: Tensor,  # [3]
    images: Tensor,  # [C, H, W, 3]
    cameras: Cameras,
    rotation: Tensor,  # [3, 3]
    translation: Tensor,  # [3]
) -> Tensor:
    """Each point's colour in the camera that faces its outward direction most: [N, 3]."""
    world = transform_points(means, rotation, translation)
    outward = F.normalize((means - centre) @ rotation.T, dim=1)  # [N, 3] world directions
    to_camera = F.normalize(cameras.centers()[:, None].to(world.dtype) - world[None], dim=2)
    facing = (to_camera * outward[None]).sum(dim=2)  # [C, N]
    best = facing.argmax(dim=0)  # [N]
    pixels, _ = project_points(world, cameras)
    colours = sample_images(images, pixels)  # [C, N, 3]
    return colours[best, torch.arange(means.shape[0])].clamp(0.02, 0.98)
