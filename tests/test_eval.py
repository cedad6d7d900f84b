"""`npga eval` on a capture the avatar never saw, cross-reenactment, `npga track --avatar`, and
the sanity of the expression metric (the bundled demo avatar on a new synthetic performance of
its subject)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from npga.bundle import AvatarBundle, load_bundle
from npga.data import CaptureDataset
from npga.data.layout import CaptureCodes, frame_path, write_codes
from npga.data.synth.writer import SynthConfig, write_synth
from npga.eval.evaluate import ExpressionSetup, evaluate_split, render_timestep
from npga.eval.expression import ExpressionScore, FaceReading, read_face
from npga.eval.run import track_foreign
from npga.geometry import axis_angle_to_quat, quat_multiply
from npga.recording import load_recording
from npga.tracking.capture import CaptureTracking
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.template import FaceTemplate, load_default_template

DEMO = Path(__file__).resolve().parents[1] / "npga" / "assets" / "demo"
SPLIT_KEYS = {"psnr", "ssim", "psnr_mask", "psnr_mouth", "psnr_eyes", "flip", "expression_error",
              "expression_error_neutral", "pose_error_deg"}  # fmt: skip


def npga(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npga.cli", *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A performance of the demo avatar's subject that it never saw (seed 0 trained it)."""
    root = tmp_path_factory.mktemp("unseen") / "cap"
    write_synth(root, SynthConfig(frames=16, cameras=8, resolution=256, seed=3))
    return root


@pytest.fixture(scope="module")
def demo() -> AvatarBundle:
    return load_bundle(DEMO)


@pytest.fixture(scope="module")
def template() -> FaceTemplate:
    return load_default_template()


