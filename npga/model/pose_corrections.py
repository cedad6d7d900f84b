"""Per-timestep head-pose refinement: small learnable corrections of the tracked poses.

Face Mesh landmarks carry expression-dependent biases (a brow raise reads partly as a head pitch:
~3 degrees on the synthetic capture), so tracked poses are not exact. Each training timestep gets
a rotation (axis-angle, radians) and translation (metres) correction, initialised at zero and
optimised with the avatar; the refined poses are written back to the run's tracking, so the
training timesteps are evaluated with them.

A step sees one timestep, so the corrections are embedding rows with sparse gradients, stepped
by a lazy Adam (``SparseAdam``) that moves only the rows a step saw. A dense Adam keeps moving
every row along its stale momentum for tens of steps after each visit: with a constant step
size the poses then wander by ~1.5 mm around where the images put them (measured with the rig's
true poses as the start, docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from npga.geometry import axis_angle_to_quat, quat_multiply, quat_normalize
from npga.model.avatar import HeadPose


class PoseCorrections(nn.Module):
    """Corrections of T tracked poses (canonical -> world), applied as world-space deltas."""

    def __init__(self, num_timesteps: int) -> None:
        super().__init__()
        self.rotation = nn.Embedding(num_timesteps, 3, sparse=True)  # [T, 3] axis-angle
        self.translation = nn.Embedding(num_timesteps, 3, sparse=True)  # [T, 3] metres
        nn.init.zeros_(self.rotation.weight)
        nn.init.zeros_(self.translation.weight)

    def forward(self, pose: HeadPose, rows: Tensor) -> HeadPose:
        """The B tracked poses of rows [B] (indices into the T timesteps), corrected."""
        delta = axis_angle_to_quat(self.rotation(rows))  # [B, 4]
        rotation = quat_multiply(delta, quat_normalize(pose.rotation_wxyz))
        return HeadPose(rotation, pose.translation + self.translation(rows))

    def optimizer(self, rotation_lr: float, translation_lr: float) -> torch.optim.SparseAdam:
        """Lazy Adam over the rows, one named group per kind (``pose_rotation``,
        ``pose_translation``; checkpoints and schedules find the groups by name)."""
        return torch.optim.SparseAdam(
            [
                {"params": [self.rotation.weight], "lr": rotation_lr, "name": "pose_rotation"},
                {
                    "params": [self.translation.weight],
                    "lr": translation_lr,
                    "name": "pose_translation",
                },
            ]
        )

    @torch.no_grad()
    def filled(self, seen: Tensor) -> PoseCorrections:
        """A copy whose rows outside ``seen`` [R] (row indices) hold the mean correction of the
        ``seen`` rows: where an avatar's canonical frame moved with the corrections' common
        part, timesteps training never saw move with it."""
        copy = PoseCorrections(self.rotation.num_embeddings).to(self.rotation.weight.device)
        unseen = torch.ones(self.rotation.num_embeddings, dtype=torch.bool)
        unseen[seen.cpu()] = False
        pairs = ((self.rotation, copy.rotation), (self.translation, copy.translation))
        for source, target in pairs:
            target.weight.copy_(source.weight)
            target.weight[unseen.to(target.weight.device)] = source.weight[seen].mean(dim=0)
        return copy
