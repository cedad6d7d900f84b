"""Configuration of a Gaussian avatar."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DYNAMICS = ("npga", "coarse", "static")
# Upper bounds far above any real avatar's (the demo: E 32, Df 32, 64 wide, 1 layer).
LIMITS = {
    "expression_dim": 512,
    "num_landmarks": 4096,
    "feature_dim": 512,
    "hidden_dim": 1024,
    "hidden_layers": 16,
    "prior_neighbors": 64,
    "refiner_channels": 256,
}


@dataclass(frozen=True)
class AvatarConfig:
    expression_dim: int = 48  # E, dims of the expression code z
    num_landmarks: int = 478  # L, template landmarks of the expression space (Face Mesh: 478)
    feature_dim: int = 32  # Df, per-Gaussian latent feature f_i
    hidden_dim: int = 64  # width of the fine dynamics MLP G(x, f, z)
    hidden_layers: int = 1  # hidden->hidden layers of G after the input layer
    sh_degree: int = 1  # colour: 0 (RGB) or 1 (view-dependent)
    prior_neighbors: int = 4  # template landmarks each Gaussian follows in the coarse prior
    refiner_channels: int = 0  # screen-space refiner CNN width; 0 = no refiner
    expression_space: str = "facemesh-pca"  # name of the code space the avatar is driven in
    # Which dynamics deform the canonical Gaussians (the ablations of the NPGA components):
    # "npga" = landmark prior + fine MLP, "coarse" = landmark prior only, "static" = none.
    dynamics: str = "npga"

    def __post_init__(self) -> None:
        positive = (
            "expression_dim",
            "num_landmarks",
            "feature_dim",
            "hidden_dim",
            "prior_neighbors",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("hidden_layers", "refiner_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name, most in LIMITS.items():  # a bundle cannot make us allocate gigabytes
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be at most {most}, got {getattr(self, name)}")
        if self.sh_degree not in (0, 1):
            raise ValueError(f"sh_degree must be 0 or 1, got {self.sh_degree!r}")
        if self.prior_neighbors > self.num_landmarks:
            raise ValueError("prior_neighbors cannot exceed num_landmarks")
        if not isinstance(self.expression_space, str) or not self.expression_space:
            raise ValueError("expression_space must be a non-empty string")
        if self.dynamics not in DYNAMICS:
            raise ValueError(
                f"dynamics must be one of {', '.join(DYNAMICS)}, got {self.dynamics!r}"
            )

    @property
    def uses_prior(self) -> bool:
        return self.dynamics in ("npga", "coarse")

    @property
    def uses_fine(self) -> bool:
        return self.dynamics == "npga"

    @property
    def sh_coeffs(self) -> int:
        return (self.sh_degree + 1) ** 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AvatarConfig:
        """Strict: unknown or missing keys are errors (a bundle must say what it is)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        if missing:
            raise ValueError(f"missing config field(s): {', '.join(missing)}")
        return cls(**data)
