"""``npga synth`` and ``npga data preview|check|import-nersemble|import-gaussian-avatars``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from npga.cli_args import CliError, positive_int
from npga.data.layout import CaptureError


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def cmd_synth(args: argparse.Namespace) -> None:
    from npga.data.synth.writer import SynthConfig, write_synth

    config = SynthConfig(args.frames, args.cameras, args.resolution, args.seed, args.subject)
    start = time.perf_counter()
    try:
        with _progress("rendering") as progress:
            task = progress.add_task("synth", total=config.frames)
            write_synth(
                args.out,
                config,
                resume=args.resume,
                on_frame=lambda done: progress.update(task, completed=done),
            )
    except (FileExistsError, ValueError) as error:
        raise CliError(str(error)) from None
    print(
        f"wrote {config.frames} frames x {config.cameras} cameras "
        f"({config.resolution}x{config.resolution}) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def cmd_preview(args: argparse.Namespace) -> None:
    from npga.data.preview import write_contact_sheet

    try:
        print(
            write_contact_sheet(
                args.capture, args.out, columns=args.columns, resolution=args.resolution
            )
        )
    except CaptureError as error:
        raise CliError(str(error)) from None


def cmd_check(args: argparse.Namespace) -> None:
    from npga.data.capture import CaptureDataset

    try:
        capture = CaptureDataset(args.capture, cache=False)
    except CaptureError as error:
        raise CliError(str(error)) from None
    codes = capture.codes
    space = f"codes: {codes.expression_space} [{codes.codes.shape[1]}]" if codes else "no codes"
    print(
        f"{args.capture}: {len(capture)} timesteps, {len(capture.camera_names)} cameras "
        f"({capture.cameras.width}x{capture.cameras.height}), "
        f"masks: {'yes' if capture.has_masks else 'no'}, {space}"
    )


def add_commands(commands: Any) -> None:
    """Adds ``synth`` and ``data`` to the ``npga`` subparsers ``commands``."""
    synth = commands.add_parser("synth", help="render a synthetic multi-view talking-head capture")
    synth.add_argument("out", type=Path, help="capture folder to write")
    synth.add_argument("--frames", type=positive_int, default=120)
    synth.add_argument("--cameras", type=positive_int, default=8)
    synth.add_argument("--resolution", type=positive_int, default=256, help="image side (pixels)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--subject", default="astronaut", help="the photograph the head is built from"
    )
    synth.add_argument("--resume", action="store_true", help="keep frames already written")
    synth.set_defaults(run=cmd_synth)

    data = commands.add_parser("data", help="capture datasets: preview, check, import")
    data_commands = data.add_subparsers(dest="data", required=True, metavar="ACTION")
    preview = data_commands.add_parser("preview", help="contact sheet: cameras x timesteps")
    preview.add_argument("capture", type=Path, help="capture folder (own layout)")
    preview.add_argument("--out", type=Path, required=True, help="PNG to write")
    preview.add_argument("--columns", type=positive_int, default=8, help="timesteps shown")
    preview.add_argument("--resolution", type=positive_int, default=128, help="tile width")
    preview.set_defaults(run=cmd_preview)

    check = data_commands.add_parser("check", help="validate a capture folder")
    check.add_argument("capture", type=Path, help="capture folder (own layout)")
    check.set_defaults(run=cmd_check)
