"""Training end to end on a tiny synthetic capture: quality rises, resume is exact, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from npga.bundle import load_bundle
from npga.data import CaptureDataset
from npga.data.synth.head import PARAMETERS
from npga.data.synth.writer import SynthConfig, write_synth
from npga.eval.evaluate import evaluate
from npga.eval.synth_oracle import load_truth, oracle_report
from npga.geometry import quat_to_rotmat
from npga.tracking.capture import CaptureTracking, detect_landmarks, track_capture
from npga.tracking.expression import ExpressionBasis
from npga.tracking.template import load_default_template
from npga.train import DensifyStrategy, TrainConfig, Trainer
from npga.train.checkpoint import has_checkpoint

RESOLUTION = 128
EXPRESSION_DIM = 8


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capture") / "cap"
    write_synth(root, SynthConfig(frames=36, cameras=4, resolution=RESOLUTION, seed=1))
    return root


@pytest.fixture(scope="module")
def tracking(capture: Path) -> CaptureTracking:
    dataset = CaptureDataset(capture)
    landmarks, found = detect_landmarks(
        lambda t, c: (dataset.image(t, c).numpy() * 255 + 0.5).astype(np.uint8),
        dataset.timesteps,
        dataset.camera_names,
    )
    return track_capture(
        landmarks, found, dataset.timesteps, dataset.splits.train_timesteps, dataset.cameras,
        dataset.camera_names.index(dataset.front_camera), load_default_template(), EXPRESSION_DIM,
    )  # fmt: skip


def small_config(iterations: int) -> TrainConfig:
    return TrainConfig(
        iterations=iterations,
        resolution=RESOLUTION,
        initial_gaussians=3000,
        expression_dim=EXPRESSION_DIM,
        feature_dim=8,
        hidden_dim=32,
        checkpoint_every=iterations,
        densify=DensifyStrategy(refine_start=40, refine_stop=iterations, refine_every=40,
                                max_gaussians=5000),
    )  # fmt: skip


def test_tracking_recovers_the_rig(capture: Path, tracking: CaptureTracking) -> None:
    """Poses come from triangulation: compare with the synthetic rig's ground truth."""
    with np.load(capture / "rig.npz") as rig:
        truth_landmarks = rig["landmarks_world"]  # [T, L, 3]
    assert tracking.detection_rate >= 0.95
    assert 0.07 < tracking.face_unit_metres < 0.11
    rotation = torch.from_numpy(tracking.rotation_wxyz)
    translation = torch.from_numpy(tracking.translation)
    canonical = torch.from_numpy(tracking.neutral_landmarks)
    posed = canonical[None] @ quat_to_rotmat(rotation).transpose(1, 2) + translation[:, None]
    rigid = list(load_default_template().weights > 0.5)
    truth = torch.from_numpy(truth_landmarks[tracking.timesteps]).float()
    error = (posed[:, rigid] - truth[:, rigid]).norm(dim=-1)  # rigid landmarks only
    assert float(error.median()) < 0.012  # metres (Face Mesh is off by 2-5 px on these renders)
    # The live path: the front camera's codes, calibrated, are nearer the multi-view codes on
    # the held-out timesteps than the raw monocular ones.
    held_out = [tracking.index(t) for t in CaptureDataset(capture).splits.test_timesteps]
    raw = np.abs(tracking.monocular_codes[held_out] - tracking.codes[held_out]).mean()
    calibrated = np.abs(tracking.live_codes()[held_out] - tracking.codes[held_out]).mean()
    assert calibrated < 0.8 * raw


def test_training_raises_held_out_psnr(
    capture: Path, tracking: CaptureTracking, tmp_path: Path
) -> None:
    dataset = CaptureDataset(capture)
    trainer = Trainer(small_config(300), dataset, tracking, tmp_path)
    before = evaluate(trainer.avatar, dataset, tracking)["self_reenactment"]["psnr"]
    trainer.run()
    assert trainer.avatar.num_gaussians > 3000  # densification grew it
    after = evaluate(trainer.avatar, dataset, tracking)["self_reenactment"]["psnr"]
    assert after > before + 4.0, (before, after)


