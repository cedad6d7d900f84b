"""The sender's half: Face Mesh landmarks -> head pose, gaze and expression codes."""

from npga.tracking.expression import ExpressionBasis, NeutralCalibrator, canonicalize
from npga.tracking.facemesh import FaceLandmarks, FaceMeshTracker
from npga.tracking.filters import OneEuroConfig, OneEuroFilter, QuaternionFilter
from npga.tracking.gaze import gaze_angles
from npga.tracking.pipeline import ExpressionTracker, TrackedFrame, TrackerConfig
from npga.tracking.procrustes import Similarity, roll_degrees, weighted_procrustes
from npga.tracking.template import FaceTemplate, build_template, load_default_template

__all__ = [
    "ExpressionBasis",
    "ExpressionTracker",
    "FaceLandmarks",
    "FaceMeshTracker",
    "FaceTemplate",
    "NeutralCalibrator",
    "OneEuroConfig",
    "OneEuroFilter",
    "QuaternionFilter",
    "Similarity",
    "TrackedFrame",
    "TrackerConfig",
    "build_template",
    "canonicalize",
    "gaze_angles",
    "load_default_template",
    "roll_degrees",
    "weighted_procrustes",
]
