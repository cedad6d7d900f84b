"""``npga create VIDEO --out AVATAR``: a personal avatar from one ordinary video."""

from __future__ import annotations

import argparse
import json
import os
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
    check_output_file,
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


# Rough shares of a run's time per stage (docs/benchmarks.md "npga create"): the overall percent
# and ETA a job queue shows.
STAGE_SHARES = {"1/6": 0.08, "2/6": 0.01, "3/6": 0.04, "4/6": 0.02, "5/6": 0.80, "6/6": 0.05}


class JsonProgress:
    """Forwards to ``inner`` and keeps ``path`` holding the run's state as one JSON object
    (stage, completed, total, info, percent overall, eta_s), replaced atomically at most every
    ``every`` seconds: what a job queue polls."""

    def __init__(self, inner: RichProgress, path: Path, every: float = 0.5) -> None:
        self.inner, self.path, self.every = inner, path, every
        self.started = time.monotonic()
        self._written = 0.0

    def stage(self, name: str, total: int | None) -> Callable[[int, str], None]:
        forward = self.inner.stage(name, total)
        key = name.split(" ", 1)[0]
        done_before = sum(v for k, v in STAGE_SHARES.items() if k < key)
        share = STAGE_SHARES.get(key, 0.0)

        def write(completed: int, info: str) -> None:
            now = time.monotonic()
            self._written = now
            fraction = min(completed / total, 1.0) if total else 0.0
            percent = 100 * (done_before + share * fraction)
            elapsed = now - self.started
            eta = elapsed * (100 - percent) / percent if percent > 1 else None
            state = {
                "stage": name,
                "completed": completed,
                "total": total,
                "info": info,
                "percent": round(percent, 1),
                "eta_s": None if eta is None else round(eta),
            }
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)

        def update(completed: int, info: str) -> None:
            forward(completed, info)
            final = total is not None and completed >= total
            if final or time.monotonic() - self._written >= self.every:
                write(completed, info)

        write(0, "")  # the stage has begun
        return update

    def say(self, text: str) -> None:
        self.inner.say(text)


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
    check_output_file(args.progress_json)
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
    bars = RichProgress(console)
    progress = JsonProgress(bars, args.progress_json) if args.progress_json else bars
    try:
        with bars.bars:
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
    create.add_argument(
        "--progress-json",
        type=Path,
        help="also keep this file holding the progress as JSON (stage, percent, eta_s)",
    )
    create.set_defaults(run=cmd_create)