def test_resume_matches_an_uninterrupted_run(
    capture: Path, tracking: CaptureTracking, tmp_path: Path
) -> None:
    dataset = CaptureDataset(capture)
    config = replace(small_config(80), checkpoint_every=40)  # refines at 40: inside the cut
    straight = Trainer(config, dataset, tracking, tmp_path / "straight")
    straight.run()

    interrupted = Trainer(config, dataset, tracking, tmp_path / "resumed")
    while interrupted.step < 50:  # past the checkpoint at 40, then "killed"
        interrupted.train_step()
        if interrupted.step == 40:
            interrupted.save_checkpoint()
    resumed = Trainer(config, dataset, tracking, tmp_path / "resumed", resume=True)
    assert resumed.step == 40
    resumed.run()
    a, b = straight.avatar.state_dict(), resumed.avatar.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_a_wall_time_interval_checkpoints_between_step_intervals(
    capture: Path, tracking: CaptureTracking, tmp_path: Path
) -> None:
    dataset = CaptureDataset(capture)
    config = replace(small_config(3), checkpoint_every=1000)
    Trainer(config, dataset, tracking, tmp_path / "steps").run()
    assert not has_checkpoint(tmp_path / "steps")  # no step interval reached
    Trainer(config, dataset, tracking, tmp_path / "timed").run(checkpoint_seconds=0.0)
    resumed = Trainer(config, dataset, tracking, tmp_path / "timed", resume=True)
    assert resumed.step == 3  # a checkpoint after every step: the last one is the third


def test_resume_refuses_other_settings(
    capture: Path, tracking: CaptureTracking, tmp_path: Path
) -> None:
    dataset = CaptureDataset(capture)
    trainer = Trainer(small_config(10), dataset, tracking, tmp_path)
    trainer.train_step()
    trainer.save_checkpoint()
    with pytest.raises(ValueError, match="other settings"):
        Trainer(small_config(20), dataset, tracking, tmp_path, resume=True)


