"""``npga``: inspect, render and benchmark avatars."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from npga.bench import RenderBenchConfig, bench_detail, bench_render
from npga.bundle import AvatarBundle, save_bundle
from npga.cameras import Cameras
from npga.cli_args import (
    CliError,
    check_output_file,
    device_arg,
    fractions_arg,
    load_avatar,
    make_interruptible,
    positive_float,
    positive_int,
    show_defaults,
)
from npga.create import cli as create_cli
from npga.data import cli as data_cli
from npga.eval import cli as eval_cli
from npga.framing import FRAMINGS, Framer, HeadFrame, frontal_camera
from npga.inference import AvatarDriver
from npga.model import AvatarConfig, default_camera, synthetic_avatar
from npga.recording import RecordingError, load_recording, synthetic_recording
from npga.train import cli as train_cli
from npga.video import VideoWriter


def cmd_info(args: argparse.Namespace) -> None:
    bundle = load_avatar(args.avatar, torch.device("cpu"))
    avatar, config = bundle.avatar, bundle.config
    camera = bundle.default_camera
    parameters = sum(p.numel() for p in avatar.parameters())
    info = {
        "path": str(args.avatar),
        "gaussians": avatar.num_gaussians,
        "parameters": parameters,
        "expression_space": config.expression_space,
        "expression_dim": config.expression_dim,
        "landmarks": config.num_landmarks,
        "config": config.to_dict(),
        "default_camera": f"{camera.width}x{camera.height}",
        "summary": bundle.summary,
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return
    console = Console()
    console.print(f"[bold]{args.avatar}[/bold]")
    for key, value in info.items():
        if key not in ("path", "config"):
            console.print(f"  {key:18} {value}")
    console.print(f"  {'config':18} {config.to_dict()}")


def _render_cameras(bundle: AvatarBundle, kind: str, resolution: int, frames: int) -> list[Cameras]:
    """One camera per frame: frontal on the head, the training rig's front camera, or an orbit
    around the head (npga/framing.py)."""
    if kind == "capture":
        base = bundle.default_camera.to("cpu")
        scale = resolution / max(base.width, base.height)
        return [base.resized(2 * round(base.width * scale / 2), 2 * round(base.height * scale / 2))]
    head = HeadFrame.of_avatar(bundle.avatar)
    if kind == "front":
        return [frontal_camera(head, resolution)]
    yaws = [40.0 * math.sin(2 * math.pi * i / max(frames, 1)) for i in range(frames)]
    return [frontal_camera(head, resolution, yaw_degrees=yaw) for yaw in yaws]


def cmd_render(args: argparse.Namespace) -> None:
    bundle = load_avatar(args.avatar, args.device)
    try:
        recording = load_recording(args.codes)
    except RecordingError as error:
        raise CliError(str(error)) from None
    if recording.expression_dim != bundle.config.expression_dim:
        raise CliError(
            f"{args.codes}: codes have {recording.expression_dim} dims but the avatar's "
            f"expression space has {bundle.config.expression_dim}"
        )
    check_output_file(args.out)
    frames = recording.num_frames if args.frames is None else min(args.frames, recording.num_frames)
    try:
        cameras = _render_cameras(bundle, args.camera, args.resolution, frames)
    except ValueError as error:
        raise CliError(f"{args.avatar}: {error}") from None
    driver = AvatarDriver(bundle)
    framer = Framer(driver.head, args.framing)
    fps = args.fps or recording.fps()
    with (
        VideoWriter(args.out, cameras[0].width, cameras[0].height, fps) as writer,
        Progress(
            TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        ) as progress,
    ):
        task = progress.add_task("render", total=frames)
        for i in range(frames):
            rows = slice(i, i + 1)
            (image,) = driver.render(
                recording.codes[rows],
                recording.rotation_wxyz[rows],
                recording.translation[rows],
                recording.timestamps[rows],
                cameras[i % len(cameras)],
                [framer],
            )
            writer.write(image)
            progress.advance(task)
    size = f"{cameras[0].width}x{cameras[0].height}"
    print(f"wrote {frames} frames ({size}, {fps:.1f} fps) to {args.out}")


def cmd_bench_render(args: argparse.Namespace) -> None:
    config = RenderBenchConfig(
        gaussians=args.gaussians,
        resolution=args.resolution,
        width=args.width,
        device=args.device,
        frames=args.frames,
        batch=args.batch,
        compare_naive=args.compare_naive,
    )
    if args.compare_naive and args.device.type != "cpu":
        raise CliError("--compare-naive times the CPU baseline; use it with --device cpu")
    report = bench_render(config)
    if args.json:
        print(json.dumps(report))
        return
    console = Console()
    size = f"{report['width']}x{report['height']}"
    console.print(
        f"{report['gaussians']} Gaussians at {size} on {report['device']}: "
        f"p50 {report['ms_p50']} ms, p95 {report['ms_p95']} ms, {report['fps']} fps "
        f"(deform {report['deform']}, rasterize {report['rasterize']})"
    )
    if "naive" in report:
        console.print(f"naive baseline: {report['naive']}; speed-up {report['speedup_vs_naive']}x")


def cmd_track(args: argparse.Namespace) -> None:
    from npga.tracking import ExpressionBasis, load_default_template
    from npga.tracking.run import observe_source, recording_from_observations
    from npga.tracking.sources import SourceError, open_source

    given = [
        "--" + n.replace("_", "-")
        for n in ("avatar", "basis", "fit_basis")
        if getattr(args, n) is not None
    ]
    if len(given) > 1:
        raise CliError(f"give one of --avatar, --basis and --fit-basis, not {' and '.join(given)}")
    try:
        basis = ExpressionBasis.load(args.basis) if args.basis is not None else None
        if args.avatar is not None:
            basis = load_avatar(args.avatar, torch.device("cpu")).expression_encoder()
        source = open_source(args.input, fps=args.fps, max_frames=args.frames)
    except (ValueError, SourceError) as error:
        raise CliError(str(error)) from None
    for path in (args.out, args.fit_basis):
        check_output_file(path)
    template = basis.template if basis is not None else load_default_template()
    checkpoint = args.out.with_name(args.out.name + ".partial.npz")
    columns = (TextColumn("tracking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns) as progress:
            task = progress.add_task("track", total=source.length)
            log = observe_source(
                source,
                template,
                checkpoint,
                resume=args.resume,
                on_frame=lambda done: progress.update(task, completed=done),
            )
    except (ValueError, SourceError) as error:
        if checkpoint.exists():
            raise CliError(f"{error} (progress kept: rerun with --resume)") from None
        raise CliError(str(error)) from None
    try:
        result = recording_from_observations(log, template, basis, fit_dim=args.expression_dim)
    except ValueError as error:  # too few frames for a basis: the observations are kept
        raise CliError(
            f"{error}: track a longer video, pass a smaller --expression-dim with --resume (the "
            "frames observed are kept), or encode in an avatar's space with --avatar"
        ) from None
    result.recording.save(args.out)
    checkpoint.unlink(missing_ok=True)
    if args.fit_basis is not None:
        result.basis.save(args.fit_basis)
        print(f"wrote a {result.basis.dim}-dim expression basis to {args.fit_basis}")
    print(
        f"tracked {result.frames} frames from {source.description}: face detected in "
        f"{result.detected} ({100 * result.detection_rate:.1f} %); codes written to {args.out}"
    )


def cmd_bench_detail(args: argparse.Namespace) -> None:
    bundle = load_avatar(args.avatar, torch.device("cpu"))
    report = bench_detail(bundle, args.fractions, args.resolution, args.frames)
    print(json.dumps(report) if args.json else report)


def cmd_bench_track(args: argparse.Namespace) -> None:
    from npga.tracking.bench import bench_track

    report = bench_track(frames=args.frames, dim=args.expression_dim)
    print(json.dumps(report) if args.json else report)


def cmd_make_avatar(args: argparse.Namespace) -> None:
    config = AvatarConfig(expression_dim=args.expression_dim)
    avatar = synthetic_avatar(args.gaussians, config, seed=args.seed)
    summary = {"source": "procedural (npga make-avatar)", "seed": args.seed}
    save_bundle(args.out, avatar, default_camera(args.resolution), summary)
    print(f"wrote a procedural avatar of {args.gaussians} Gaussians to {args.out}")


def cmd_make_codes(args: argparse.Namespace) -> None:
    check_output_file(args.out)
    if args.avatar is not None:
        dim = load_avatar(args.avatar, torch.device("cpu")).config.expression_dim
    else:
        dim = args.expression_dim
    recording = synthetic_recording(dim, seconds=args.seconds, fps=args.fps, seed=args.seed)
    recording.save(args.out)
    print(f"wrote {recording.num_frames} frames of {dim}-dim codes to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npga", description="Neural Parametric Gaussian Avatars: inspect, render, benchmark."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="summarise an avatar bundle")
    info.add_argument("avatar", type=Path, help="avatar bundle directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)

    rend = commands.add_parser("render", help="render a code recording to a video")
    rend.add_argument("avatar", type=Path, help="avatar bundle directory")
    rend.add_argument("--codes", type=Path, required=True, help="code recording (.npz)")
    rend.add_argument("--out", type=Path, required=True, help="output video (.mp4)")
    rend.add_argument("--resolution", type=positive_int, default=512, help="longer image side")
    rend.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu | cuda")
    rend.add_argument(
        "--camera",
        choices=("front", "orbit", "capture"),
        default="front",
        help="front: straight at the face; orbit: swinging ±40° around the head; capture: the "
        "training rig's front camera",
    )
    rend.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="auto",
        help="auto: the camera follows the head smoothly and keeps it framed; fixed: the head "
        "held at its rest position; free: the translation as recorded (docs/rendering.md)",
    )
    rend.add_argument("--fps", type=positive_float, help="default: from the recording")
    rend.add_argument("--frames", type=positive_int, help="render at most this many frames")
    rend.set_defaults(run=cmd_render)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    br = bench_commands.add_parser("render", help="deformation + rasterisation time per frame")
    br.add_argument(
        "--gaussians", type=positive_int, default=20_000, help="Gaussians of the procedural avatar"
    )
    br.add_argument("--resolution", type=positive_int, default=256, help="image height")
    br.add_argument("--width", type=positive_int, help="image width (default: = resolution)")
    br.add_argument("--device", type=device_arg, default=torch.device("cpu"), help="cpu | cuda")
    br.add_argument("--frames", type=positive_int, default=30, help="timed frames")
    br.add_argument("--batch", type=positive_int, default=1, help="expressions per call")
    br.add_argument("--compare-naive", action="store_true", help="also time the naive baseline")
    br.add_argument("--json", action="store_true", help="print one JSON object")
    br.set_defaults(run=cmd_bench_render)

    bd = bench_commands.add_parser(
        "detail", help="render time and image difference at lower levels of detail"
    )
    bd.add_argument("avatar", type=Path, help="avatar bundle folder")
    bd.add_argument(
        "--fractions",
        type=fractions_arg,
        default=[1.0, 0.5, 0.35, 0.25],
        help="fractions of the Gaussians kept, comma-separated",
    )
    bd.add_argument("--resolution", type=positive_int, default=256, help="image size")
    bd.add_argument("--frames", type=positive_int, default=24, help="timed frames per level")
    bd.add_argument("--json", action="store_true", help="print one JSON object")
    bd.set_defaults(run=cmd_bench_detail)

    bt = bench_commands.add_parser("track", help="Face Mesh + pose + encoding frames per second")
    bt.add_argument("--frames", type=positive_int, default=300, help="timed frames")
    bt.add_argument("--expression-dim", type=positive_int, default=48, help="code size E")
    bt.add_argument("--json", action="store_true", help="print one JSON object")
    bt.set_defaults(run=cmd_bench_track)

    track = commands.add_parser("track", help="track a face video into a code recording")
    track.add_argument("input", help="video file, folder of images, or camera index (0, 1, ...)")
    track.add_argument("--out", type=Path, required=True, help="code recording to write (.npz)")
    track.add_argument(
        "--avatar",
        type=Path,
        help="encode in this avatar's expression space (then: npga render AVATAR --codes OUT)",
    )
    track.add_argument("--basis", type=Path, help="encode with this expression basis (.json)")
    track.add_argument("--fit-basis", type=Path, help="fit a basis on this input, write it here")
    track.add_argument("--expression-dim", type=positive_int, default=48, help="for --fit-basis")
    track.add_argument("--fps", type=positive_float, default=30.0, help="for image folders")
    track.add_argument("--frames", type=positive_int, help="stop a camera after this many")
    track.add_argument(
        "--resume", action="store_true", help="continue from OUT.partial.npz of an interrupted run"
    )
    track.set_defaults(run=cmd_track)

    make = commands.add_parser("make-avatar", help="write a procedural avatar bundle")
    make.add_argument("out", type=Path, help="bundle directory to write")
    make.add_argument("--gaussians", type=positive_int, default=20_000, help="Gaussians")
    make.add_argument("--expression-dim", type=positive_int, default=48, help="code size E")
    make.add_argument("--resolution", type=positive_int, default=512, help="default camera size")
    make.add_argument("--seed", type=int, default=0, help="random seed")
    make.set_defaults(run=cmd_make_avatar)

    codes = commands.add_parser("make-codes", help="write a synthetic code recording")
    codes.add_argument("out", type=Path, help=".npz file to write")
    source = codes.add_mutually_exclusive_group()
    source.add_argument("--avatar", type=Path, help="match this avatar's expression space")
    source.add_argument(
        "--expression-dim", type=positive_int, default=48, help="code size E (without --avatar)"
    )
    codes.add_argument("--seconds", type=positive_float, default=5.0, help="length")
    codes.add_argument("--fps", type=positive_float, default=30.0, help="frames per second")
    codes.add_argument("--seed", type=int, default=0, help="random seed")
    codes.set_defaults(run=cmd_make_codes)

    # Subcommands that live with their packages: each module adds its parsers.
    for add_commands in _command_modules():
        add_commands(commands)
    return show_defaults(parser)


def _command_modules() -> list[Callable[[Any], None]]:
    """``add_commands(subparsers)`` of every package that brings its own subcommands."""
    return [
        data_cli.add_commands,
        functools.partial(train_cli.add_commands, held_out=eval_cli.held_out_summary),
        eval_cli.add_commands,
        create_cli.add_commands,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    make_interruptible()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CliError as error:
        print(f"npga: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as error:
        print(f"npga: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # long jobs checkpoint as they go: --resume continues them
        print("npga: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
