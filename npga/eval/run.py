"""``npga eval AVATAR CAPTURE``: an avatar evaluated on any capture of its subject.

- **Its own training capture** (the run's ``tracking_refined.npz`` beside the bundle, made from
  this capture): the codes and poses training ended with; the protocol of
  :mod:`npga.eval.evaluate` (held-out timesteps from every camera, training timesteps from the
  held-out cameras).
- **Any other capture** (another performance; the bundled demo avatar, which ships without its
  run): tracked into the avatar's own expression space (:func:`npga.tracking.capture.
  track_into_space`: poses triangulated by the rig, codes on the avatar's basis from the
  capture's own neutral; never a new basis), the rig rescaled to the avatar's face size. Every
  timestep is unseen, so up to ``timesteps`` of them, evenly spread, are evaluated from the
  training cameras (self-reenactment) and from the held-out ones (novel view).

``fit_steps`` then fits the evaluated timesteps' head poses photometrically on the training
cameras only (:mod:`npga.eval.pose_fit`). Every split reports PSNR/SSIM (whole image, head mask,
mouth and eyes), FLIP, the expression and pose error, and the neutral-driven baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from npga.bundle import AvatarBundle
from npga.data import CaptureDataset
from npga.eval.evaluate import (
    LPIPS_NOTE,
    ExpressionSetup,
    FrameSink,
    evaluate,
    evaluate_split,
    evenly_spread,
)
from npga.eval.pose_fit import fit_poses
from npga.model import GaussianAvatar
from npga.tracking import topology
from npga.tracking.capture import (
    REFINED_TRACKING_FILE,
    AvatarSpace,
    CaptureTracking,
    detect_landmarks,
    track_into_space,
)
from npga.tracking.expression import ExpressionBasis
from npga.tracking.template import FaceTemplate
from npga.video import to_uint8

MAX_TRACKED_TIMESTEPS = 240  # a foreign capture's neutral is calibrated on up to this many
FLIP_NOTE = "mean FLIP (flip-evaluator, LDR, 67 pixels per degree): 0 is identical"

# (stage, done, total) -> None
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalResult:
    report: dict[str, Any]  # JSON-ready
    tracking: CaptureTracking  # the codes and (fitted) poses that were evaluated
    own_capture: bool  # the avatar's training capture, tracked by its training run


@dataclass(frozen=True)
class EvalOptions:
    split: str = "test"  # own capture: the timesteps of self-reenactment (test or train)
    codes: str = "tracked"  # tracked (multi-view) or monocular (the front camera, calibrated)
    fit_steps: int = 0  # photometric pose-fit steps per evaluated timestep (0: tracked poses)
    timesteps: int = 24  # another capture: how many of its timesteps are evaluated
    resolution: int | None = None  # default: the avatar's
    flip: bool = True


def avatar_space(bundle: AvatarBundle, template: FaceTemplate) -> AvatarSpace:
    """The expression space a capture of the bundle's subject is tracked into."""
    prior = bundle.avatar.prior
    landmarks = prior.template.detach().cpu().double().numpy()
    basis = ExpressionBasis.from_avatar(prior.basis.detach().cpu().numpy(), landmarks, template)
    dim = bundle.config.expression_dim
    calibration = bundle.calibration if bundle.calibration is not None else np.eye(dim)
    return AvatarSpace(basis, calibration, landmarks, topology.eye_corner_distance(landmarks))


def own_tracking(
    avatar_dir: Path, bundle: AvatarBundle, dataset: CaptureDataset
) -> CaptureTracking | None:
    """The avatar's training-run tracking if it was made from this capture, else None."""
    trained_on = bundle.summary.get("capture_fingerprint")
    if not (avatar_dir / REFINED_TRACKING_FILE).is_file() or not isinstance(trained_on, str):
        return None
    if dataset.fingerprint() != trained_on:
        return None
    tracking = CaptureTracking.load(avatar_dir, REFINED_TRACKING_FILE)
    prior = bundle.avatar.prior
    tracking.check_drives(prior.basis.cpu().numpy(), prior.template.cpu().numpy())
    return tracking


def _check_space(bundle: AvatarBundle, dataset: CaptureDataset) -> None:
    space = bundle.config.expression_space
    given = dataset.codes.expression_space if dataset.codes is not None else None
    if given is not None and given != space:
        raise ValueError(
            f"{dataset.root / 'codes.npz'}: its codes are in the {given!r} expression space, the "
            f"avatar is driven in {space!r}"
        )


