"""The avatar model (docs/architecture.md §4)."""

from npga.model.avatar import GaussianAvatar, HeadPose, InferenceCache, pose_rigidly
from npga.model.config import AvatarConfig
from npga.model.fine import FineDynamics, FineResiduals
from npga.model.laplacian import knn_graph, laplacian_loss
from npga.model.pose_corrections import PoseCorrections
from npga.model.prior import LandmarkPrior, bind_to_landmarks
from npga.model.synthetic import default_camera, synthetic_avatar

__all__ = [
    "AvatarConfig",
    "FineDynamics",
    "FineResiduals",
    "GaussianAvatar",
    "HeadPose",
    "InferenceCache",
    "LandmarkPrior",
    "PoseCorrections",
    "bind_to_landmarks",
    "default_camera",
    "knn_graph",
    "laplacian_loss",
    "pose_rigidly",
    "synthetic_avatar",
]
