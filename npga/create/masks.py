"""Stage 3b of ``npga create``: head masks and the images training sees.

MediaPipe's selfie segmentation (its model ships inside the mediapipe wheel) separates the
person from the background. The torso does not follow the head, so the mask is cut off a little
below the chin: pixels further along the face's downward axis than the chin plus
``NECK_FACE_UNITS`` are background. The image training sees is the crop composited onto the
white background the avatar is rendered on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npga.closing import Closing
from npga.tracking.procrustes import Similarity

CHIN = 152  # Face Mesh landmark at the bottom of the chin
NECK_FACE_UNITS = 0.25  # how much neck the mask keeps below the chin, face units
CUT_SOFTNESS_FACE_UNITS = 0.05  # width of the fade at the cut


class PersonSegmenter(Closing):
    """Selfie segmentation: person probability [H, W] float32 of an RGB image [H, W, 3] uint8."""

    def __init__(self) -> None:
        from mediapipe.python.solutions import selfie_segmentation

        # model 0: the general (square 256x256) model, which suits square head crops
        self._model: Any = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        result = self._model.process(np.ascontiguousarray(rgb))
        mask = result.segmentation_mask
        if mask is None:
            return np.zeros(rgb.shape[:2], np.float32)
        return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)

    def close(self) -> None:
        self._model.close()


def neck_cut(
    shape: tuple[int, int],  # (H, W)
    points: np.ndarray,  # [L, 3] landmarks in the image, pixels
    pose: Similarity,  # template -> image
) -> np.ndarray:
    """[H, W] float32 weights: 1 above the cut below the chin, fading to 0 past it."""
    down = pose.rotation[:2, 1]  # the face's +y (downward) axis, in the image plane
    norm = float(np.linalg.norm(down))
    if norm < 1e-6:  # the face looks straight up or down: no in-image downward axis
        return np.ones(shape, np.float32)
    down = down / norm
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    along = (xs - points[CHIN, 0]) * down[0] + (ys - points[CHIN, 1]) * down[1]
    neck = NECK_FACE_UNITS * pose.scale * norm
    soft = max(CUT_SOFTNESS_FACE_UNITS * pose.scale, 1.0)
    return np.clip((neck + soft - along) / soft, 0.0, 1.0).astype(np.float32)


def composite_on_white(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rgb [H, W, 3] uint8 over white through mask [H, W] in [0, 1] -> [H, W, 3] uint8."""
    alpha = mask[..., None]
    out = rgb.astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return (out + 0.5).astype(np.uint8)
