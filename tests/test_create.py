"""``npga create`` end to end on synthetic clips: the avatar learns, resume is exact, real-world
files decode, one person is kept, and bad input gets one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clips import (
    front_frames,
    other_person,
    write_out_of_order,
    write_rotated_mp4,
    write_video,
    write_webm,
)
from npga.bundle import load_bundle
from npga.cli import main
from npga.create import CreateConfig, CreateError, create_avatar
from npga.create.observe import observe_clip
from npga.data import CaptureDataset
from npga.data.synth.writer import SynthConfig, write_synth
from npga.tracking.sources import VideoFileSource

RESOLUTION = 128
FRAMES = 150  # 5 s at 30 fps


class Recorder:
    """A Progress that keeps what it was told, and can interrupt a stage."""

    def __init__(self, interrupt: tuple[str, int] | None = None) -> None:
        self.lines: list[str] = []
        self.interrupt = interrupt

    def stage(self, name: str, total: int | None) -> Callable[[int, str], None]:
        def update(completed: int, info: str) -> None:
            if (
                self.interrupt
                and name.endswith(self.interrupt[0])
                and completed >= self.interrupt[1]
            ):
                raise KeyboardInterrupt

        return update

    def say(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic wide-motion performance seen by three cameras (-45, 0 and 45 degrees)."""
    root = tmp_path_factory.mktemp("synth") / "cap"
    write_synth(root, SynthConfig(frames=FRAMES, cameras=3, resolution=RESOLUTION, seed=3,
                                  head_motion="wide"))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def performance(rig: Path) -> list[np.ndarray]:
    """The rig's front camera: FRAMES RGB frames."""
    return front_frames(rig)


@pytest.fixture(scope="module")
def two_people_clip(performance: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory):
    """Shots that alternate between the performer (4 s in all) and another person (1 s)."""
    frames = [
        other_person(f) if 45 <= i < 60 or 105 <= i < 120 else f for i, f in enumerate(performance)
    ]
    return write_video(tmp_path_factory.mktemp("clips") / "two_people.mp4", frames)


