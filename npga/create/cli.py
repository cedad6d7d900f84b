"""``npga create VIDEO --out AVATAR``: a personal avatar from one ordinary video."""

from __future__ import annotations

import argparse
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
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from npga.cli_args import (
    CliError,
    DefaultsHelpFormatter,
    device_arg,
    positive_float,
    positive_int,
)
from npga.create.pipeline import QUALITIES, CreateConfig, CreateError, create_avatar

DEFAULT_RESOLUTION = {"cpu": 256, "cuda": 512}


class RichProgress:
    """The run's stages as rich progress bars on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("[bold]{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._current: TaskID | None = None

    def stage(self, name: str, total: int | None) -> Callable[[int, str], None]:
        if not self.console.is_terminal:
            return self._plain_stage(name, total)
        if self._current is not None:
            self.bars.stop_task(self._current)
        task = self.bars.add_task(name, total=total, info="")
        self._current = task

        def update(completed: int, info: str) -> None:
            known = self.bars.tasks[task].total
            if known is not None and completed > known:
                self.bars.update(task, total=completed)
            self.bars.update(task, completed=completed, info=info)

        return update

    def _plain_stage(self, name: str, total: int | None) -> Callable[[int, str], None]:
        """Without a terminal (a log file, a job queue): a line at every tenth of the stage."""
        started = time.perf_counter()
        shown = {"tenth": -1, "info": ""}

        def update(completed: int, info: str) -> None:
            tenth = int(10 * completed / total) if total else 0
            final = total is None or completed >= total
            if tenth == shown["tenth"] and not (final and info != shown["info"]):
                return
            shown["tenth"], shown["info"] = tenth, info
            of = f"/{total}" if total else ""
            elapsed = time.perf_counter() - started
            self.console.print(f"{name}: {completed}{of} {info} ({elapsed:.0f} s)", highlight=False)

        return update

    def say(self, text: str) -> None:
        self.console.print(text)


def _check_out(out: Path) -> None:
    """Fail before any work when the avatar cannot be written where asked."""
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a directory")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise CliError(f"{parent}: no such directory (for --out {out})")
    if out.is_dir() and any(out.iterdir()) and not (out / "avatar.json").is_file():
        raise CliError(f"{out}: a non-empty directory that is not an avatar; choose another --out")


def cmd_create(args: argparse.Namespace) -> None:
    _check_out(args.out)
    work: Path = args.work or args.out.with_name(args.out.name + ".work")
    resolution = args.resolution or DEFAULT_RESOLUTION[args.device.type]
    config = CreateConfig(
        quality=args.quality,
        resolution=resolution,
        fov_degrees=args.fov,
        expression_dim=args.expression_dim,
        seed=args.seed,
        iterations=args.iters,
        train_frames=args.frames,
    )
    console = Console(stderr=True)
    progress = RichProgress(console)
    try:
        with progress.bars:
            report = create_avatar(
                args.video, args.out, work, config, args.device, progress, resume=args.resume
            )
    except CreateError as error:
        raise CliError(str(error)) from None
    held = report["held_out"]
    console.print(json.dumps(_headline(report), indent=1))
    print(
        f"wrote {args.out}: held-out PSNR {held['psnr']:.2f} dB (in the head mask "
        f"{held['psnr_mask']:.2f} dB), SSIM {held['ssim']:.3f}; {report['frames_used']} frames, "
        f"{report['seconds']:.0f} s; previews and report.json beside the bundle"
    )


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("held_out", "frames_used", "people_seen", "shots", "seconds", "stage_seconds")
    return {k: report[k] for k in keys}


def add_commands(commands: Any) -> None:
    """Register ``create`` on the ``npga`` subparsers."""
    create = commands.add_parser(
        "create",
        help="create a personal avatar from one ordinary video",
        description="Turn a video of one person (a webcam or phone clip of ~60 s: turn the head "
        "left, right, up and down, open the mouth, smile, raise the brows, blink, talk) into an "
        "avatar bundle for `telepresence serve --avatar` and `npga render`. Stages: decode and "
        "observe every frame, keep one person and choose frames, a fixed virtual camera with "
        "head masks, tracking with the live sender's pipeline, training, evaluation. Progress "
        "is kept in --work; interrupt with Ctrl-C and continue with --resume. See docs/create.md.",
        formatter_class=DefaultsHelpFormatter,
    )
    create.add_argument("video", type=Path, help="the video file (mp4, mov, webm, avi, mkv)")
    create.add_argument("--out", type=Path, required=True, help="avatar bundle directory to write")
    create.add_argument(
        "--work", type=Path, help="run directory for the stages' results (default: OUT.work)"
    )
    create.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu|cuda")
    create.add_argument(
        "--quality",
        choices=tuple(QUALITIES),
        default="standard",
        help="fast: a quick look; standard: the documented recipe; best: longer training",
    )
    create.add_argument("--resume", action="store_true", help="continue the run in --work")
    create.add_argument(
        "--resolution", type=positive_int, help="image side (default: 256 on cpu, 512 on cuda)"
    )
    create.add_argument(
        "--fov",
        type=positive_float,
        default=60.0,
        help="the video's horizontal field of view, degrees (unknown from the file; 60 suits "
        "most webcams and phone front cameras)",
    )
    create.add_argument(
        "--expression-dim", type=positive_int, default=32, help="E of the expression basis"
    )
    create.add_argument("--iters", type=positive_int, help="training steps (default: quality's)")
    create.add_argument("--frames", type=positive_int, help="training frames (default: quality's)")
    create.add_argument("--seed", type=int, default=0, help="random seed")
    create.set_defaults(run=cmd_create)
