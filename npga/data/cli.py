"""``npga synth`` and ``npga data preview|check|video|import-nersemble|import-gaussian-avatars``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from npga.cli_args import CliError, check_output_file, positive_float, positive_int
from npga.data.layout import FRAMES_DIR, CaptureError

# The containers ``npga data video`` writes and the codec each gets.
VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def cmd_synth(args: argparse.Namespace) -> None:
    from npga.data.synth.writer import SynthConfig, write_synth

    config = SynthConfig(
        args.frames, args.cameras, args.resolution, args.seed, args.subject, args.head_motion
    )
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

    check_output_file(args.out)
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


def cmd_video(args: argparse.Namespace) -> None:
    from npga.data.capture import CaptureDataset
    from npga.video import VideoWriter, to_uint8

    out: Path = args.out
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        known = ", ".join(VIDEO_CODECS)
        raise CliError(f"{out}: not a video file name (the suffix must be one of {known})")
    check_output_file(out)
    try:
        capture = CaptureDataset(args.capture, cache=False)
        camera = args.camera or capture.front_camera
        if camera not in capture.camera_names:
            names = ", ".join(capture.camera_names)
            raise CliError(f"{args.capture}: no camera {camera!r} (cameras: {names})")
        if not (capture.root / FRAMES_DIR).is_dir():  # videos decode from their start: keep it
            capture = CaptureDataset(args.capture, cameras=[camera], cache=True)
    except CaptureError as error:
        raise CliError(str(error)) from None
    width, height = capture.cameras.width, capture.cameras.height
    if codec == "libx264" and (width % 2 or height % 2):
        raise CliError(
            f"{args.capture}: frames are {width}x{height}, H.264 needs even sizes (write .webm)"
        )
    partial = out.with_name(f"{out.name}.partial{out.suffix}")  # the suffix names the container
    try:
        with (
            VideoWriter(partial, width, height, args.fps, codec=codec) as writer,
            _progress("encoding") as progress,
        ):
            task = progress.add_task("video", total=len(capture))
            for timestep in capture.timesteps:
                writer.write(to_uint8(capture.image(timestep, camera).numpy()))
                progress.advance(task)
        os.replace(partial, out)
    except CaptureError as error:
        raise CliError(str(error)) from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {len(capture)} frames of {camera} ({width}x{height}, {args.fps:g} fps) to {out}")


def _video_length(path: Path) -> int:
    import av

    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames)
    except (av.FFmpegError, IndexError) as error:
        raise CliError(f"{path}: cannot read ({error})") from None


def cmd_import_nersemble(args: argparse.Namespace) -> None:
    from npga.data.nersemble import import_nersemble, read_calibration, video_path

    try:
        serials = args.cameras or read_calibration(args.src).serials
        count = args.frames
        if count is None:
            length = _video_length(video_path(args.src, args.sequence, serials[0]))
            if length < 1:
                raise CliError("the video does not state its length: give --frames")
            count = len(range(args.start, length, args.stride))
        frames = [args.start + i * args.stride for i in range(count)]
        with _progress("decoding cameras") as progress:
            task = progress.add_task("import", total=len(serials))
            import_nersemble(
                args.src,
                args.sequence,
                args.out,
                serials=serials,
                frames=frames,
                resolution=args.resolution,
                front_camera=args.front_camera,
                test_cameras=args.test_cameras,
                test_fraction=args.test_fraction,
                on_camera=lambda done: progress.update(task, completed=done),
            )
    except CaptureError as error:
        raise CliError(str(error)) from None
    print(f"wrote {len(frames)} timesteps x {len(serials)} cameras to {args.out}")


def cmd_import_gaussian_avatars(args: argparse.Namespace) -> None:
    from npga.data.gaussian_avatars import import_gaussian_avatars

    try:
        with _progress("converting frames") as progress:
            task = progress.add_task("import", total=None)
            import_gaussian_avatars(
                args.src,
                args.out,
                resolution=args.resolution,
                on_frame=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except CaptureError as error:
        raise CliError(str(error)) from None
    print(f"wrote {args.out} (FLAME codes in codes.npz when the capture has them)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def add_commands(commands: Any) -> None:
    """Adds ``synth`` and ``data`` to the ``npga`` subparsers ``commands``."""
    synth = commands.add_parser("synth", help="render a synthetic multi-view talking-head capture")
    synth.add_argument("out", type=Path, help="capture folder to write")
    synth.add_argument(
        "--frames", type=positive_int, default=120, help="timesteps (30 per second of motion)"
    )
    synth.add_argument("--cameras", type=positive_int, default=8, help="number of cameras")
    synth.add_argument("--resolution", type=positive_int, default=256, help="image side (pixels)")
    synth.add_argument("--seed", type=int, default=0, help="seed of the expression and pose curves")
    synth.add_argument(
        "--subject", default="astronaut", help="the photograph the head is built from"
    )
    synth.add_argument(
        "--head-motion",
        choices=("rig", "wide"),
        default="rig",
        help="rig: ±18° yaw, ±10° pitch (default); wide: sweeps of ±35° yaw and ±15° pitch",
    )
    synth.add_argument("--resume", action="store_true", help="keep frames already written")
    synth.set_defaults(run=cmd_synth)

    data = commands.add_parser("data", help="capture datasets: preview, check, video, import")
    data_commands = data.add_subparsers(dest="data", required=True, metavar="ACTION")
    preview = data_commands.add_parser("preview", help="contact sheet: cameras x timesteps")
    preview.add_argument("capture", type=Path, help="capture folder (own layout)")
    preview.add_argument("--out", type=Path, required=True, help="PNG to write")
    preview.add_argument("--columns", type=positive_int, default=8, help="timesteps shown")
    preview.add_argument("--resolution", type=positive_int, default=128, help="tile width")
    preview.set_defaults(run=cmd_preview)

    video = data_commands.add_parser("video", help="one camera of a capture as a video file")
    video.add_argument("capture", type=Path, help="capture folder (own layout)")
    video.add_argument(
        "--camera", metavar="NAME", help="the camera to write (default: the front camera)"
    )
    video.add_argument(
        "--out",
        type=Path,
        required=True,
        help="video to write (.mp4, .mov, .mkv: H.264; .webm: VP9)",
    )
    video.add_argument(
        "--fps", type=positive_float, default=30.0, help="frame rate (default: 30, npga synth's)"
    )
    video.set_defaults(run=cmd_video)

    ner = data_commands.add_parser("import-nersemble", help="NeRSemble v2 raw -> own layout")
    ner.add_argument("src", type=Path, help="participant folder (calibration/, sequences/)")
    ner.add_argument("out", type=Path, help="capture folder to write")
    ner.add_argument("--sequence", required=True, help="sequence name under sequences/")
    ner.add_argument("--cameras", nargs="+", metavar="SERIAL", help="default: all calibrated")
    ner.add_argument("--start", type=int, default=0, help="first video frame")
    ner.add_argument("--stride", type=positive_int, default=1, help="keep every n-th frame")
    ner.add_argument("--frames", type=positive_int, help="timesteps to keep (default: all)")
    ner.add_argument("--resolution", type=positive_int, default=512, help="output image width")
    ner.add_argument("--front-camera", metavar="SERIAL", help="default: the rig's middle camera")
    ner.add_argument("--test-cameras", nargs="*", metavar="SERIAL", help="held-out cameras")
    ner.add_argument("--test-fraction", type=_fraction, default=0.15, help="held-out tail")
    ner.set_defaults(run=cmd_import_nersemble)

    ga = data_commands.add_parser(
        "import-gaussian-avatars", help="GaussianAvatars/VHAP (transforms_*.json) -> own layout"
    )
    ga.add_argument("src", type=Path, help="folder with transforms_{train,val,test}.json")
    ga.add_argument("out", type=Path, help="capture folder to write")
    ga.add_argument("--resolution", type=positive_int, help="output image width (default: same)")
    ga.set_defaults(run=cmd_import_gaussian_avatars)

    check = data_commands.add_parser("check", help="validate a capture folder")
    check.add_argument("capture", type=Path, help="capture folder (own layout)")
    check.set_defaults(run=cmd_check)
