"""Cross-reenactment (``npga eval AVATAR --drive VIDEO_OR_CAPTURE``): the avatar driven by
another person's frames, which have no ground-truth image of the avatar.

The driver (a video file, or a capture's front camera) goes through the live sender's pipeline
with the avatar's own encoder (:func:`npga.tracking.run.recording_from_observations`: what
``npga track VIDEO --avatar AVATAR`` writes). Up to ``frames`` of its frames with a face, evenly
spread, are rendered by the frontal camera on the avatar's head (npga/framing.py) with the
driver's code and head rotation (the head held at its rest position, ``fixed`` framing, so a
driver who walks about stays framed), and by the
neutral code at the same rotation. The expression and pose error (:mod:`npga.eval.expression`)
compare each render with the driver, each side's displacement and rotation taken from its own
neutral frame: the driver's frame nearest its calibrated neutral (the smallest code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from npga.bundle import AvatarBundle
from npga.data import CaptureDataset, CaptureError
from npga.eval.evaluate import evenly_spread
from npga.eval.expression import ExpressionScore, read_face
from npga.framing import Framer, HeadFrame, frontal_camera
from npga.model import HeadPose
from npga.recording import CodeRecording
from npga.tracking.expression import NeutralCalibrator
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.run import observe_source, recording_from_observations
from npga.tracking.sources import Frame, FrameSource, open_source
from npga.tracking.template import FaceTemplate
from npga.video import VideoWriter, to_uint8

CAPTURE_FPS = 30.0
MEDIA_FPS = 10.0

# (stage, done, total) -> None
Progress = Callable[[str, int, int], None]


class CaptureFrontSource(FrameSource):
    """The front camera of a capture, as the frames of a video."""

    def __init__(self, root: Path) -> None:
        self.dataset = CaptureDataset(root, cache=False)
        super().__init__(f"{root} (camera {self.dataset.front_camera})", len(self.dataset))

    def frames(self) -> Iterator[Frame]:
        for i, timestep in enumerate(self.dataset.timesteps):
            image = self.dataset.image(timestep, self.dataset.front_camera)
            yield Frame(to_uint8(image.numpy()), i / CAPTURE_FPS)


def open_driver(spec: Path) -> FrameSource:
    """A driver: a capture folder (its front camera) or anything ``npga track`` reads."""
    if (spec / "cameras.json").is_file():
        try:
            return CaptureFrontSource(spec)
        except CaptureError as error:
            raise ValueError(str(error)) from None
    return open_source(str(spec))


@dataclass(frozen=True)
class DrivenFrames:
    recording: CodeRecording  # the whole driver, in the avatar's space
    evaluated: list[int]  # frame indices rendered and scored
    neutral: int  # the frame each side's displacements are taken from


def track_driver(
    source: FrameSource,
    bundle: AvatarBundle,
    template: FaceTemplate,
    frames: int,
    progress: Progress | None = None,
) -> DrivenFrames:
    """The driver tracked with the avatar's encoder, and the frames to evaluate."""

    def on_frame(done: int) -> None:
        if progress is not None:
            progress("tracking the driver", done, source.length or done)

    log = observe_source(source, template, on_frame=on_frame)
    result = recording_from_observations(log, template, bundle.expression_encoder())
    recording = result.recording
    present = np.flatnonzero(recording.face_present)
    if present.size == 0:
        raise ValueError(
            f"{source.description}: no frame with a calibrated face (the live tracker "
            f"calibrates its neutral on the first {NeutralCalibrator().frames} frames with a face; "
            f"this driver has {result.detected} in {result.frames} frames)"
        )
    norms = np.linalg.norm(recording.codes[present], axis=1)
    neutral = int(present[int(np.argmin(norms))])
    evaluated = evenly_spread(present.tolist(), frames)
    return DrivenFrames(recording, evaluated, neutral)


