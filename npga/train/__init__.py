"""Training avatars from multi-view captures (``npga train``)."""

from npga.train.capture_tracking import CaptureTracking, fit_expression_space, track_capture
from npga.train.config import LearningRates, LossWeights, TrainConfig
from npga.train.densify import DensifyStrategy
from npga.train.trainer import StepStats, Trainer

__all__ = [
    "CaptureTracking",
    "DensifyStrategy",
    "LearningRates",
    "LossWeights",
    "StepStats",
    "TrainConfig",
    "Trainer",
    "fit_expression_space",
    "track_capture",
]
