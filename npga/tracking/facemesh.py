"""MediaPipe Face Mesh (the legacy solution in mediapipe 0.10.21; models ship in the wheel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from npga.closing import Closing
from npga.tracking.topology import NUM_LANDMARKS


@dataclass(frozen=True)
class FaceLandmarks:
    """478 landmarks of one face: x, y in pixels (x right, y down); z depth in pixel units
    (MediaPipe's relative depth times the image width; larger is farther from the camera)."""

    points: np.ndarray  # [478, 3] float64
    width: int
    height: int


class FaceMeshTracker(Closing):
    """Face Mesh on RGB frames; ``process`` returns None when no face is found (never raises
    for a well-formed frame). Tracking mode reuses the previous face box between frames."""

    def __init__(
        self,
        *,
        static_images: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        max_faces: int = 1,
    ) -> None:
        # Imported here: mediapipe takes ~1 s to import and only the tracker needs it.
        from mediapipe.python.solutions import face_mesh

        self._mesh: Any = face_mesh.FaceMesh(
            static_image_mode=static_images,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def process(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """rgb [H, W, 3] uint8 -> landmarks of the most prominent face, or None."""
        faces = self.process_all(rgb)
        return faces[0] if faces else None

    def process_all(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        """rgb [H, W, 3] uint8 -> landmarks of every face found (at most ``max_faces``)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB frame [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = []
        scale = np.array([width, height, width], dtype=np.float64)
        for face in result.multi_face_landmarks or []:
            if len(face.landmark) != NUM_LANDMARKS:
                continue
            normalised = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            faces.append(FaceLandmarks(normalised * scale, width, height))
        return faces

    def close(self) -> None:
        self._mesh.close()
