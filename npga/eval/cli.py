"""``npga eval-views``: an avatar made from one camera of a capture, seen from its others."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from npga.bundle import BundleError, load_bundle
from npga.cli_args import CliError, DefaultsHelpFormatter, device_arg, positive_int
from npga.data import CaptureDataset, CaptureError
from npga.eval.views import evaluate_views
from npga.tracking.template import load_default_template
from npga.train.capture_tracking import REFINED_TRACKING_FILE, CaptureTracking

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


def cmd_eval_views(args: argparse.Namespace) -> None:
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
        f"{novel['overall']['psnr']:.2f} dB, in the mask {novel['overall']['psnr_mask']}, SSIM "
        f"{novel['overall']['ssim']}; the view it was fitted in: PSNR "
        f"{report['fit_view']['overall']['psnr']:.2f} dB"
    )


def add_commands(commands: Any) -> None:
    """Register ``eval-views`` on the ``npga`` subparsers."""
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
