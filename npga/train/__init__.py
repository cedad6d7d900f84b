"""Training avatars from multi-view captures (``npga train``)."""

from npga.train.config import LearningRates, LossWeights, TrainConfig
from npga.train.densify import DensifyStrategy
from npga.train.trainer import StepStats, Trainer

__all__ = [
    "DensifyStrategy",
    "LearningRates",
    "LossWeights",
    "StepStats",
    "TrainConfig",
    "Trainer",
]
