"""Level of detail: the same avatar with fewer Gaussians, leaving out those that show least.

Many Gaussians of a trained avatar add almost nothing to any image: inside the head, behind the
face, or too faint to pass the compositing threshold (on the bundled demo avatar, 18 % add
nothing at all from any of the views below). On a CPU, render time grows with the Gaussian
count, so serving fewer of them is the cheapest speed-up there is. Each Gaussian is scored by
its summed compositing weight (alpha x transmittance over all pixels) in the image where it
matters most, among frontal views turned +-35 degrees at the neutral face and wide expressions;
the best-scoring ``fraction`` is kept.
The reduced avatar is a normal :class:`GaussianAvatar` (same networks and expression space),
compared against the full one's images in docs/benchmarks.md.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from npga.framing import HeadFrame, frontal_camera
from npga.model import GaussianAvatar, HeadPose
from npga.render.cpu import blend_weights
from npga.render.types import RenderSettings

SCORE_YAWS_DEG = (-35.0, -15.0, 0.0, 15.0, 35.0)
SCORE_RESOLUTION = 128
SCORE_EXPRESSIONS = 8  # besides the neutral face
SCORE_CODE_SCALE = 1.5  # of the expression codes' unit spread (wide: open mouths, teeth)
# Per-Gaussian tensors whose first dimension is the Gaussian count (besides gaussians.*).
PER_GAUSSIAN_BUFFERS = ("prior.neighbor_index", "prior.neighbor_weight")


@torch.no_grad()
def contributions(avatar: GaussianAvatar, head: HeadFrame) -> Tensor:
    """Each Gaussian's largest summed compositing weight in any one scoring image (view x
    expression), [N]: a Gaussian that matters in one image (teeth, when the mouth opens) counts."""
    dim = avatar.config.expression_dim
    generator = torch.Generator().manual_seed(0)
    codes = torch.cat(
        (
            torch.zeros(1, dim),
            SCORE_CODE_SCALE * torch.randn(SCORE_EXPRESSIONS, dim, generator=generator),
        )
    )
    cpu = avatar if avatar.device.type == "cpu" else copy.deepcopy(avatar).cpu()
    gaussians = cpu.deform(codes, HeadPose.identity(len(codes)))
    best = torch.zeros(avatar.num_gaussians, dtype=torch.float64)
    for yaw in SCORE_YAWS_DEG:
        camera = frontal_camera(head, SCORE_RESOLUTION, yaw_degrees=yaw)
        weights = blend_weights(gaussians, camera, RenderSettings())  # [B, 1, N]
        best = torch.maximum(best, weights.amax(dim=(0, 1)))
    return best


def reduced_detail(avatar: GaussianAvatar, head: HeadFrame, fraction: float) -> GaussianAvatar:
    """``avatar`` with the ``fraction`` (0 < fraction <= 1) of its Gaussians that show most; the
    avatar itself when that is all of them."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"detail must be within (0, 1], got {fraction:g}")
    keep_count = max(1, round(avatar.num_gaussians * fraction))
    if keep_count >= avatar.num_gaussians:
        return avatar
    scores = contributions(avatar, head)
    keep = torch.argsort(scores, descending=True)[:keep_count].sort().values
    reduced = GaussianAvatar(avatar.config, keep_count)
    state = avatar.state_dict()
    for name in state:
        if name.startswith("gaussians.") or name in PER_GAUSSIAN_BUFFERS:
            state[name] = state[name][keep.to(state[name].device)]
    reduced.load_state_dict(state)
    return reduced.to(avatar.device).eval()
