"""Fine dynamics: the MLP G(x_i, f_i, z) that predicts per-Gaussian residuals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Output layout of G: position, rotation (quaternion residual), log-scale, opacity logit, colour.
OUT_POSITION = slice(0, 3)
OUT_ROTATION = slice(3, 7)
OUT_LOG_SCALE = slice(7, 10)
OUT_OPACITY = slice(10, 11)
OUT_COLOR = slice(11, 14)
OUT_DIM = 14


@dataclass(frozen=True)
class FineResiduals:
    """What G predicts for B expressions of N Gaussians."""

    position: Tensor  # [B, N, 3] canonical-space offset
    rotation: Tensor  # [B, N, 4] added to the identity quaternion (wxyz), then normalised
    log_scale: Tensor  # [B, N, 3]
    opacity_logit: Tensor  # [B, N]
    color: Tensor  # [B, N, 3] added to the DC SH coefficient


class FineDynamics(nn.Module):
    """G(x, f, z) = MLP([x, f, z]).

    The input layer is split into an expression-independent part (x, f) and an expression part
    (z), which is the same linear map on the concatenation; at inference the first part is
    computed once per avatar (:meth:`static_hidden`) and reused for every frame.
    """

    def __init__(self, feature_dim: int, expression_dim: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        self.static_in = nn.Linear(3 + feature_dim, hidden_dim)
        self.expression_in = nn.Linear(expression_dim, hidden_dim, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(hidden_layers))
        self.out = nn.Linear(hidden_dim, OUT_DIM)
        # Start as the identity deformation: training grows the residuals from zero.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def static_hidden(self, means: Tensor, features: Tensor) -> Tensor:
        """Expression-independent pre-activation [N, H] from means [N, 3] and features [N, Df]."""
        return self.static_in(torch.cat((means, features), dim=-1))

    def raw(
        self,
        means: Tensor,  # [N, 3] canonical
        features: Tensor,  # [N, Df]
        codes: Tensor,  # [B, E]
        static_hidden: Tensor | None = None,  # [N, H], from static_hidden(), at inference
    ) -> Tensor:
        """All residuals packed as [B, N, 14] (layout: the OUT_* slices)."""
        if static_hidden is None:
            static_hidden = self.static_hidden(means, features)
        h = torch.relu_(static_hidden[None] + self.expression_in(codes)[:, None])  # [B, N, H]
        for layer in self.hidden:
            h = torch.relu_(layer(h))
        return self.out(h)

    def forward(
        self,
        means: Tensor,  # [N, 3] canonical
        features: Tensor,  # [N, Df]
        codes: Tensor,  # [B, E]
        static_hidden: Tensor | None = None,  # [N, H], from static_hidden(), at inference
    ) -> FineResiduals:
        out = self.raw(means, features, codes, static_hidden)  # [B, N, 14]
        return FineResiduals(
            position=out[..., OUT_POSITION],
            rotation=out[..., OUT_ROTATION],
            log_scale=out[..., OUT_LOG_SCALE],
            opacity_logit=out[..., OUT_OPACITY].squeeze(-1),
            color=out[..., OUT_COLOR],
        )
