"""Stage 3 of ``npga create``: the chosen frames written as a one-camera capture in the own
layout (docs/data.md), so that the rest of ``npga`` reads it like any capture.

``CAPTURE/frames/<t>/cam.png`` is the virtual camera's crop of video frame t composited onto
white through its head mask (``masks/<t>/cam.png``); ``splits.json`` holds the training and
held-out frames. The crop is sampled from the video with a bilinear warp; pixels outside the
video frame are background.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from npga.create.camera import CropCamera
from npga.create.masks import PersonSegmenter, composite_on_white, neck_cut
from npga.data.layout import CaptureSplits, frame_path, write_cameras, write_image, write_splits
from npga.tracking.expression import canonicalize
from npga.tracking.sources import VideoFileSource
from npga.tracking.template import FaceTemplate

CAMERA_NAME = "cam"
COMPLETE_FILE = "complete.json"  # written last: the capture is whole


def crop_frame(rgb: np.ndarray, camera: CropCamera) -> tuple[np.ndarray, np.ndarray]:
    """The crop [R, R, 3] uint8 of a video frame [H, W, 3] and where it lies inside the frame
    [R, R] float32 (1 inside, 0 outside)."""
    s = camera.scale
    warp = np.array([[s, 0.0, -camera.x0 * s], [0.0, s, -camera.y0 * s]])
    size = (camera.resolution, camera.resolution)
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(rgb, warp, size, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(
        np.ones(rgb.shape[:2], np.float32), warp, size, flags=cv2.INTER_LINEAR, borderValue=(0.0,)
    )
    return np.asarray(crop), np.asarray(inside, np.float32)


def write_capture(
    root: Path,
    source: VideoFileSource,
    camera: CropCamera,
    landmarks: dict[int, np.ndarray],  # video frame -> [L, 3] Face Mesh landmarks, crop pixels
    train: list[int],
    test: list[int],
    template: FaceTemplate,
    on_frame: Callable[[int], None] | None = None,
) -> None:
    """Write the capture of the frames ``train`` + ``test`` (see the module doc); frames
    already written by an interrupted run are kept."""
    if (root / COMPLETE_FILE).is_file():
        return
    wanted = set(train) | set(test)
    last = max(wanted)
    done = 0
    with PersonSegmenter() as segment:
        for index, frame in enumerate(source.frames()):
            if index > last:
                break
            if index not in wanted:
                continue
            image_path = frame_path(root, index, CAMERA_NAME)
            mask_path = frame_path(root, index, CAMERA_NAME, masks=True)
            if not (image_path.is_file() and mask_path.is_file()):
                crop, inside = crop_frame(frame.rgb, camera)
                points = landmarks[index]
                pose, _ = canonicalize(points, template)
                mask = (
                    segment(crop)
                    * inside
                    * neck_cut((camera.resolution, camera.resolution), points, pose)
                )
                write_image(mask_path, (mask * 255 + 0.5).astype(np.uint8))
                write_image(image_path, composite_on_white(crop, mask))
            done += 1
            if on_frame is not None:
                on_frame(done)
    write_cameras(root, [CAMERA_NAME], camera.cameras(), CAMERA_NAME)
    write_splits(root, CaptureSplits(sorted(train), sorted(test), []))
    (root / COMPLETE_FILE).write_text(json.dumps({"frames": len(wanted)}))