def tiny(**overrides: int) -> CreateConfig:
    settings = dict(
        quality="fast", resolution=96, expression_dim=8, hull_frames=8, iterations=300,
        train_frames=40, test_frames=4, fit_pose_steps=5,
    )  # fmt: skip
    settings.update(overrides)
    return CreateConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def created(two_people_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("created") / "me"
    progress = Recorder()
    report = create_avatar(
        two_people_clip, out, out.with_name("me.work"), tiny(), torch.device("cpu"), progress
    )
    return out, report, progress


@pytest.mark.slow
def test_create_learns_the_person_and_keeps_one(created) -> None:
    out, report, progress = created
    start, end = report["held_out_at_start"], report["held_out"]
    assert end["psnr"] > start["psnr"] + 3.0, (start, end)
    assert end["psnr_mask"] > start["psnr_mask"] + 3.0, (start, end)
    assert report["people_seen"] == 2
    assert report["frames_per_person"][0] > 3 * report["frames_per_person"][1]
    assert any("2 people seen" in line for line in progress.lines), progress.lines
    assert report["shots"] >= 5  # four cuts between the two people
    for key in ("psnr", "psnr_mask", "ssim"):
        assert np.isfinite(report["held_out"][key])
    assert report["frames_used"] == 40 and report["seconds"] > 0
    assert len(report["training_frames"]) == 40 and len(report["held_out_frames"]) == 4
    assert min(report["held_out_frames"]) > max(report["training_frames"])  # the clip's end
    assert end["expression_error"] > 0 and end["expression_error_neutral"] > 0
    assert end["expression_frames"] + end["expression_frames_without_face"] == 4
    assert set(report["stage_seconds"]) >= {"decode_and_observe", "training", "evaluation"}
    bundle = load_bundle(out)  # what `telepresence serve --avatar` and `npga render` load
    assert bundle.default_camera.width == 96
    assert (out / "preview.png").is_file() and (out / "preview.mp4").is_file()
    # The other person's frames are not in the capture.
    capture = CaptureDataset(out.with_name("me.work") / "capture")
    assert not set(capture.timesteps) & (set(range(45, 60)) | set(range(105, 120)))


@pytest.mark.slow
def test_create_resumes_exactly(two_people_clip: Path, created, tmp_path: Path) -> None:
    out, work = tmp_path / "me", tmp_path / "me.work"
    with pytest.raises(CreateError, match="--resume"):
        create_avatar(two_people_clip, out, work, tiny(), torch.device("cpu"),
                      Recorder(interrupt=("training", 120)))  # fmt: skip
    assert not out.exists()  # no half-written avatar
    create_avatar(two_people_clip, out, work, tiny(), torch.device("cpu"), Recorder(), resume=True)
    resumed = load_file(str(out / "avatar.safetensors"))
    uninterrupted = load_file(str(created[0] / "avatar.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_novel_views_of_a_created_avatar(created, rig: Path, tmp_path: Path, capsys) -> None:
    out = created[0]
    report_path = tmp_path / "views.json"
    argv = ["eval-views", str(out), str(rig), "--cameras", "cam_00", "cam_02", "--timesteps", "4"]
    assert main([*argv, "--fit-poses", "5", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["timesteps"] >= 3 and report["fit_camera"] == "cam_01"
    novel, fitted = report["novel_view"], report["fit_view"]
    assert novel["images"] == 2 * report["timesteps"]
    # 45 degrees off the only view it saw: worse than that view, far better than nothing there.
    assert 12.0 < novel["psnr"] < fitted["psnr"], report
    assert main(["eval-views", str(out), str(rig), "--cameras", "cam_09"]) == 2
    assert "no camera 'cam_09'" in capsys.readouterr().err

    # npga eval on the capture npga create made: the run's own tracking, not a re-track
    own_path = tmp_path / "own.json"
    capture = out.with_name("me.work") / "capture"
    assert main(["eval", str(out), str(capture), "--no-flip", "--json", str(own_path)]) == 0
    own = json.loads(own_path.read_text())
    assert own["tracking"].startswith("the avatar's training run"), own["tracking"]
    assert own["self_reenactment"]["psnr"] > 15


def test_observing_resumes_where_it_stopped(two_people_clip: Path, tmp_path: Path) -> None:
    whole = observe_clip(VideoFileSource(two_people_clip), tmp_path / "whole.npz", resume=False)

    def stop_at_40(frame: int) -> None:
        if frame == 40:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "obs.npz"
    with pytest.raises(KeyboardInterrupt):
        observe_clip(
            VideoFileSource(two_people_clip), checkpoint, resume=False, on_frame=stop_at_40
        )
    resumed = observe_clip(VideoFileSource(two_people_clip), checkpoint, resume=True)
    assert resumed.complete and resumed.frames == whole.frames == FRAMES
    np.testing.assert_array_equal(resumed.face_frame, whole.face_frame)
    np.testing.assert_array_equal(resumed.face_points, whole.face_points)
    np.testing.assert_array_equal(resumed.face_colour, whole.face_colour)


def test_a_run_is_not_resumed_with_other_options(two_people_clip: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    with pytest.raises(CreateError, match="no run to resume"):
        create_avatar(two_people_clip, tmp_path / "a", work, tiny(), torch.device("cpu"),
                      Recorder(), resume=True)  # fmt: skip


def _observed_frames(path: Path, tmp_path: Path) -> tuple[int, list[tuple[int, int]], np.ndarray]:
    source = VideoFileSource(path)
    clip = observe_clip(source, tmp_path / "obs.npz", resume=False)
    sizes = [f.rgb.shape[:2] for f in source.frames()]
    return clip.frames, sizes, clip.timestamps


def test_a_rotated_phone_clip_comes_out_upright(performance, tmp_path: Path) -> None:
    """A portrait clip stored landscape with a 90-degree display rotation (as phones do)."""
    path = write_rotated_mp4(tmp_path / "portrait.mp4", [f[:, 16:-16] for f in performance[:20]])
    count, sizes, _ = _observed_frames(path, tmp_path)
    assert count == 20 and sizes[0] == (RESOLUTION, RESOLUTION - 32)  # portrait again
    clip = observe_clip(VideoFileSource(path), tmp_path / "o2.npz", resume=False)
    upright_face = clip.face_points[0]
    assert upright_face[152, 1] > upright_face[10, 1]  # chin below forehead: not on its side


def test_a_browser_webm_decodes(performance, tmp_path: Path) -> None:
    path = write_webm(tmp_path / "recording.webm", performance[:20])
    count, _, timestamps = _observed_frames(path, tmp_path)
    assert count == 20 and np.all(np.diff(timestamps) > 0)


def test_out_of_order_timestamps_are_put_in_order(performance, tmp_path: Path) -> None:
    """B-frames muxed with their decode times as presentation times: frames come out in display
    order, their timestamps do not."""
    path = write_out_of_order(tmp_path / "bframes.mkv", performance[:24])
    with av.open(str(path)) as container:
        raw = [f.time for f in container.decode(container.streams.video[0])]
    assert np.any(np.diff(raw) < 0), raw  # the file really is out of order
    count, _, timestamps = _observed_frames(path, tmp_path)
    assert count == 24 and np.all(np.diff(timestamps) > 0)


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["create", *argv]) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("npga: error:")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def test_bad_videos_get_one_line(
    performance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "avatar")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "cannot open as a video" in _cli_error(capsys, str(text), "--out", out)
    noise = np.random.default_rng(0).integers(0, 255, (100, 64, 64, 3), dtype=np.uint8)
    blank = write_video(tmp_path / "noface.mp4", list(noise))
    assert "no face found" in _cli_error(
        capsys, str(blank), "--out", out, "--work", str(tmp_path / "w1")
    )
    short = write_video(tmp_path / "short.mp4", performance[:30])
    assert "1.0 s long" in _cli_error(
        capsys, str(short), "--out", out, "--work", str(tmp_path / "w2")
    )
    whole = write_video(tmp_path / "whole.mp4", performance[:60])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    err = _cli_error(capsys, str(truncated), "--out", out, "--work", str(tmp_path / "w3"))
    assert "truncated" in err
    assert "no such file" in _cli_error(capsys, str(tmp_path / "missing.mp4"), "--out", out)
    assert not (tmp_path / "avatar").exists()
    assert not any((tmp_path / f"w{i}").exists() for i in (1, 2, 3))  # nothing left behind


def test_output_paths_are_checked_first(performance, tmp_path: Path, capsys) -> None:
    clip = write_video(tmp_path / "clip.mp4", performance[:10])
    err = _cli_error(capsys, str(clip), "--out", str(tmp_path / "no" / "such" / "avatar"))
    assert "no such directory" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert "not an avatar" in _cli_error(capsys, str(clip), "--out", str(taken))


def test_the_head_mask_keeps_head_and_neck_not_shoulders() -> None:
    from npga.create.masks import CHIN, neck_cut
    from npga.tracking.expression import canonicalize
    from npga.tracking.template import load_default_template

    template = load_default_template()
    points = template.points * 40.0 + np.array([128.0, 110.0, 0.0])  # upright, 40 px per unit
    pose, _ = canonicalize(points, template)
    cut = neck_cut((256, 256), points, pose)
    chin_x, chin_y = points[CHIN, :2]
    assert cut[int(chin_y) - 60, int(chin_x)] == 1.0  # the face
    assert cut[int(chin_y) - 30, int(chin_x) + 70] == 1.0  # beside the cheek: hair, ears
    assert cut[int(chin_y) + 5, int(chin_x) + 4] == 1.0  # the neck just under the chin
    assert cut[int(chin_y) + 5, int(chin_x) + 60] == 0.0  # a shoulder beside it
    assert cut[int(chin_y) + 40, int(chin_x)] == 0.0  # the chest
    # The head rolled by 40 degrees: the cut follows the face's own downward axis.
    angle = np.radians(40.0)
    roll = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                     [0, 0, 1]])  # fmt: skip
    rolled = (points - points[CHIN]) @ roll.T + points[CHIN]
    rolled_cut = neck_cut((256, 256), rolled, canonicalize(rolled, template)[0])
    down = roll[:2, 1]  # the rolled face's downward direction in the image
    chest = np.round(points[CHIN, :2] + 40 * down).astype(int)
    neck = np.round(points[CHIN, :2] + 5 * down).astype(int)
    assert rolled_cut[chest[1], chest[0]] == 0.0 and rolled_cut[neck[1], neck[0]] == 1.0
