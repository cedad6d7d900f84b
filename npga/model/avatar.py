"""GaussianAvatar: canonical Gaussians + coarse landmark prior + fine MLP + rigid head pose."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from npga.cameras import Cameras
from npga.geometry import quat_multiply, quat_normalize, quat_to_rotmat
from npga.model.config import AvatarConfig
from npga.model.fine import OUT_DIM, FineDynamics, FineResiduals
from npga.model.gaussians import CanonicalGaussians
from npga.model.pose_kernel import pose_gaussians
from npga.model.prior import LandmarkPrior
from npga.model.refiner import ScreenRefiner
from npga.render import Backend, PosedGaussians, RenderResult, render

IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class HeadPose:
    """Rigid head poses of B frames, applied after the expression deformation."""

    rotation_wxyz: Tensor  # [B, 4]
    translation: Tensor  # [B, 3]

    def __post_init__(self) -> None:
        b = self.rotation_wxyz.shape[0]
        if self.rotation_wxyz.shape != (b, 4) or self.translation.shape != (b, 3):
            raise ValueError(
                f"pose must be rotation [B, 4] and translation [B, 3], got "
                f"{list(self.rotation_wxyz.shape)} and {list(self.translation.shape)}"
            )
        if not (
            torch.isfinite(self.rotation_wxyz).all() and torch.isfinite(self.translation).all()
        ):
            raise ValueError("pose contains NaN or Inf")
        if not (self.rotation_wxyz.norm(dim=-1) > 1e-6).all():
            raise ValueError("pose rotation quaternion has zero length")

    def to(self, device: torch.device | str) -> HeadPose:
        return HeadPose(self.rotation_wxyz.to(device), self.translation.to(device))

    @staticmethod
    def identity(batch: int, device: torch.device | str = "cpu") -> HeadPose:
        rotation = torch.tensor(IDENTITY_QUAT, device=device).expand(batch, 4).clone()
        return HeadPose(rotation, torch.zeros(batch, 3, device=device))


@dataclass(frozen=True)
class InferenceCache:
    """Per-avatar tensors that do not depend on the expression; valid until parameters change."""

    fine_static_hidden: Tensor  # [N, H]
    prior_basis: Tensor  # [E, N, 3]


def rotate_sh_degree1(sh_coeffs: Tensor, rotation: Tensor) -> Tensor:
    """Rotate degree-1 SH colour coefficients [B, N, 4, 3] by rotations [B, 3, 3].

    Degree-1 real SH are linear in the direction: C1 * (-y k1 + z k2 - x k3) = C1 * d . v with
    v = (-k3, -k1, k2); rotating the object maps v to R v.
    """
    b, n = sh_coeffs.shape[:2]
    # v = (-k3, -k1, k2) = P k with a signed permutation P; rotated k = P^T R P k.
    perm = sh_coeffs.new_tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mix = perm.T @ rotation @ perm  # [B, 3, 3]
    k = sh_coeffs[:, :, 1:].transpose(1, 2).reshape(b, 3, n * 3)  # [B, 3, N*3rgb]
    rotated = (mix @ k).reshape(b, 3, n, 3).transpose(1, 2)  # [B, N, 3, 3rgb]
    return torch.cat((sh_coeffs[:, :, :1], rotated), dim=2)


def pose_rigidly(gaussians: PosedGaussians, pose: HeadPose) -> PosedGaussians:
    """B sets of Gaussians [B, N, ...] moved by B head poses: rotated about the canonical origin,
    then translated; degree-1 SH colours turn with the head. Differentiable in the pose, so a
    pose can be fitted to images of Gaussians deformed once (npga.eval.pose_fit)."""
    head_quat = quat_normalize(pose.rotation_wxyz)  # [B, 4]
    head_rotation = quat_to_rotmat(head_quat)  # [B, 3, 3]
    sh = gaussians.sh_coeffs
    if sh.shape[2] == 4:
        sh = rotate_sh_degree1(sh, head_rotation)
    return PosedGaussians(
        means=gaussians.means @ head_rotation.transpose(1, 2) + pose.translation[:, None],
        quats_wxyz=quat_multiply(head_quat[:, None], gaussians.quats_wxyz),
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        sh_coeffs=sh,
    )


class GaussianAvatar(nn.Module):
    """A Neural Parametric Gaussian Avatar (docs/architecture.md §4), batched over B expressions."""

    def __init__(self, config: AvatarConfig, num_gaussians: int) -> None:
        super().__init__()
        self.config = config
        self.gaussians = CanonicalGaussians(num_gaussians, config.sh_coeffs, config.feature_dim)
        self.prior = LandmarkPrior(
            num_gaussians, config.expression_dim, config.num_landmarks, config.prior_neighbors
        )
        self.fine = FineDynamics(
            config.feature_dim, config.expression_dim, config.hidden_dim, config.hidden_layers
        )
        self.refiner = ScreenRefiner(config.refiner_channels) if config.refiner_channels else None

    @property
    def num_gaussians(self) -> int:
        return self.gaussians.num_gaussians

    @property
    def device(self) -> torch.device:
        return self.gaussians.means.device

    @torch.no_grad()
    def inference_cache(self) -> InferenceCache:
        g = self.gaussians
        return InferenceCache(
            fine_static_hidden=self.fine.static_hidden(g.means, g.features),
            prior_basis=self.prior.gaussian_basis(),
        )

    def residuals(self, codes: Tensor, cache: InferenceCache | None = None) -> FineResiduals:
        """Fine-dynamics residuals for codes [B, E] (what the Laplacian regulariser smooths)."""
        static = cache.fine_static_hidden if cache is not None else None
        return self.fine(self.gaussians.means, self.gaussians.features, codes, static)

    def _check_inputs(self, codes: Tensor, pose: HeadPose | None) -> HeadPose:
        """Validate codes [B, E] and B poses (identity when None); returns the poses."""
        b = codes.shape[0]
        if codes.shape != (b, self.config.expression_dim):
            raise ValueError(
                f"codes must be [B, {self.config.expression_dim}], got {list(codes.shape)}"
            )
        if not torch.isfinite(codes).all():
            raise ValueError("codes contain NaN or Inf")
        pose = pose or HeadPose.identity(b, codes.device)
        if pose.rotation_wxyz.shape[0] != b:
            raise ValueError(f"{b} codes but {pose.rotation_wxyz.shape[0]} poses")
        return pose

    def deform(
        self,
        codes: Tensor,  # [B, E]
        pose: HeadPose | None = None,
        cache: InferenceCache | None = None,
    ) -> PosedGaussians:
        """World-space Gaussians for B expression codes and head poses."""
        pose = self._check_inputs(codes, pose)
        if cache is not None and codes.device.type == "cpu" and not torch.is_grad_enabled():
            return self._deform_fused(codes, pose, cache)
        return self.deform_with_residuals(codes, pose, cache)[0]

    def deform_with_residuals(
        self,
        codes: Tensor,  # [B, E]
        pose: HeadPose | None = None,
        cache: InferenceCache | None = None,
    ) -> tuple[PosedGaussians, FineResiduals | None]:
        """The differentiable path of :meth:`deform`, plus the fine residuals it applied (None
        without fine dynamics), which a trainer regularises."""
        pose = self._check_inputs(codes, pose)
        b = codes.shape[0]
        g, config = self.gaussians, self.config
        fine = None
        means = g.means[None].expand(b, -1, -1)  # [B, N, 3]
        quats = g.quats_wxyz[None].expand(b, -1, -1)
        log_scales = g.log_scales[None].expand(b, -1, -1)
        opacity_logits = g.opacity_logits[None].expand(b, -1)
        sh = g.sh_coeffs[None].expand(b, -1, -1, -1)
        if config.uses_prior:
            prior_basis = cache.prior_basis if cache is not None else None
            means = means + self.prior(codes, prior_basis)
        if config.uses_fine:
            fine = self.residuals(codes, cache)
            means = means + fine.position
            identity = means.new_tensor(IDENTITY_QUAT)
            quats = quat_multiply(quats, quat_normalize(identity + fine.rotation))
            log_scales = log_scales + fine.log_scale
            opacity_logits = opacity_logits + fine.opacity_logit
            sh = torch.cat((sh[:, :, :1] + fine.color[:, :, None], sh[:, :, 1:]), dim=2)

        canonical = PosedGaussians(
            means=means,
            quats_wxyz=quats,
            scales=torch.exp(log_scales),
            opacities=torch.sigmoid(opacity_logits),
            sh_coeffs=sh,
        )
        return pose_rigidly(canonical, pose), fine

    def _deform_fused(self, codes: Tensor, pose: HeadPose, cache: InferenceCache) -> PosedGaussians:
        """CPU inference: the torch path's maths in one numba kernel (see pose_kernel)."""
        g, config, b, n = self.gaussians, self.config, codes.shape[0], self.num_gaussians
        if config.uses_fine:
            fine = self.fine.raw(g.means, g.features, codes, cache.fine_static_hidden)
        else:
            fine = codes.new_zeros(b, n, OUT_DIM)
        if config.uses_prior:
            prior = self.prior(codes, cache.prior_basis)
        else:
            prior = codes.new_zeros(b, n, 3)
        arrays = (g.means, g.quats_wxyz, g.log_scales, g.opacity_logits, g.sh_coeffs, prior, fine)
        posed = pose_gaussians(
            *(a.detach().contiguous().numpy() for a in arrays),
            quat_normalize(pose.rotation_wxyz).double().numpy(),
            pose.translation.double().numpy(),
        )
        return PosedGaussians(*(torch.from_numpy(a) for a in posed))

    def render(
        self,
        codes: Tensor,  # [B, E]
        cameras: Cameras,
        pose: HeadPose | None = None,
        *,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        backend: Backend = "auto",
        cache: InferenceCache | None = None,
    ) -> RenderResult:
        """Deform, rasterise into C cameras and refine: rgb [B, C, H, W, 3]."""
        result = render(
            self.deform(codes, pose, cache), cameras, background=background, backend=backend
        )
        if self.refiner is None:
            return result
        return RenderResult(
            rgb=self.refiner(result.rgb, result.alpha),
            alpha=result.alpha,
            means2d=result.means2d,
            radii=result.radii,
        )