def npga(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npga.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_train_and_eval_cli(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "avatar"
    common = ["--out", str(out), "--resolution", str(RESOLUTION), "--gaussians", "2000",
              "--expression-dim", str(EXPRESSION_DIM)]  # fmt: skip
    done = npga("train", str(capture), *common, "--iters", "30", "--checkpoint-every", "10")
    assert done.returncode == 0, done.stderr
    # no terminal (a log file, a job): progress still shows, as plain lines
    lines = [line for line in done.stderr.splitlines() if line.startswith("training: step ")]
    assert len(lines) == 30 and lines[-1].startswith("training: step 30/30"), done.stderr
    assert "it/s" in lines[-1] and "min left" in lines[-1]
    bundle = load_bundle(out)
    assert bundle.summary["iterations"] == 30
    assert bundle.summary["test"]["psnr"] > 10
    assert str(capture.parent) not in (out / "avatar.json").read_text()  # no build paths
    encoder = bundle.expression_encoder()  # a live sender can drive it
    assert encoder.dim == EXPRESSION_DIM

    again = npga("train", str(capture), *common, "--iters", "30")
    assert again.returncode == 2 and "--resume" in again.stderr

    report_path = tmp_path / "report.json"
    media = tmp_path / "media"
    done = npga("eval", str(out), str(capture), "--json", str(report_path), "--media", str(media))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert set(report["self_reenactment"]["per_camera"]) == {"cam_00", "cam_01", "cam_02", "cam_03"}
    assert report["novel_view"]["cameras"] == CaptureDataset(capture).splits.test_cameras
    assert report["self_reenactment"]["psnr_mask"] is not None
    assert sorted(p.suffix for p in media.iterdir()).count(".mp4") >= 2
    assert any(p.name.startswith("self_test_t") for p in media.iterdir())
    assert report["poses"] == "tracked" and report["codes"].startswith("multi-view")

    fitted_path = tmp_path / "fitted.json"
    done = npga("eval", str(out), str(capture), "--json", str(fitted_path), "--fit-poses", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads(fitted_path.read_text())["poses"].startswith("fitted")

    fitted_poses = (out / "tracking_fitted.npz").read_bytes()
    live_path = tmp_path / "live.json"
    done = npga("eval", str(out), str(capture), "--json", str(live_path), "--codes", "monocular",
                "--fit-poses", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(live_path.read_text())["codes"].startswith("monocular")
    assert (out / "tracking_fitted.npz").read_bytes() == fitted_poses  # what the oracle reads

    oracle_path = tmp_path / "oracle.json"
    done = npga("oracle", str(out), str(capture), "--poses", "fitted", "--every", "4",
                "--json", str(oracle_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    oracle = json.loads(oracle_path.read_text())
    assert oracle["poses"].startswith("fitted")
    assert {"train", "test"} <= set(oracle)
    for split in ("train", "test"):
        assert 0 < oracle[split]["pose_error_mm"] < 50
        assert oracle[split]["neutral_head_at_true_poses_psnr"] > 20

    # Codes in another basis (a capture tracked again) would drive other expressions: refused.
    basis = ExpressionBasis.load(out / "basis.json")
    signs = np.ones(basis.dim)
    signs[1] = -1.0
    replace(basis, components=basis.components * signs[:, None]).save(out / "basis.json")
    refused = npga("eval", str(out), str(capture))
    assert refused.returncode == 2, refused.stderr
    assert "expression basis is not the avatar's" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_oracle_of_the_true_poses_is_exact(capture: Path, tracking: CaptureTracking) -> None:
    """Given the rig's own poses, the oracle finds no pose error and re-renders the capture."""
    rig = np.load(capture / "rig.npz")
    rows = tracking.timesteps
    true_poses = replace(
        tracking,
        rotation_wxyz=rig["head_rotation_wxyz"][rows],
        translation=rig["head_translation"][rows],
    )
    report = oracle_report(capture, CaptureDataset(capture), true_poses, every=6)
    for split in ("train", "test"):
        assert report[split]["pose_error_mm"] < 0.01
        assert report[split]["true_head_at_poses_psnr"] > 40  # only PNG rounding
        neutral = report[split]["neutral_head_at_true_poses_psnr"]
        assert 20 < neutral < report[split]["true_head_at_poses_psnr"] - 5
        by_parameter = report[split]["expression_mse_by_parameter"]
        assert tuple(by_parameter) == PARAMETERS
        assert min(by_parameter.values()) >= 0
        # The neutral head errs by at least what its largest single parameter explains.
        assert max(by_parameter.values()) < 10 ** (-neutral / 10)
        assert max(by_parameter.values()) > 1e-5
    tracked = oracle_report(capture, CaptureDataset(capture), tracking, every=6)
    assert tracked["train"]["pose_error_mm"] > 0.1  # Face Mesh is not the rig


def test_tracking_without_the_live_calibration_is_a_clear_error(
    tracking: CaptureTracking, tmp_path: Path
) -> None:
    """A run tracked before the calibration existed (no monocular codes) names what is missing."""
    tracking.save(tmp_path)
    with np.load(tmp_path / "tracking.npz") as data:
        arrays = {k: data[k] for k in data.files if k not in ("monocular_codes", "calibration")}
    np.savez(tmp_path / "tracking.npz", **arrays)
    with pytest.raises(ValueError, match=r"unreadable capture tracking.*monocular_codes") as error:
        CaptureTracking.load(tmp_path)
    assert "\n" not in str(error.value) and "tracking.npz" in str(error.value)


def test_only_the_avatars_own_tracking_drives_it(tracking: CaptureTracking) -> None:
    basis = tracking.basis.landmark_basis() * tracking.face_unit_metres  # what training stores
    template = tracking.neutral_landmarks
    tracking.check_drives(basis.astype(np.float32), template)
    flipped = basis.copy()
    flipped[0] *= -1.0
    with pytest.raises(ValueError, match="expression basis is not the avatar's"):
        tracking.check_drives(flipped, template)
    with pytest.raises(ValueError, match=r"expression basis is \[8, 478, 3\], the avatar's"):
        tracking.check_drives(basis[:4], template)
    with pytest.raises(ValueError, match=r"neutral landmarks are 1.00 mm off"):
        tracking.check_drives(basis, template + np.array([0.0, 0.001, 0.0], dtype=np.float32))


def test_oracle_needs_a_synthetic_capture(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a synthetic capture"):
        load_truth(tmp_path)


def test_cli_errors_are_one_line(capture: Path, tmp_path: Path) -> None:
    missing = npga("train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a"))
    assert missing.returncode == 2 and "capture folder missing" in missing.stderr
    no_checkpoint = npga("train", str(capture), "--out", str(tmp_path / "b"), "--resume")
    assert no_checkpoint.returncode == 2 and "no training checkpoint" in no_checkpoint.stderr
    bad_iters = npga("train", str(capture), "--out", str(tmp_path / "c"), "--iters", "0")
    assert bad_iters.returncode == 2 and "positive integer" in bad_iters.stderr
    not_trained = npga("eval", str(tmp_path / "nothing"), str(capture))
    assert not_trained.returncode == 2 and "not an avatar bundle" in not_trained.stderr
    for result in (missing, no_checkpoint, not_trained):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
