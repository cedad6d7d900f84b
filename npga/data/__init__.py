"""Capture datasets: the own layout, NeRSemble and GaussianAvatars readers, a synthetic rig."""

from npga.data.capture import (
    CaptureCodes,
    CaptureDataset,
    CaptureError,
    CaptureFrame,
    CaptureSplits,
)

__all__ = ["CaptureCodes", "CaptureDataset", "CaptureError", "CaptureFrame", "CaptureSplits"]
