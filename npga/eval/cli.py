"""``npga eval``, ``npga oracle`` and ``npga eval-views``: the command lines over the evaluation
library (npga/eval/run.py, cross.py, synth_oracle.py, views.py)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from npga.bundle import AvatarBundle, BundleError, load_bundle
from npga.cli_args import (
    CliError,
    DefaultsHelpFormatter,
    check_output_file,
    device_arg,
    load_avatar,
    positive_int,
)
from npga.data import CaptureDataset, CaptureError
from npga.eval.cross import cross_reenactment
from npga.eval.evaluate import evaluate
from npga.eval.media import MediaSink
from npga.eval.run import EvalOptions, evaluate_capture
from npga.eval.synth_oracle import oracle_report
from npga.eval.views import evaluate_views
from npga.model import GaussianAvatar
from npga.tracking.capture import (
    FITTED_TRACKING_FILE,
    REFINED_TRACKING_FILE,
    TRACKING_FILE,
    CaptureTracking,
)
from npga.tracking.sources import SourceError
from npga.tracking.template import FaceTemplate, load_default_template

FRAME_KEYS = {"training": "training_frames", "held-out": "held_out_frames"}


def _avatar_frames(avatar: Path, which: str) -> list[int]:
    """The avatar's training or held-out frames, from the report npga create wrote beside it."""
    path = avatar / "report.json"
    try:
        frames = json.loads(path.read_text())[FRAME_KEYS[which]]
    except (OSError, ValueError, KeyError):
        raise CliError(
            f"{path}: no list of {which} frames (an avatar made by npga create has one)"
        ) from None
    return [int(t) for t in frames]


POSE_FILES = {  # npga oracle --poses
    "tracked": TRACKING_FILE,
    "refined": REFINED_TRACKING_FILE,
    "fitted": FITTED_TRACKING_FILE,
}


