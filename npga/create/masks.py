"""Stage 3b of ``npga create``: head masks and the images training sees.

MediaPipe's selfie segmentation (its model ships inside the mediapipe wheel) separates the
person from the background. The torso does not follow the head, so the mask is cut in the
face's own frame: below the jaw only a neck-wide band is kept (no shoulders), and nothing
further along the face's downward axis than the chin plus ``NECK_FACE_UNITS``. The image
training sees is the crop composited onto the white background the avatar is rendered on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npga.closing import Closing
from npga.tracking.procrustes import Similarity

CHIN = 152  # Face Mesh landmark at the bottom of the chin
NECK_FACE_UNITS = 0.25  # how much neck the mask keeps below the chin, face units
JAW_FACE_UNITS = 0.35  # above this height over the chin, the whole width is kept
NECK_HALF_WIDTH_FACE_UNITS = 0.55  # below it, a neck this wide either side of the chin
CUT_SOFTNESS_FACE_UNITS = 0.05  # width of the fade at the cuts


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
    """[H, W] float32 weights that keep the head and a stub of neck: everything above the jaw
    (``JAW_FACE_UNITS`` above the chin, along the face's own downward axis), below it only a
    band of neck ``NECK_HALF_WIDTH_FACE_UNITS`` either side of the chin (not the shoulders),
    and nothing further than ``NECK_FACE_UNITS`` below the chin; soft edges."""
    down = pose.rotation[:2, 1]  # the face's +y (downward) axis, in the image plane
    norm = float(np.linalg.norm(down))
    if norm < 1e-6:  # the face looks straight up or down: no in-image downward axis
        return np.ones(shape, np.float32)
    down = down / norm
    across = np.array([-down[1], down[0]])
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dx, dy = xs - points[CHIN, 0], ys - points[CHIN, 1]
    along = dx * down[0] + dy * down[1]  # pixels below the chin
    side = np.abs(dx * across[0] + dy * across[1])  # pixels beside the chin
    unit = pose.scale * norm  # pixels per face unit along the face's height, in the image
    soft = max(CUT_SOFTNESS_FACE_UNITS * pose.scale, 1.0)

    def below(value: np.ndarray, limit: float) -> np.ndarray:  # 1 under limit, 0 past it
        return np.clip((limit + soft - value) / soft, 0.0, 1.0)

    above_jaw = below(along, -JAW_FACE_UNITS * unit)
    neck_band = below(side, NECK_HALF_WIDTH_FACE_UNITS * pose.scale)
    return (np.maximum(above_jaw, neck_band) * below(along, NECK_FACE_UNITS * unit)).astype(
        np.float32
    )


def composite_on_white(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rgb [H, W, 3] uint8 over white through mask [H, W] in [0, 1] -> [H, W, 3] uint8."""
    alpha = mask[..., None]
    out = rgb.astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return (out + 0.5).astype(np.uint8)