def track_foreign(
    bundle: AvatarBundle,
    capture: Path,
    template: FaceTemplate,
    resolution: int,
    progress: Progress | None = None,
) -> tuple[CaptureTracking, CaptureDataset, float]:
    """A capture the avatar never saw, tracked into its space: the tracking, the capture at the
    avatar's scale, and the scale factor (see the module doc)."""
    dataset = CaptureDataset(capture, resolution=resolution)
    _check_space(bundle, dataset)
    tracked = evenly_spread(dataset.timesteps, MAX_TRACKED_TIMESTEPS)
    total = len(tracked)

    def advance(count: int) -> None:
        if progress is not None:
            progress("tracking (Face Mesh, every camera)", count, total)

    done = [0]

    def step(n: int) -> None:
        done[0] += n
        advance(done[0])

    landmarks, found = detect_landmarks(
        lambda t, c: to_uint8(dataset.image(t, c).numpy()), tracked, dataset.camera_names, step
    )
    front = dataset.camera_names.index(dataset.front_camera)
    if not found[:, front].any():
        raise ValueError(
            f"{capture}: Face Mesh finds no face in the front camera {dataset.front_camera!r} "
            f"in any of {total} frames"
        )
    try:
        tracking, factor = track_into_space(
            landmarks,
            found,
            tracked,
            dataset.cameras,
            front,
            template,
            avatar_space(bundle, template),
        )
    except ValueError as error:
        raise ValueError(f"{capture}: {error}") from None
    scaled = CaptureDataset(capture, resolution=resolution, world_scale=factor)
    return tracking, scaled, factor


def evaluate_capture(
    avatar_dir: Path,
    bundle: AvatarBundle,
    capture: Path,
    template: FaceTemplate,
    options: EvalOptions,
    sinks: Mapping[str, FrameSink] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """The evaluation of the module doc."""
    resolution = options.resolution or bundle.default_camera.width
    avatar = bundle.avatar.eval()
    dataset = CaptureDataset(capture, resolution=resolution)
    _check_space(bundle, dataset)
    tracking = own_tracking(avatar_dir, bundle, dataset)
    header: dict[str, Any] = {"avatar": str(avatar_dir), "capture": str(capture)}
    own = tracking is not None
    if tracking is not None:
        header["tracking"] = f"the avatar's training run ({REFINED_TRACKING_FILE})"
        evaluated = [t for t in dataset.splits.test_timesteps if t in set(tracking.timesteps)]
        if options.split == "train":
            evaluated = []
    else:
        tracking, dataset, factor = track_foreign(bundle, capture, template, resolution, progress)
        header["tracking"] = "tracked into the avatar's expression space (never seen in training)"
        header["rig_to_avatar_scale"] = round(factor, 4)
        evaluated = evenly_spread([int(t) for t in tracking.timesteps], options.timesteps)
    if options.codes == "monocular":
        tracking = replace(tracking, codes=tracking.live_codes())
        header["codes"] = "monocular (front camera, calibrated: what a live sender sends)"
    elif own:
        header["codes"] = "multi-view (the training run's)"
    else:
        header["codes"] = "multi-view (triangulated landmarks on the avatar's basis)"
    header["poses"] = "tracked"
    if options.fit_steps and evaluated:
        for done, timestep in enumerate(evaluated, start=1):
            tracking = fit_poses(avatar, dataset, tracking, [timestep], options.fit_steps)
            if progress is not None:
                progress("fitting head poses", done, len(evaluated))
        header["poses"] = f"fitted to the training cameras ({options.fit_steps} steps per timestep)"
    if progress is not None:
        progress("evaluating", 0, 1)
    if own:
        report = evaluate(
            avatar, dataset, tracking, options.split, sinks, template=template, flip=options.flip
        )
    else:
        report = _evaluate_foreign(avatar, dataset, tracking, evaluated, template, options, sinks)
    if progress is not None:
        progress("evaluating", 1, 1)
    report["flip"] = FLIP_NOTE if options.flip else "not computed (--no-flip)"
    return EvalResult(header | report, tracking, own)


def _evaluate_foreign(
    avatar: GaussianAvatar,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    evaluated: list[int],
    template: FaceTemplate,
    options: EvalOptions,
    sinks: Mapping[str, FrameSink] | None,
) -> dict[str, Any]:
    sinks = sinks or {}
    held_out = [c for c in dataset.splits.test_cameras if c in dataset.camera_names]
    training = [c for c in dataset.camera_names if c not in held_out]
    report: dict[str, Any] = {
        "split": "all (unseen capture)",
        "self_reenactment": evaluate_split(
            avatar,
            dataset,
            tracking,
            evaluated,
            training,
            expression=ExpressionSetup(dataset.front_camera, template),
            flip=options.flip,
            sink=sinks.get("self"),
        ).summary(),
    }
    if held_out:
        report["novel_view"] = evaluate_split(
            avatar,
            dataset,
            tracking,
            evaluated,
            held_out,
            expression=ExpressionSetup(held_out[0], template),
            flip=options.flip,
            sink=sinks.get("novel"),
        ).summary()
    report["lpips"] = LPIPS_NOTE
    return report
