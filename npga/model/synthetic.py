"""A procedurally generated avatar for tests, benchmarks and demos before a trained one exists.

It is a head-shaped ellipsoid of Gaussians (skin, hair, eyes, lips) with a random but smooth
expression basis, so every code path (prior, fine MLP, pose, rendering, bundles) does real work.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from npga.cameras import Cameras, orbit_cameras
from npga.model.avatar import GaussianAvatar
from npga.model.config import AvatarConfig
from npga.recording import FACE_UNIT_METRES
from npga.render.projection import SH_C0
from npga.tracking.template import load_default_template
from npga.tracking.topology import NOSE_TIP, NUM_LANDMARKS

HEAD_RADII = (0.075, 0.1, 0.09)  # metres: half width (x), half height (y), half depth (z)
CAMERA_DISTANCE = 0.6
FOCAL_PER_PIXEL = 2.2  # focal length in pixels per pixel of image width


def default_camera(resolution: int) -> Cameras:
    """One front camera that frames a head at the origin in a square image."""
    return orbit_cameras(
        [0.0], distance=CAMERA_DISTANCE, focal_px=FOCAL_PER_PIXEL * resolution,
        width=resolution, height=resolution,
    )  # fmt: skip


def _ellipsoid_points(count: int, generator: torch.Generator) -> Tensor:
    """Points [count, 3] spread over the head ellipsoid's surface."""
    directions = torch.randn(count, 3, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    return directions * torch.tensor(HEAD_RADII)


def _face_landmarks(count: int) -> Tensor:
    """Template landmarks [count, 3] on the front (z < 0) of the head.

    With Face Mesh's 478 landmarks: the tracker's neutral template (face units -> metres), its
    nose tip just in front of the ellipsoid, so tracked expressions map onto this face. Other
    counts (small test configurations): a Fibonacci cap of 70 degrees.
    """
    if count == NUM_LANDMARKS:
        points = torch.from_numpy(load_default_template().points).float() * FACE_UNIT_METRES
        points[:, 2] += -(HEAD_RADII[2] + 0.01) - points[NOSE_TIP, 2]
        return points
    i = torch.arange(count, dtype=torch.float32) + 0.5
    polar = torch.acos(1 - i / count * (1 - math.cos(math.radians(70))))
    azimuth = math.pi * (1 + 5**0.5) * i
    unit = torch.stack(
        (
            torch.sin(polar) * torch.cos(azimuth),
            torch.sin(polar) * torch.sin(azimuth),
            -torch.cos(polar),
        ),
        dim=1,
    )
    return unit * torch.tensor(HEAD_RADII)


def _smooth_basis(template: Tensor, dim: int, generator: torch.Generator) -> Tensor:
    """A variance-ordered basis [E, L, 3] of smooth bumps over the face, rows orthogonal (as a
    PCA basis is), so that an encoder can be derived from it (ExpressionBasis.from_avatar)."""
    num_landmarks = template.shape[0]
    centers = template[torch.randint(0, num_landmarks, (dim,), generator=generator)]  # [E, 3]
    directions = torch.randn(dim, 3, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    distance2 = ((template[None] - centers[:, None]) ** 2).sum(-1)  # [E, L]
    bumps = torch.exp(-distance2 / (2 * 0.025**2))[..., None] * directions[:, None]  # [E, L, 3]
    orthonormal, _ = torch.linalg.qr(bumps.reshape(dim, -1).T.double())  # [L*3, E]
    amplitude = 0.03 / torch.sqrt(torch.arange(1, dim + 1, dtype=torch.float64))  # metres
    return (amplitude[:, None] * orthonormal.T).reshape(dim, num_landmarks, 3).float()


def _albedo(points: Tensor) -> Tensor:
    """RGB [N, 3] painted on head points [N, 3]: skin, hair, eyes, lips."""
    rx, ry, rz = HEAD_RADII
    x, y, z = points[:, 0] / rx, points[:, 1] / ry, points[:, 2] / rz
    rgb = torch.tensor([0.87, 0.68, 0.58]).expand(points.shape[0], 3).clone()
    hair = (y < -0.35) | (z > 0.25)
    rgb[hair] = torch.tensor([0.24, 0.15, 0.10])
    for eye_x in (-0.38, 0.38):
        eye = ((x - eye_x) ** 2 + (y + 0.12) ** 2 < 0.022) & (z < 0)
        rgb[eye] = torch.tensor([0.12, 0.10, 0.10])
    lips = ((x / 0.32) ** 2 + ((y - 0.45) / 0.08) ** 2 < 1) & (z < 0)
    rgb[lips] = torch.tensor([0.72, 0.30, 0.30])
    return rgb


@torch.no_grad()
def synthetic_avatar(
    num_gaussians: int, config: AvatarConfig | None = None, seed: int = 0
) -> GaussianAvatar:
    """A head-shaped random avatar of ``num_gaussians`` Gaussians (deterministic for a seed)."""
    config = config or AvatarConfig()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the MLP's default initialisation
    avatar = GaussianAvatar(config, num_gaussians)
    g = avatar.gaussians
    means = _ellipsoid_points(num_gaussians, generator)
    inner = torch.rand(num_gaussians, generator=generator) < 0.1
    means[inner] *= 0.9
    g.means.copy_(means)
    g.quats_wxyz.copy_(torch.randn(num_gaussians, 4, generator=generator))
    spacing = math.sqrt(4 * math.pi * 0.09**2 / num_gaussians)
    g.log_scales.copy_(
        math.log(0.8 * spacing) + 0.3 * torch.randn(num_gaussians, 3, generator=generator)
    )
    g.opacity_logits.copy_(2.0 + 0.5 * torch.randn(num_gaussians, generator=generator))
    g.sh_coeffs.zero_()
    g.sh_coeffs[:, 0] = (_albedo(means) - 0.5) / SH_C0
    if config.sh_degree == 1:
        g.sh_coeffs[:, 1:] = 0.05 * torch.randn(num_gaussians, 3, 3, generator=generator)
    g.features.copy_(0.1 * torch.randn(num_gaussians, config.feature_dim, generator=generator))

    template = _face_landmarks(config.num_landmarks)
    avatar.prior.template.copy_(template)
    avatar.prior.basis.copy_(_smooth_basis(template, config.expression_dim, generator))
    avatar.prior.rebind(g.means)
    avatar.fine.out.weight.copy_(
        1e-3 * torch.randn(avatar.fine.out.weight.shape, generator=generator)
    )
    return avatar
