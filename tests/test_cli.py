"""The ``npga`` command line: real bundles, real videos, clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from npga.cli import build_parser as npga_parser
from npga.cli import main
from npga.cli_args import DefaultsHelpFormatter
from npga.recording import CodeRecording, load_recording, synthetic_recording
from telepresence.cli import build_parser as telepresence_parser

DEMO = str(Path(__file__).resolve().parent.parent / "npga" / "assets" / "demo")


def _npga(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npga.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "avatar"
    assert main(["make-avatar", str(out), "--gaussians", "3000", "--expression-dim", "16"]) == 0
    return out


def test_info_prints_a_json_summary(avatar_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(avatar_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gaussians"] == 3000
    assert info["expression_dim"] == 16


def test_render_writes_a_video_that_changes_with_the_codes(
    avatar_dir: Path, tmp_path: Path
) -> None:
    codes = tmp_path / "codes.npz"
    assert main(["make-codes", str(codes), "--avatar", str(avatar_dir), "--seconds", "0.5"]) == 0
    out = tmp_path / "out.mp4"
    args = ["render", str(avatar_dir), "--codes", str(codes), "--out", str(out)]
    assert main([*args, "--resolution", "96", "--camera", "orbit", "--frames", "6"]) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6
    assert frames[0].shape == (96, 96, 3)
    assert (frames[0] < 200).mean() > 0.1  # a head on the white background
    assert np.abs(frames[0].astype(int) - frames[5].astype(int)).mean() > 0.5  # it moves


def test_bench_render_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "render", "--gaussians", "2000", "--resolution", "64", "--frames", "3"]
    assert main([*args, "--json", "--compare-naive"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("ms_p50", "ms_p95", "fps", "deform", "rasterize", "naive", "speedup_vs_naive"):
        assert key in report, key
    assert report["deform"]["ms_p50"] > 0 and report["rasterize"]["ms_p50"] > 0
    assert report["coverage"] > 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "/nonexistent/avatar"], "not an avatar bundle directory"),
        (["bench", "render", "--gaussians", "-5"], "expected a positive integer"),
        (["bench", "render", "--device", "tpu"], "device"),
        (["render"], "the following arguments are required"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(args: list[str], message: str) -> None:
    result = _npga(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_render_refuses_codes_of_another_space(avatar_dir: Path, tmp_path: Path) -> None:
    codes = tmp_path / "codes.npz"
    synthetic_recording(7, seconds=0.2).save(codes)
    result = _npga(
        "render", str(avatar_dir), "--codes", str(codes), "--out", str(tmp_path / "x.mp4")
    )
    assert result.returncode == 2
    assert "codes have 7 dims but the avatar's expression space has 16" in result.stderr


def test_render_refuses_a_corrupt_recording(avatar_dir: Path, tmp_path: Path) -> None:
    codes = tmp_path / "codes.npz"
    codes.write_bytes(b"PK\x03\x04garbage")
    result = _npga(
        "render", str(avatar_dir), "--codes", str(codes), "--out", str(tmp_path / "x.mp4")
    )
    assert result.returncode == 2
    assert "not a readable .npz code recording" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_recording_round_trip_and_validation(tmp_path: Path) -> None:
    recording = synthetic_recording(12, seconds=1.0, fps=25)
    path = tmp_path / "r.npz"
    recording.save(path)
    loaded = load_recording(path)
    assert loaded.num_frames == 25 and abs(loaded.fps() - 25) < 1e-6
    np.testing.assert_array_equal(loaded.codes, recording.codes)
    bad = recording.codes.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="'codes' contains NaN"):
        CodeRecording(
            bad,
            recording.rotation_wxyz,
            recording.translation,
            recording.timestamps,
            recording.gaze,
            recording.face_present,
        )
    np.savez(tmp_path / "missing.npz", codes=recording.codes)
    with pytest.raises(ValueError, match="missing array 'rotation_wxyz'"):
        load_recording(tmp_path / "missing.npz")
    arrays = (recording.codes, recording.rotation_wxyz, recording.translation)
    arrays += (recording.timestamps, recording.gaze, recording.face_present)
    with pytest.raises(ValueError, match=r"^the recording holds no frames$"):
        CodeRecording(*(array[:0] for array in arrays))
    backwards = recording.timestamps[::-1].copy()
    with pytest.raises(ValueError, match="'timestamps' goes backwards"):
        CodeRecording(*arrays[:3], backwards, *arrays[4:])


def test_render_camera_front_is_frontal_and_centred(tmp_path: Path) -> None:
    from npga.bundle import DEMO_AVATAR_DIR, load_bundle

    frames, dim = 3, load_bundle(DEMO_AVATAR_DIR).config.expression_dim
    still = CodeRecording(
        np.zeros((frames, dim), np.float32),
        np.tile(np.array([1, 0, 0, 0], np.float32), (frames, 1)),  # no head rotation
        np.zeros((frames, 3), np.float32),
        np.arange(frames) / 30.0,
        np.zeros((frames, 4), np.float32),
        np.ones(frames, bool),
    )
    still.save(tmp_path / "still.npz")
    out = tmp_path / "front.mp4"
    args = ["render", str(DEMO_AVATAR_DIR), "--codes", str(tmp_path / "still.npz")]
    assert main([*args, "--out", str(out), "--resolution", "96", "--camera", "front"]) == 0
    with av.open(str(out)) as container:
        image = next(iter(container.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    head = np.abs(image - image[0, 0]).sum(axis=2) > 60  # [H, W]: not the background
    columns = np.flatnonzero(head.any(axis=0))
    assert abs((columns.min() + columns.max()) / 2 - 47.5) < 0.05 * 96  # centred left-right
    assert (head == head[:, ::-1]).mean() > 0.9  # seen straight on: left and right mirror
    assert head[:5].sum() == 0  # the top of the head inside the image


def test_track_a_video_fits_a_basis_and_writes_codes(tmp_path: Path) -> None:
    from npga.tracking import ExpressionBasis
    from npga.tracking.bench import synth_face_video
    from npga.video import VideoWriter

    video = tmp_path / "face.mp4"
    with VideoWriter(video, 640, 480, 30) as writer:
        for frame in synth_face_video(60):
            writer.write(frame)
    out, basis = tmp_path / "codes.npz", tmp_path / "basis.json"
    args = ["track", str(video), "--out", str(out), "--fit-basis", str(basis)]
    result = _npga(*args, "--expression-dim", "8")
    assert result.returncode == 0, result.stderr
    assert "face detected in 60 (100.0 %)" in result.stdout
    recording = load_recording(out)
    assert recording.num_frames == 60 and recording.expression_dim == 8
    assert recording.face_present[40:].all()
    # the head turns by up to 12 degrees in this video; the pose follows
    angles = 2 * np.degrees(np.arccos(np.clip(np.abs(recording.rotation_wxyz[:, 0]), 0, 1)))
    assert angles.max() > 5
    assert ExpressionBasis.load(basis).dim == 8
    again = _npga("track", str(video), "--out", str(tmp_path / "b.npz"), "--basis", str(basis))
    assert again.returncode == 0, again.stderr

    too_few = _npga(
        "track", str(video), "--out", str(tmp_path / "d.npz"), "--expression-dim", "200"
    )
    assert too_few.returncode == 2, too_few.stderr
    assert "fitting a 200-dim basis needs at least 200" in too_few.stderr
    assert "smaller --expression-dim with --resume" in too_few.stderr
    smaller = _npga("track", str(video), "--out", str(tmp_path / "d.npz"), "--expression-dim", "8",
                    "--resume")  # fmt: skip
    assert smaller.returncode == 0, smaller.stderr
    nowhere = _npga("track", str(video), "--out", str(tmp_path / "no" / "e.npz"))
    assert nowhere.returncode == 2 and "its folder does not exist" in nowhere.stderr


def test_output_paths_are_checked_before_the_work(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "out")
    codes = tmp_path / "codes.npz"
    assert _npga("make-codes", str(codes), "--avatar", DEMO, "--seconds", "1").returncode == 0
    cases = [
        (["make-codes", missing + ".npz"], "out.npz: its folder does not exist"),
        (["render", DEMO, "--codes", str(codes), "--out", str(tmp_path)],
         ": is a folder; give a file name"),
        (["oracle", DEMO, str(tmp_path), "--json", missing + ".json"],
         "out.json: its folder does not exist"),
        (["eval", DEMO, str(tmp_path), "--json", missing + ".json"],
         "out.json: its folder does not exist"),
    ]  # fmt: skip
    for args, message in cases:
        result = _npga(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert result.stderr.strip().count("\n") == 0, result.stderr


def test_track_reports_bad_inputs_in_one_line(tmp_path: Path) -> None:
    missing = _npga("track", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "c.npz"))
    assert missing.returncode == 2 and "no such file, folder or camera index" in missing.stderr
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all")
    bad = _npga("track", str(garbage), "--out", str(tmp_path / "c.npz"))
    assert bad.returncode == 2 and "cannot open as a video" in bad.stderr
    camera = _npga("track", "7", "--out", str(tmp_path / "c.npz"))
    assert camera.returncode == 2 and "camera 7: cannot open" in camera.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = _npga("track", str(empty), "--out", str(tmp_path / "c.npz"))
    assert folder.returncode == 2 and "no images" in folder.stderr


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, child in action.choices.items():
                yield from _parsers(child, f"{name} {command}")


@pytest.mark.parametrize(
    ("build", "command"), [(npga_parser, "npga train"), (telepresence_parser, "telepresence serve")]
)
def test_every_option_has_help_and_shows_its_default(
    build: Callable[[], argparse.ArgumentParser], command: str
) -> None:
    parsers = dict(_parsers(build(), build().prog))
    for name, parser in parsers.items():
        assert parser.formatter_class is DefaultsHelpFormatter, name
        for action in parser._actions:
            if action.option_strings and "-h" not in action.option_strings:
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
    assert "(default: " in parsers[command].format_help()


def test_ctrl_c_interrupts_where_the_parent_blocked_and_ignored_it() -> None:
    """A job started by a server whose runner blocks SIGINT (some CI runners do, and children
    inherit the mask) must still checkpoint and stop on the server's Ctrl-C."""
    child = (
        "import os, signal, time\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from npga.cli_args import make_interruptible\n"
        "make_interruptible()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted"
