"""``npga train``.

Training does not import evaluation (nor evaluation training): the held-out figures a finished
run writes into its bundle come from a function the ``npga`` command passes in
(``add_commands(commands, held_out=...)``, npga/cli.py wires ``npga.eval``'s).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
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

from npga.cli_args import CliError, device_arg, positive_int
from npga.data import CaptureDataset, CaptureError
from npga.model import GaussianAvatar
from npga.model.config import DYNAMICS
from npga.tracking.capture import (
    TRACKING_FILE,
    CaptureTracking,
    detect_landmarks,
    track_capture,
)
from npga.tracking.template import load_default_template
from npga.train import checkpoint as ckpt
from npga.train.config import TrainConfig
from npga.train.densify import DensifyStrategy
from npga.train.trainer import StepStats, Trainer

# (avatar, capture, its tracking after training) -> {"test": ..., "novel_view": ...} figures
HeldOutReport = Callable[[GaussianAvatar, CaptureDataset, CaptureTracking], dict[str, Any]]
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


def cmd_train(args: argparse.Namespace, held_out: HeldOutReport) -> None:
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
        plain_every = max(1, config.iterations // 40)  # without a terminal: 40 lines in all

        def show(stats: StepStats) -> None:
            rate = (stats.step - first_step) / max(time.perf_counter() - started, 1e-9)
            info = (
                f"loss {stats.loss:.4f}  PSNR {stats.psnr:5.2f}  N {stats.num_gaussians}  "
                f"{rate:.1f} it/s"
            )
            progress.update(task, completed=stats.step, info=info)
            if not console.is_terminal and stats.step % plain_every == 0:  # a log file, a job
                left = (config.iterations - stats.step) / max(rate, 1e-9)
                console.print(
                    f"training: step {stats.step}/{config.iterations}  {info}  "
                    f"~{left / 60:.0f} min left",
                    highlight=False,
                )

        try:
            trainer.run(show)
        except KeyboardInterrupt:
            raise CliError(
                f"interrupted at step {trainer.step}; checkpoint saved, continue with --resume"
            ) from None
    trainer.save_checkpoint()
    figures = held_out(trainer.avatar.eval(), dataset, trainer.refined_tracking())
    summary = _summary(args, trainer, tracking) | figures
    trainer.write_bundle(summary)
    console.print(json.dumps(summary, indent=1))


def _summary(
    args: argparse.Namespace, trainer: Trainer, tracking: CaptureTracking
) -> dict[str, Any]:
    return {
        "capture": args.capture.resolve().name,
        "capture_fingerprint": trainer.dataset.fingerprint(),
        "model": trainer.config.dynamics,
        "iterations": trainer.step,
        "training_seconds": round(trainer.state.seconds, 1),
        "device": str(args.device),
        "gaussians": trainer.avatar.num_gaussians,
        "resolution": args.resolution,
        "expression_dim": trainer.config.expression_dim,
        "front_camera_detection": round(tracking.detection_rate, 4),
    }


def add_commands(commands: Any, held_out: HeldOutReport) -> None:
    """Register ``train`` on the ``npga`` subparsers; ``held_out`` gives a run's final figures."""
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
    train.add_argument(
        "--expression-dim", type=positive_int, default=32, help="code size E of the basis fitted"
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (initialisation, sampling)")
    train.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints"
    )
    train.set_defaults(run=functools.partial(cmd_train, held_out=held_out))
