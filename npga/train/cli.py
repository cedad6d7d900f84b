"""``npga train`` and ``npga eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from npga.bundle import BundleError, load_bundle
from npga.cli_args import CliError, device_arg, positive_int
from npga.data import CaptureDataset, CaptureError
from npga.eval.evaluate import evaluate
from npga.eval.media import MediaSink
from npga.eval.pose_fit import fit_poses
from npga.eval.synth_oracle import oracle_report
from npga.model.config import DYNAMICS
from npga.tracking.template import load_default_template
from npga.train import checkpoint as ckpt
from npga.train.capture_tracking import (
    FITTED_TRACKING_FILE,
    REFINED_TRACKING_FILE,
    TRACKING_FILE,
    CaptureTracking,
    detect_landmarks,
    track_capture,
)
from npga.train.config import TrainConfig
from npga.train.densify import DensifyStrategy
from npga.train.trainer import StepStats, Trainer

POSE_FILES = {  # npga oracle --poses
    "tracked": TRACKING_FILE,
    "refined": REFINED_TRACKING_FILE,
    "fitted": FITTED_TRACKING_FILE,
}
REFINE_STOP_FRACTION = 0.6  # densification stops after this fraction of the iterations


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _open_capture(path: Path, resolution: int | None) -> CaptureDataset:
    try:
        return CaptureDataset(path, resolution=resolution)
    except CaptureError as error:
        raise CliError(str(error)) from None


def _tracking(dataset: CaptureDataset, out: Path, dim: int, console: Console) -> CaptureTracking:
    """The capture's codes and poses: reused from OUT, else tracked now (and saved)."""
    if (out / TRACKING_FILE).is_file():
        tracking = CaptureTracking.load(out)
        if tracking.codes.shape[1] != dim:
            raise CliError(
                f"{out / TRACKING_FILE}: tracked with {tracking.codes.shape[1]} expression dims, "
                f"not {dim}; use another --out"
            )
        return tracking
    if dataset.codes is not None:
        raise CliError(
            f"{dataset.root / 'codes.npz'}: training in a given code space "
            f"({dataset.codes.expression_space!r}) is not supported yet; remove codes.npz to "
            "track the capture into the Face Mesh expression space"
        )
    with _progress(console) as progress:
        task = progress.add_task("tracking", total=len(dataset.timesteps), info="Face Mesh")
        landmarks, found = detect_landmarks(
            lambda t, c: (dataset.image(t, c).numpy() * 255 + 0.5).astype("uint8"),
            dataset.timesteps,
            dataset.camera_names,
            lambda n: progress.advance(task, n),
        )
    try:
        tracking = track_capture(
            landmarks,
            found,
            dataset.timesteps,
            dataset.splits.train_timesteps,
            dataset.cameras,
            dataset.camera_names.index(dataset.front_camera),
            load_default_template(),
            dim,
        )
    except ValueError as error:
        raise CliError(f"{dataset.root}: {error}") from None
    out.mkdir(parents=True, exist_ok=True)
    tracking.save(out)
    console.print(
        f"tracked {len(tracking.timesteps)}/{len(dataset.timesteps)} timesteps "
        f"(front camera detection {tracking.detection_rate:.1%}), face unit "
        f"{tracking.face_unit_metres * 100:.2f} cm"
    )
    return tracking


def train_config(args: argparse.Namespace) -> TrainConfig:
    densify = DensifyStrategy(
        refine_stop=int(args.iters * REFINE_STOP_FRACTION), max_gaussians=args.max_gaussians
    )
    return TrainConfig(
        iterations=args.iters,
        resolution=args.resolution,
        dynamics=args.model,
        initial_gaussians=args.gaussians,
        expression_dim=args.expression_dim,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        densify=densify,
    )


