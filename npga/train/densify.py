"""Adaptive density control (3DGS), in the shape of gsplat's strategy objects.

A :class:`DensifyStrategy` holds the hyper-parameters, a :class:`DensifyState` the running
statistics; the trainer calls :func:`accumulate` after ``loss.backward()`` and :func:`refine`
every step (it decides itself whether this step refines). The parameter surgery is a handful of
``@torch.no_grad()`` functions that keep the Adam state of every per-Gaussian tensor aligned, and
they run on any device, so the CPU backend densifies exactly like the CUDA one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from npga.geometry import quat_to_rotmat
from npga.model import GaussianAvatar

GAUSSIAN_PARAMETERS = (
    "means",
    "quats_wxyz",
    "log_scales",
    "opacity_logits",
    "sh_coeffs",
    "features",
)
SPLIT_SCALE_DIVISOR = 1.6  # a split Gaussian's children are this much smaller (3DGS)


@dataclass(frozen=True)
class DensifyStrategy:
    grad_threshold: float = 0.0002  # mean |d loss / d means2d| in NDC units (gsplat's default)
    grow_scale: float = 0.01  # x scene extent: smaller Gaussians are cloned, larger ones split
    prune_opacity: float = 0.005
    prune_scale: float = 0.1  # x scene extent: larger Gaussians are pruned
    refine_start: int = 300  # first step that may refine
    refine_stop: int = 3000  # no refinement from this step on
    refine_every: int = 100
    max_gaussians: int = 60_000  # growth stops here (CPU budget)

    def refines_at(self, step: int) -> bool:
        return (
            self.refine_start <= step < self.refine_stop
            and step % self.refine_every == 0
            and step > 0
        )


@dataclass
class DensifyState:
    grad_sum: Tensor  # [N] accumulated screen-space gradient norms
    count: Tensor  # [N] how often each Gaussian was visible

    @classmethod
    def empty(cls, num_gaussians: int, device: torch.device) -> DensifyState:
        return cls(
            torch.zeros(num_gaussians, device=device), torch.zeros(num_gaussians, device=device)
        )


@dataclass(frozen=True)
class RefineReport:
    cloned: int
    split: int
    pruned: int


@torch.no_grad()
def accumulate(
    state: DensifyState,
    means2d_grad: Tensor,  # [B, C, N, 2] gradient of the loss w.r.t. pixel positions
    radii: Tensor,  # [B, C, N]
    width: int,
    height: int,
) -> None:
    """Add this step's screen-space gradient norms (in NDC units, as gsplat) of visible ones."""
    scale = means2d_grad.new_tensor([width / 2.0, height / 2.0])
    norms = (means2d_grad * scale).norm(dim=-1)  # [B, C, N]
    visible = radii > 0
    state.grad_sum += (norms * visible).sum(dim=(0, 1))
    state.count += visible.sum(dim=(0, 1)).to(state.count.dtype)


