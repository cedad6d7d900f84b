"""Index sets of the Face Mesh topology (478 landmarks with refined irises).

These are positions in MediaPipe's landmark list, i.e. facts about its output format; no model
data is copied here.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478

# Landmarks that move little with expression: forehead, nose bridge and tip, temples, cheekbones
# next to the ears. Head pose is fitted on these (weight 1); everything else gets a small weight.
RIGID = (
    10, 151, 9, 8, 107, 336, 109, 338, 67, 297, 108, 337, 69, 299, 104, 333,  # forehead
    168, 6, 197, 195, 5, 4, 1,  # nose bridge and tip
    127, 356, 162, 389, 234, 454, 21, 251, 93, 323,  # temples, beside the ears
)  # fmt: skip
NON_RIGID_WEIGHT = 0.02
NOSE_TIP = 1
CHIN = 152

# Eyes (subject's right eye is on the image's left).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM = 33, 133, 159, 145
LEFT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_TOP, LEFT_EYE_BOTTOM = 362, 263, 386, 374
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473


def eye_corner_distance(landmarks: np.ndarray) -> float:
    """The face unit of landmarks [L, 3]: the distance between the outer eye corners."""
    return float(np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]))