def cmd_train(args: argparse.Namespace) -> None:
    console = Console(stderr=True)
    out: Path = args.out
    if args.resume and not ckpt.has_checkpoint(out):
        raise CliError(f"{out}: no training checkpoint to resume")
    if not args.resume and ckpt.has_checkpoint(out):
        raise CliError(f"{out}: holds a training run already; pass --resume or another --out")
    config = train_config(args)
    dataset = _open_capture(args.capture, args.resolution)
    tracking = _tracking(dataset, out, config.expression_dim, console)
    try:
        trainer = Trainer(config, dataset, tracking, out, device=args.device, resume=args.resume)
    except ValueError as error:
        raise CliError(str(error)) from None
    with _progress(console) as progress:
        task = progress.add_task(
            f"training ({config.dynamics})",
            total=config.iterations,
            completed=trainer.step,
            info="",
        )

        started, first_step = time.perf_counter(), trainer.step

        def show(stats: StepStats) -> None:
            rate = (stats.step - first_step) / max(time.perf_counter() - started, 1e-9)
            info = (
                f"loss {stats.loss:.4f}  PSNR {stats.psnr:5.2f}  N {stats.num_gaussians}  "
                f"{rate:.1f} it/s"
            )
            progress.update(task, completed=stats.step, info=info)

        try:
            trainer.run(show)
        except KeyboardInterrupt:
            raise CliError(
                f"interrupted at step {trainer.step}; checkpoint saved, continue with --resume"
            ) from None
    trainer.save_checkpoint()
    report = evaluate(trainer.avatar.eval(), dataset, trainer.refined_tracking(), "test")
    summary = _summary(args, trainer, tracking, report)
    trainer.write_bundle(summary)
    console.print(json.dumps(summary, indent=1))


def _summary(
    args: argparse.Namespace, trainer: Trainer, tracking: CaptureTracking, report: dict[str, Any]
) -> dict[str, Any]:
    return {
        "capture": str(args.capture),
        "model": trainer.config.dynamics,
        "iterations": trainer.step,
        "training_seconds": round(trainer.state.seconds, 1),
        "device": str(args.device),
        "gaussians": trainer.avatar.num_gaussians,
        "resolution": args.resolution,
        "expression_dim": trainer.config.expression_dim,
        "front_camera_detection": round(tracking.detection_rate, 4),
        "test": report["self_reenactment"]["overall"],
        "novel_view": report.get("novel_view", {}).get("overall"),
    }


def cmd_eval(args: argparse.Namespace) -> None:
    try:
        bundle = load_bundle(args.avatar, args.device)
    except BundleError as error:
        raise CliError(str(error)) from None
    if not (args.avatar / REFINED_TRACKING_FILE).is_file():
        raise CliError(
            f"{args.avatar}: no {REFINED_TRACKING_FILE}; evaluate an avatar trained by "
            "`npga train` on this capture"
        )
    try:
        tracking = CaptureTracking.load(args.avatar, REFINED_TRACKING_FILE)
    except ValueError as error:
        raise CliError(str(error)) from None
    prior = bundle.avatar.prior
    try:
        tracking.check_drives(prior.basis.cpu().numpy(), prior.template.cpu().numpy())
    except ValueError as error:
        raise CliError(f"{args.avatar / REFINED_TRACKING_FILE}: {error}") from None
    resolution = args.resolution or bundle.default_camera.width
    dataset = _open_capture(args.capture, resolution)
    sinks: dict[str, MediaSink] = {}
    if args.media is not None:
        videos = [dataset.front_camera, *dataset.splits.test_cameras]
        sinks = {
            "self": MediaSink(args.media, f"self_{args.split}", videos),
            "novel": MediaSink(args.media, "novel_view", dataset.splits.test_cameras),
        }
    codes = "multi-view (tracked)"
    if args.codes == "monocular":
        tracking = dataclasses.replace(tracking, codes=tracking.live_codes())
        codes = "monocular (front camera, calibrated: what a live sender sends)"
    poses = "tracked"
    if args.fit_poses:
        split = dataset.splits.test_timesteps if args.split == "test" else []
        tracked = set(tracking.timesteps.tolist())
        tracking = fit_poses(
            bundle.avatar, dataset, tracking, [t for t in split if t in tracked], args.fit_poses
        )
        if args.codes == "tracked":  # the poses `npga oracle --poses fitted` reads
            tracking.save(args.avatar, FITTED_TRACKING_FILE)
        poses = f"fitted to the training cameras ({args.fit_poses} steps per timestep)"
    try:
        report = evaluate(bundle.avatar, dataset, tracking, args.split, sinks)
    finally:
        for sink in sinks.values():
            sink.close()
    report = {
        "avatar": str(args.avatar),
        "capture": str(args.capture),
        "poses": poses,
        "codes": codes,
        **report,
    }
    report["training"] = bundle.summary
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    overall = report["self_reenactment"]["overall"]
    line = f"self-reenactment ({args.split}): PSNR {overall['psnr']:.2f} dB, SSIM {overall['ssim']}"
    if "novel_view" in report:
        novel = report["novel_view"]["overall"]
        line += f"; novel view: PSNR {novel['psnr']:.2f} dB, SSIM {novel['ssim']}"
    print(line)