def test_demo_on_a_capture_it_never_saw(capture: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    done = npga("eval", str(DEMO), str(capture), "--timesteps", "3", "--fit-poses", "10",
                "--json", str(report_path), "--media", str(tmp_path / "media"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["tracking"].startswith("tracked into the avatar's expression space")
    assert 0.98 < report["rig_to_avatar_scale"] < 1.02  # the same subject, the same rig
    assert report["poses"].startswith("fitted")
    assert "not computed" in report["lpips"]
    for name in ("self_reenactment", "novel_view"):
        split = report[name]
        assert set(split) >= SPLIT_KEYS, name
        assert split["psnr"] > 22 and split["psnr_mask"] > 18, split
        assert split["psnr_mouth"] < split["psnr"]  # the hard part of a face
        assert 0 < split["flip"] < 0.5
        assert split["expression_error"] < split["expression_error_neutral"], split
        assert split["pose_error_deg"] < 5
    assert report["novel_view"]["cameras"] == ["cam_04"]
    assert "cam_04" not in report["self_reenactment"]["cameras"]
    assert "self_reenactment:" in done.stdout and "novel_view:" in done.stdout
    assert any(p.suffix == ".mp4" for p in (tmp_path / "media").iterdir())


def test_expression_error_is_zero_for_the_ground_truth(
    capture: Path, demo: AvatarBundle, template: FaceTemplate
) -> None:
    tracking, dataset, _ = track_foreign(demo, capture, template, 256)
    front = dataset.front_camera
    with FaceMeshTracker(static_images=True) as facemesh:

        def truth(t: int) -> FaceReading | None:
            return read_face(facemesh, dataset.frame(t, [front]).images[0], template)

        neutral = truth(tracking.neutral_timestep)
        assert neutral is not None
        score = ExpressionScore(neutral, neutral)
        for t in tracking.timesteps[::5]:
            reading = truth(int(t))
            score.add(reading, reading, neutral)  # the truth as its own render
    summary = score.summary()
    assert summary["expression_error"] == 0 and summary["pose_error_deg"] < 1e-3
    assert summary["expression_error_neutral"] > 0.005  # the frames do show expressions


def test_expression_error_rises_as_the_codes_shrink(
    capture: Path, demo: AvatarBundle, template: FaceTemplate
) -> None:
    tracking, dataset, _ = track_foreign(demo, capture, template, 256)
    timesteps = [int(t) for t in tracking.timesteps]
    errors = []
    for scale in (1.0, 0.4, 0.0):
        scaled = replace(tracking, codes=tracking.codes * scale)
        result = evaluate_split(
            demo.avatar.eval(), dataset, scaled, timesteps, [dataset.front_camera],
            expression=ExpressionSetup(dataset.front_camera, template),
        )  # fmt: skip
        errors.append(result.summary()["expression_error"])
    assert errors[0] < errors[1] < errors[2], errors


def test_expression_error_ignores_a_pure_change_of_head_pose(
    capture: Path, demo: AvatarBundle, template: FaceTemplate
) -> None:
    """The avatar at full codes drives the avatar at half codes: the same error whether both
    are seen at the tracked poses or both turned 14 degrees."""
    tracking, dataset, _ = track_foreign(demo, capture, template, 256)
    turn = axis_angle_to_quat(torch.tensor([[0.0, 0.25, 0.0]])).numpy()  # ~14 degrees of yaw
    turned = replace(
        tracking,
        rotation_wxyz=quat_multiply(
            torch.from_numpy(turn), torch.from_numpy(tracking.rotation_wxyz)
        ).numpy(),
    )
    camera = dataset.frame(tracking.neutral_timestep, [dataset.front_camera]).cameras
    avatar = demo.avatar.eval()
    errors = []
    with FaceMeshTracker(static_images=True) as facemesh:
        for poses in (tracking, turned):
            driver, damped = poses, replace(poses, codes=poses.codes * 0.5)

            def seen(drive: CaptureTracking, t: int) -> FaceReading | None:
                image = render_timestep(avatar, drive, t, camera)[0]
                return read_face(facemesh, image, template)

            n = tracking.neutral_timestep
            driver_n, render_n = seen(driver, n), seen(damped, n)
            assert driver_n is not None and render_n is not None
            score = ExpressionScore(driver_n, render_n)
            neutral = replace(poses, codes=np.zeros_like(poses.codes))
            for t in (int(t) for t in tracking.timesteps[::3]):
                score.add(seen(driver, t), seen(damped, t), seen(neutral, t))
            errors.append(score.summary()["expression_error"])
    assert errors[0] > 0.002  # half the expression is missing: there is an error to keep
    assert abs(errors[1] - errors[0]) < 0.25 * errors[0], errors


def test_cross_reenactment_and_track_with_the_avatars_space(capture: Path, tmp_path: Path) -> None:
    # A driver long enough for the live tracker's 30-frame neutral calibration.
    performance = tmp_path / "driver"
    write_synth(performance, SynthConfig(frames=48, cameras=3, resolution=256, seed=5))
    clip = tmp_path / "driver.mp4"
    done = npga("data", "video", str(performance), "--out", str(clip))
    assert done.returncode == 0, done.stderr
    short = tmp_path / "short.mp4"  # 16 frames
    done = npga("data", "video", str(capture), "--out", str(short))
    assert done.returncode == 0, done.stderr
    report_path = tmp_path / "cross.json"
    media = tmp_path / "media"
    done = npga("eval", str(DEMO), "--drive", str(clip), "--drive-frames", "4",
                "--json", str(report_path), "--media", str(media))  # fmt: skip
    assert done.returncode == 0, done.stderr
    cross = json.loads(report_path.read_text())["cross_reenactment"]
    assert cross["frames"] == 4
    assert cross["expression_error"] < cross["expression_error_neutral"], cross
    assert cross["pose_error_deg"] < 8, cross
    assert (media / "cross_reenactment.mp4").stat().st_size > 0

    codes = tmp_path / "codes.npz"
    done = npga("track", str(clip), "--avatar", str(DEMO), "--out", str(codes))
    assert done.returncode == 0, done.stderr
    recording = load_recording(codes)
    assert recording.expression_dim == load_bundle(DEMO).config.expression_dim
    video = tmp_path / "driven.mp4"
    done = npga("render", str(DEMO), "--codes", str(codes), "--out", str(video),
                "--frames", "3", "--resolution", "128")  # fmt: skip
    assert done.returncode == 0, done.stderr and video.stat().st_size > 0
    both = npga("track", str(clip), "--avatar", str(DEMO), "--basis", "b.json", "--out", "x.npz")
    assert both.returncode == 2 and "--avatar and --basis" in both.stderr
    too_short = npga("eval", str(DEMO), "--drive", str(short))
    assert too_short.returncode == 2 and "calibrates its neutral on the first" in too_short.stderr


def test_bad_inputs_are_one_line_errors(capture: Path, tmp_path: Path) -> None:
    flame = tmp_path / "flame"
    shutil.copytree(capture, flame)
    timesteps = np.arange(16, dtype=np.int64)
    write_codes(flame, CaptureCodes(timesteps, np.tile([1.0, 0, 0, 0], (16, 1)).astype(np.float32),
                                    np.zeros((16, 3), np.float32),
                                    np.zeros((16, 100), np.float32), "flame"))  # fmt: skip
    wrong_space = npga("eval", str(DEMO), str(flame), "--timesteps", "1", "--no-flip")
    assert wrong_space.returncode == 2 and "'flame' expression space" in wrong_space.stderr

    faceless = tmp_path / "faceless"
    shutil.copytree(capture, faceless)
    front = CaptureDataset(capture).front_camera
    for t in timesteps:
        path = frame_path(faceless, int(t), front)
        with Image.open(path) as image:
            size = image.size
        Image.new("RGB", size, "white").save(path)
    no_face = npga("eval", str(DEMO), str(faceless), "--timesteps", "1", "--no-flip")
    assert no_face.returncode == 2 and "no face in the front camera" in no_face.stderr

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    undecodable = npga("eval", str(DEMO), "--drive", str(broken))
    assert undecodable.returncode == 2 and "broken.mp4" in undecodable.stderr

    nothing = npga("eval", str(DEMO))
    assert nothing.returncode == 2 and "--drive" in nothing.stderr
    for result in (wrong_space, no_face, undecodable, nothing):
        err = result.stderr.strip()
        errors = [line for line in err.splitlines() if line.startswith("npga: error:")]
        assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err


def test_a_capture_is_told_from_another_performance_of_its_rig(
    capture: Path, tmp_path: Path
) -> None:
    """A bundle knows its training capture by a fingerprint; another seed of the same rig has
    the same cameras.json and splits.json, and must not pass for it."""
    other = tmp_path / "other"
    write_synth(other, SynthConfig(frames=16, cameras=8, resolution=256, seed=4))
    assert (other / "cameras.json").read_bytes() == (capture / "cameras.json").read_bytes()
    mine = CaptureDataset(capture).fingerprint()
    assert CaptureDataset(other).fingerprint() != mine
    assert CaptureDataset(capture, resolution=128).fingerprint() == mine  # any loaded size
    moved = tmp_path / "moved"
    shutil.copytree(capture, moved)
    assert CaptureDataset(moved).fingerprint() == mine  # not its path
