"""Per-timestep head-pose refinement: small learnable corrections of the tracked poses.

Face Mesh landmarks carry expression-dependent biases (a brow raise reads partly as a head pitch:
~3 degrees on the synthetic capture), so tracked poses are not exact. Each training timestep gets
a rotation (axis-angle, radians) and translation (metres) correction, initialised at zero and
optimised with the avatar; the refined poses are written back to the run's tracking, so the
training timesteps are evaluated with them. Held-out timesteps keep their tracked poses.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from npga.geometry import axis_angle_to_quat, quat_multiply, quat_normalize
from npga.model import HeadPose


class PoseCorrections(nn.Module):
    """Corrections of T tracked poses (canonical -> world), applied as world-space deltas."""

    def __init__(self, num_timesteps: int) -> None:
        super().__init__()
        self.rotation = nn.Parameter(torch.zeros(num_timesteps, 3))  # [T, 3] axis-angle
        self.translation = nn.Parameter(torch.zeros(num_timesteps, 3))  # [T, 3] metres

    def forward(self, pose: HeadPose, rows: Tensor) -> HeadPose:
        """The B tracked poses of rows [B] (indices into the T timesteps), corrected."""
        delta = axis_angle_to_quat(self.rotation[rows])  # [B, 4]
        rotation = quat_multiply(delta, quat_normalize(pose.rotation_wxyz))
        return HeadPose(rotation, pose.translation + self.translation[rows])