def cmd_oracle(args: argparse.Namespace) -> None:
    filename = POSE_FILES[args.poses]
    if not (args.avatar / filename).is_file():
        raise CliError(
            f"{args.avatar}: no {filename} ({args.poses} poses: "
            + ("run npga eval --fit-poses first)" if args.poses == "fitted" else "npga train)")
        )
    try:
        tracking = CaptureTracking.load(args.avatar, filename)
    except ValueError as error:
        raise CliError(str(error)) from None
    dataset = _open_capture(args.capture, args.resolution)
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            task = progress.add_task("ground truth", total=2, info="train, test")
            report = oracle_report(
                args.capture, dataset, tracking, args.every, lambda n: progress.advance(task, n)
            )
    except ValueError as error:
        raise CliError(str(error)) from None
    report = {"capture": str(args.capture), "poses": f"{args.poses} ({filename})", **report}
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


def add_commands(commands: Any) -> None:
    """Register ``train``, ``eval`` and ``oracle`` on the ``npga`` subparsers."""
    train = commands.add_parser(
        "train",
        help="train an avatar from a multi-view capture",
        description="Track the capture (Face Mesh: codes and head poses), then optimise an "
        "NPGA avatar; writes an avatar bundle into --out. Interrupt with Ctrl-C and continue "
        "with --resume.",
    )
    train.add_argument("capture", type=Path, help="capture directory (docs/data.md)")
    train.add_argument("--out", type=Path, required=True, help="run / avatar bundle directory")
    train.add_argument("--iters", type=positive_int, default=6000, help="optimisation steps")
    train.add_argument("--resolution", type=positive_int, default=256, help="image width")
    train.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu|cuda")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    train.add_argument("--model", choices=DYNAMICS, default="npga", help="npga or an ablation")
    train.add_argument("--gaussians", type=positive_int, default=20_000, help="initial count")
    train.add_argument("--max-gaussians", type=positive_int, default=60_000, help="growth cap")
    train.add_argument("--expression-dim", type=positive_int, default=32, help="E")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=positive_int, default=500)
    train.set_defaults(run=cmd_train)

    ev = commands.add_parser("eval", help="PSNR/SSIM of an avatar on its capture")
    ev.add_argument("avatar", type=Path, help="avatar bundle trained by npga train")
    ev.add_argument("capture", type=Path, help="the capture it was trained on")
    ev.add_argument("--split", choices=("test", "train"), default="test")
    ev.add_argument("--json", type=Path, help="write the report here")
    ev.add_argument("--media", type=Path, help="write comparison grids and videos here")
    ev.add_argument("--resolution", type=positive_int, help="default: the avatar's")
    ev.add_argument(
        "--fit-poses",
        type=positive_int,
        metavar="STEPS",
        help="fit the held-out timesteps' head poses photometrically (training cameras only; "
        "the step sizes decay over the steps, 100 is the documented recipe)",
    )
    ev.add_argument(
        "--codes",
        choices=("tracked", "monocular"),
        default="tracked",
        help="tracked: the multi-view codes training used; monocular: the front camera's codes "
        "through the avatar's calibration, as a live webcam sender drives it",
    )
    ev.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu|cuda")
    ev.set_defaults(run=cmd_eval)

    oracle = commands.add_parser(
        "oracle",
        help="ground-truth bounds of a synthetic capture's tracking",
        description="For a capture written by npga synth: the tracked poses' error against the "
        "rig (mm), the PSNR of the true head rendered at those poses (no avatar driven by them "
        "can be expected to beat it) and of the true head without expression at the true poses "
        "(a perfect static avatar). See npga/eval/synth_oracle.py.",
    )
    oracle.add_argument("capture", type=Path, help="a capture written by npga synth")
    oracle.add_argument("avatar", type=Path, help="an avatar directory written by npga train")
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