def held_out_summary(
    avatar: GaussianAvatar, dataset: CaptureDataset, tracking: CaptureTracking
) -> dict[str, Any]:
    """The figures ``npga train`` writes into a finished run's bundle (no FLIP, no Face Mesh)."""
    report = evaluate(avatar, dataset, tracking, "test")

    def headline(split: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if split is None else {k: v for k, v in split.items() if k != "per_camera"}

    return {
        "test": headline(report["self_reenactment"]),
        "novel_view": headline(report.get("novel_view")),
    }


class _StageProgress:
    """Rich progress bars, one per stage the evaluation reports."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _check_outputs(args: argparse.Namespace) -> None:
    check_output_file(args.json)
    if args.media is not None and args.media.exists() and not args.media.is_dir():
        raise CliError(f"{args.media}: exists and is not a folder")


def _split_line(name: str, split: dict[str, Any]) -> str:
    line = f"{name}: PSNR {split['psnr']:.2f} dB (mask {split['psnr_mask']}, mouth "
    line += f"{split['psnr_mouth']}, eyes {split['psnr_eyes']}), SSIM {split['ssim']}"
    if split.get("flip") is not None:
        line += f", FLIP {split['flip']}"
    if split.get("expression_error") is None:
        line += f"; no expression error ({split.get('expression_note', 'not measured')})"
    else:
        line += (
            f"; expression error {split['expression_error']} (neutral-driven "
            f"{split['expression_error_neutral']}), pose error {split['pose_error_deg']} deg"
        )
    return line


def cmd_eval(args: argparse.Namespace) -> None:
    _check_outputs(args)
    if args.capture is None and args.drive is None:
        raise CliError("give a CAPTURE to evaluate on, or --drive VIDEO_OR_CAPTURE")
    bundle = load_avatar(args.avatar, args.device)
    template = load_default_template()
    report: dict[str, Any] = {}
    with _progress() as progress:
        stages = _StageProgress(progress)
        if args.capture is not None:
            report = _eval_capture(args, bundle, template, stages)
        if args.drive is not None:
            try:
                cross = cross_reenactment(
                    bundle, args.drive, template, args.drive_frames, args.media, stages
                )
            except (ValueError, CaptureError, SourceError) as error:
                raise CliError(str(error)) from None
            report = report | cross if report else {"avatar": str(args.avatar), **cross}
    report["training"] = bundle.summary
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    for name in ("self_reenactment", "novel_view", "cross_reenactment"):
        if name in report:
            split = report[name]
            print(_split_line(name, split) if "psnr" in split else _cross_line(split))


def _cross_line(split: dict[str, Any]) -> str:
    return (
        f"cross_reenactment ({split['frames']} frames): expression error "
        f"{split['expression_error']} (neutral-driven {split['expression_error_neutral']}), "
        f"pose error {split['pose_error_deg']} deg"
    )


def _eval_capture(
    args: argparse.Namespace,
    bundle: AvatarBundle,
    template: FaceTemplate,
    progress: _StageProgress,
) -> dict[str, Any]:
    options = EvalOptions(
        split=args.split,
        codes=args.codes,
        fit_steps=args.fit_poses or 0,
        timesteps=args.timesteps,
        resolution=args.resolution,
        flip=not args.no_flip,
    )
    sinks: dict[str, MediaSink] = {}
    try:
        if args.media is not None:
            capture = CaptureDataset(args.capture)
            held_out = capture.splits.test_cameras
            sinks = {
                "self": MediaSink(args.media, f"self_{args.split}", [capture.front_camera]),
                "novel": MediaSink(args.media, "novel_view", held_out),
            }
        try:
            result = evaluate_capture(
                args.avatar, bundle, args.capture, template, options, sinks, progress
            )
        finally:
            for sink in sinks.values():
                sink.close()
    except (CaptureError, ValueError) as error:
        raise CliError(str(error)) from None
    if result.own_capture and options.fit_steps and options.codes == "tracked":
        result.tracking.save(args.avatar, FITTED_TRACKING_FILE)  # what npga oracle --poses reads
    return result.report


def cmd_oracle(args: argparse.Namespace) -> None:
    check_output_file(args.json)
    filename = POSE_FILES[args.poses]
    if not (args.avatar / filename).is_file():
        raise CliError(
            f"{args.avatar}: no {filename} ({args.poses} poses: "
            + ("run npga eval --fit-poses first)" if args.poses == "fitted" else "npga train)")
        )
    try:
        tracking = CaptureTracking.load(args.avatar, filename)
        dataset = CaptureDataset(args.capture, resolution=args.resolution)
        with _progress() as progress:
            task = progress.add_task("ground truth", total=2)
            report = oracle_report(
                args.capture, dataset, tracking, args.every, lambda n: progress.advance(task, n)
            )
    except (CaptureError, ValueError) as error:
        raise CliError(str(error)) from None
    report = {"capture": str(args.capture), "poses": f"{args.poses} ({filename})", **report}
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


def cmd_eval_views(args: argparse.Namespace) -> None:
    check_output_file(args.json)
    try:
        bundle = load_bundle(args.avatar, args.device)
        tracking = CaptureTracking.load(args.avatar, REFINED_TRACKING_FILE)
    except (BundleError, ValueError) as error:
        raise CliError(str(error)) from None
    frames = args.at if args.at else _avatar_frames(args.avatar, args.frames)
    try:
        fit_camera = args.fit_camera or CaptureDataset(args.capture).front_camera
        with tempfile.TemporaryDirectory(prefix="npga-views-") as scratch:
            report = evaluate_views(
                bundle.avatar,
                tracking,
                args.capture,
                args.cameras,
                fit_camera,
                load_default_template(),
                Path(scratch) / "rescaled",
                frames=frames,
                timesteps=args.timesteps,
                fit_steps=args.fit_poses,
            )
    except (CaptureError, ValueError) as error:
        raise CliError(str(error)) from None
    report = {"avatar": str(args.avatar), "capture": str(args.capture), **report}
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    novel = report["novel_view"]
    print(
        f"novel view ({', '.join(args.cameras)}, {report['timesteps']} timesteps): PSNR "
        f"{novel['psnr']:.2f} dB, in the mask {novel['psnr_mask']}, SSIM {novel['ssim']}; the "
        f"view it was fitted in: PSNR {report['fit_view']['psnr']:.2f} dB"
    )


def add_commands(commands: Any) -> None:
    """Register ``eval``, ``oracle`` and ``eval-views`` on the ``npga`` subparsers."""
    ev = commands.add_parser(
        "eval",
        help="fidelity of an avatar on a capture of its subject, or driven by another person",
        description="Self-reenactment and novel-view metrics of an avatar on a capture: its own "
        "training capture (the run's tracking) or any other capture of its subject (tracked "
        "into the avatar's expression space; another seed of npga synth for the demo). "
        "Reports PSNR/SSIM over the image, the head mask, the mouth and the eyes, FLIP, the "
        "expression and pose error re-tracked by Face Mesh, and the avatar driven by its "
        "neutral code as the baseline. --drive adds cross-reenactment by another person's "
        "video. See docs/evaluation.md.",
        formatter_class=DefaultsHelpFormatter,
    )
    ev.add_argument("avatar", type=Path, help="avatar bundle (a folder)")
    ev.add_argument("capture", type=Path, nargs="?", help="capture of the avatar's subject")
    ev.add_argument(
        "--drive",
        type=Path,
        metavar="VIDEO_OR_CAPTURE",
        help="cross-reenactment: drive the avatar by this video (or capture's front camera)",
    )
    ev.add_argument(
        "--drive-frames", type=positive_int, default=48, help="driver frames rendered and scored"
    )
    ev.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="the avatar's own capture: the timesteps of self-reenactment",
    )
    ev.add_argument(
        "--timesteps",
        type=positive_int,
        default=24,
        help="another capture: how many of its timesteps are evaluated (evenly spread)",
    )
    ev.add_argument(
        "--fit-poses",
        type=positive_int,
        metavar="STEPS",
        help="fit the evaluated timesteps' head poses photometrically (training cameras only; "
        "100 is the documented recipe); default: the tracked poses",
    )
    ev.add_argument(
        "--codes",
        choices=("tracked", "monocular"),
        default="tracked",
        help="tracked: the multi-view codes (the training run's, or triangulated on the "
        "avatar's basis); monocular: the front camera's codes through the avatar's "
        "calibration, as a live webcam sender drives it",
    )
    ev.add_argument("--no-flip", action="store_true", help="skip FLIP (about 0.1 s per image)")
    ev.add_argument("--json", type=Path, help="write the report here")
    ev.add_argument("--media", type=Path, help="write comparison grids and videos here")
    ev.add_argument("--resolution", type=positive_int, help="image width (default: the avatar's)")
    ev.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu|cuda")
    ev.set_defaults(run=cmd_eval)

    oracle = commands.add_parser(
        "oracle",
        help="ground-truth bounds of a synthetic capture's tracking",
        description="For a capture written by npga synth: the tracked poses' error against the "
        "rig (mm), the PSNR of the true head rendered at those poses (no avatar driven by them "
        "can be expected to beat it) and of the true head without expression at the true poses "
        "(a perfect static avatar). See npga/eval/synth_oracle.py.",
        formatter_class=DefaultsHelpFormatter,
    )
    oracle.add_argument("avatar", type=Path, help="an avatar directory written by npga train")
    oracle.add_argument("capture", type=Path, help="a capture written by npga synth")
    oracle.add_argument(
        "--poses",
        choices=tuple(POSE_FILES),
        default="tracked",
        help="tracked: Face Mesh; refined: after training; fitted: npga eval --fit-poses",
    )
    oracle.add_argument("--every", type=positive_int, default=1, help="use every K-th timestep")
    oracle.add_argument("--resolution", type=positive_int, help="default: the capture's")
    oracle.add_argument("--json", type=Path, help="write the report here")
    oracle.set_defaults(run=cmd_oracle)

    views = commands.add_parser(
        "eval-views",
        help="novel views of an avatar made from one camera of a capture",
        description="For an avatar made by `npga create` from one camera of a multi-view "
        "capture (e.g. `npga data video` of a synthetic rig): head poses from the rig's "
        "cameras, refined on the camera the avatar was made from, then PSNR/SSIM from the "
        "other cameras at the avatar's training frames. See npga/eval/views.py.",
        formatter_class=DefaultsHelpFormatter,
    )
    views.add_argument(
        "avatar", type=Path, help="avatar bundle with its tracking (npga create or npga train)"
    )
    views.add_argument("capture", type=Path, help="the multi-view capture the clip came from")
    views.add_argument("--cameras", nargs="+", required=True, help="the cameras to evaluate")
    views.add_argument("--fit-camera", help="camera the poses are refined on (default: front)")
    views.add_argument(
        "--frames",
        choices=tuple(FRAME_KEYS),
        default="training",
        help="the avatar's frames to evaluate at: training (only the viewpoint is new) or "
        "held-out (the clip's end; with the fit camera as --cameras: self-reenactment in the "
        "rig's own image)",
    )
    views.add_argument(
        "--at",
        nargs="+",
        type=int,
        metavar="T",
        help="evaluate at these timesteps instead (any avatar with its tracking beside it, "
        "e.g. one trained by npga train, for comparison)",
    )
    views.add_argument("--timesteps", type=positive_int, default=24, help="frames evaluated")
    views.add_argument("--fit-poses", type=positive_int, default=100, help="pose-fit steps")
    views.add_argument("--json", type=Path, help="write the report here")
    views.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu|cuda")
    views.set_defaults(run=cmd_eval_views)