def _selected_frames(source: FrameSource, wanted: set[int]) -> dict[int, np.ndarray]:
    """The driver's images [H, W, 3] uint8 at the wanted frame indices (a second decode)."""
    kept: dict[int, np.ndarray] = {}
    for index, frame in enumerate(source.frames()):
        if index in wanted:
            kept[index] = frame.rgb
        if len(kept) == len(wanted):
            break
    return kept


def cross_reenactment(
    bundle: AvatarBundle,
    driver: Path,
    template: FaceTemplate,
    frames: int = 48,
    media: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report of the module doc, JSON-ready; with ``media``, a side-by-side video there."""
    driven = track_driver(open_driver(driver), bundle, template, frames, progress)
    recording = driven.recording
    images = _selected_frames(open_driver(driver), {*driven.evaluated, driven.neutral})
    avatar = bundle.avatar.eval()
    device = avatar.device
    head = HeadFrame.of_avatar(avatar)
    camera = frontal_camera(head, bundle.default_camera.width).to(device)
    hold = Framer(head, "fixed")  # the head turns about its own centre and stays framed
    cache = avatar.inference_cache()

    @torch.inference_mode()
    def render(index: int, neutral_code: bool) -> torch.Tensor:
        codes = torch.from_numpy(recording.codes[index : index + 1]).to(device)
        if neutral_code:
            codes = torch.zeros_like(codes)
        rotation = recording.rotation_wxyz[index]
        pose = HeadPose(
            torch.from_numpy(rotation[None]).to(device),
            torch.from_numpy(hold.translation(rotation, np.zeros(3), 0.0)[None]).to(device),
        )
        result = avatar.render(codes, camera, pose, background=(1.0, 1.0, 1.0), cache=cache)
        return result.rgb[0, 0].clamp(0, 1).float().cpu()

    def driver_image(index: int) -> torch.Tensor:
        return torch.from_numpy(images[index].astype(np.float32) / 255.0)

    writer: VideoWriter | None = None
    with FaceMeshTracker(static_images=True) as facemesh:
        truth_n = read_face(facemesh, driver_image(driven.neutral), template)
        render_n = read_face(facemesh, render(driven.neutral, False), template)
        if truth_n is None or render_n is None:
            raise ValueError(
                f"{driver}: Face Mesh finds no face in the driver's or the avatar's neutral frame"
            )
        score = ExpressionScore(truth_n, render_n, relative_pose=True)
        try:
            for done, index in enumerate(driven.evaluated, start=1):
                rendered = render(index, False)
                score.add(
                    read_face(facemesh, driver_image(index), template),
                    read_face(facemesh, rendered, template),
                    read_face(facemesh, render(index, True), template),
                )
                if media is not None:
                    pair = side_by_side(images[index], to_uint8(rendered.numpy()))
                    if writer is None:
                        media.mkdir(parents=True, exist_ok=True)
                        height, width = pair.shape[:2]
                        writer = VideoWriter(
                            media / "cross_reenactment.mp4", width, height, MEDIA_FPS
                        )
                    writer.write(pair)
                if progress is not None:
                    progress("rendering and scoring", done, len(driven.evaluated))
        finally:
            if writer is not None:
                writer.close()
    return {
        "driver": str(driver),
        "driver_frames": int(recording.num_frames),
        "driver_frames_with_face": int(recording.face_present.sum()),
        "neutral_frame": driven.neutral,
        "cross_reenactment": {"frames": len(driven.evaluated), **score.summary()},
    }


def side_by_side(driver: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """The driver [H, W, 3] scaled to the render's height beside the render [h, w, 3], padded to
    even sides (what the video encoder needs): [h', W' + w', 3] uint8."""
    height = rendered.shape[0]
    width = max(2, round(driver.shape[1] * height / driver.shape[0]))
    scaled = np.asarray(Image.fromarray(driver).resize((width, height), Image.Resampling.BILINEAR))
    pair = np.concatenate((scaled, rendered), axis=1)
    pad = ((0, pair.shape[0] % 2), (0, pair.shape[1] % 2), (0, 0))
    return np.pad(pair, pad, constant_values=255)