@torch.no_grad()
def refine(
    strategy: DensifyStrategy,
    state: DensifyState,
    avatar: GaussianAvatar,
    optimizer: torch.optim.Optimizer,
    scene_extent: float,  # metres
    generator: torch.Generator,
) -> RefineReport:
    """Clone small high-gradient Gaussians, split large ones, prune transparent or huge ones."""
    g = avatar.gaussians
    mean_grad = state.grad_sum / state.count.clamp_min(1)
    room = max(strategy.max_gaussians - g.num_gaussians, 0)
    grow = mean_grad > strategy.grad_threshold
    if int(grow.sum()) > room:  # keep the strongest gradients within the budget
        order = torch.argsort(mean_grad, descending=True)[:room]
        grow = torch.zeros_like(grow)
        grow[order] = True
    largest = g.log_scales.exp().amax(dim=1)
    small = largest <= strategy.grow_scale * scene_extent
    clone, split = grow & small, grow & ~small
    _append(avatar, optimizer, {name: getattr(g, name)[clone] for name in GAUSSIAN_PARAMETERS})
    split_indices = torch.nonzero(split).squeeze(1)
    _append(avatar, optimizer, _split_children(avatar, split_indices, generator))
    n = g.num_gaussians
    remove = torch.zeros(n, dtype=torch.bool, device=mean_grad.device)
    remove[split_indices] = True  # the children replace their parents
    opacity = torch.sigmoid(g.opacity_logits)
    remove |= opacity < strategy.prune_opacity
    remove |= g.log_scales.exp().amax(dim=1) > strategy.prune_scale * scene_extent
    pruned = int(remove.sum()) - split_indices.numel()
    _select(avatar, optimizer, ~remove)
    avatar.prior.rebind(g.means)
    state.grad_sum = torch.zeros(g.num_gaussians, device=mean_grad.device)
    state.count = torch.zeros(g.num_gaussians, device=mean_grad.device)
    return RefineReport(int(clone.sum()), split_indices.numel(), pruned)


def _split_children(
    avatar: GaussianAvatar, indices: Tensor, generator: torch.Generator
) -> dict[str, Tensor]:
    """Two children per Gaussian of ``indices`` [S], sampled from it and shrunk: [2S, ...]."""
    g = avatar.gaussians
    scales = g.log_scales[indices].exp()  # [S, 3]
    rotation = quat_to_rotmat(g.quats_wxyz[indices])  # [S, 3, 3]
    noise = torch.randn((2, *scales.shape), generator=generator).to(scales)  # [2, S, 3]
    offsets = torch.einsum("sij,ksj->ksi", rotation, noise * scales)  # [2, S, 3]
    children = {name: getattr(g, name)[indices].repeat(2, *[1] * (getattr(g, name).ndim - 1))
                for name in GAUSSIAN_PARAMETERS}  # fmt: skip
    children["means"] = (g.means[indices][None] + offsets).reshape(-1, 3)
    children["log_scales"] = children["log_scales"] - math.log(SPLIT_SCALE_DIVISOR)
    return children


def _parameter_groups(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {group["name"]: group for group in optimizer.param_groups if "name" in group}


def _replace(
    avatar: GaussianAvatar,
    optimizer: torch.optim.Optimizer,
    name: str,
    value: Tensor,
    state_update,  # (old state tensor [N, ...]) -> new state tensor
) -> None:
    old = getattr(avatar.gaussians, name)
    new = nn.Parameter(value.contiguous())
    group = _parameter_groups(optimizer)[name]
    state = optimizer.state.pop(old, {})
    new_state = {
        key: (state_update(tensor) if key in ("exp_avg", "exp_avg_sq") else tensor)
        for key, tensor in state.items()
    }
    group["params"][0] = new
    if new_state:
        optimizer.state[new] = new_state
    setattr(avatar.gaussians, name, new)


def _append(avatar: GaussianAvatar, optimizer: torch.optim.Optimizer, values: dict[str, Tensor]):
    """Add Gaussians (values [M, ...] per parameter); their Adam moments start at zero."""
    added = values["means"].shape[0]
    if added == 0:
        return
    for name in GAUSSIAN_PARAMETERS:
        old = getattr(avatar.gaussians, name).detach()
        _replace(
            avatar,
            optimizer,
            name,
            torch.cat((old, values[name].detach())),
            lambda moment: torch.cat((moment, moment.new_zeros((added, *moment.shape[1:])))),
        )


def _select(avatar: GaussianAvatar, optimizer: torch.optim.Optimizer, keep: Tensor) -> None:
    """Keep the Gaussians where ``keep`` [N] is True."""
    if bool(keep.all()):
        return
    for name in GAUSSIAN_PARAMETERS:
        old = getattr(avatar.gaussians, name).detach()
        _replace(avatar, optimizer, name, old[keep], lambda moment: moment[keep])
