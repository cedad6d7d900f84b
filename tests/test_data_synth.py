"""The synthetic capture rig: determinism, masks, ground truth, expression-dependent appearance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from npga.cameras import orbit_cameras
from npga.cli import main
from npga.data import CaptureDataset
from npga.data.layout import frame_path
from npga.data.synth.head import PARAMETERS, HeadModel, build_head
from npga.data.synth.raster import project, render_views
from npga.data.synth.rig import FPS, animate, vertex_light, world_vertices
from npga.data.synth.writer import TARGET, SynthConfig, synth_cameras, write_synth
from npga.geometry import quat_to_rotmat

CONFIG = SynthConfig(frames=6, cameras=3, resolution=72, seed=3)


@pytest.fixture(scope="module")
def head() -> HeadModel:
    from skimage import data

    return build_head(data.astronaut())


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cap"
    write_synth(out, CONFIG)
    return out


def test_capture_layout_and_ground_truth(capture: Path) -> None:
    data = CaptureDataset(capture)
    assert data.camera_names == ["cam_00", "cam_01", "cam_02"] and data.front_camera == "cam_01"
    assert data.timesteps == list(range(6)) and data.has_masks and data.codes is None
    assert data.splits.test_timesteps == [5] and data.splits.train_timesteps == [0, 1, 2, 3, 4]
    assert data.splits.test_cameras == ["cam_02"]
    assert not (capture / "codes.npz").exists()
    with np.load(capture / "rig.npz") as rig:
        assert rig["landmarks_world"].shape == (6, 478, 3)
        assert rig["head_rotation_wxyz"].shape == (6, 4) and rig["head_translation"].shape == (6, 3)
        assert list(rig["parameter_names"]) == list(PARAMETERS)
        for name in PARAMETERS:
            assert rig[name].shape == (6,) and 0 <= rig[name].min() <= rig[name].max() <= 1
        landmarks = rig["landmarks_world"]
    # The ground-truth landmarks project onto the face in the front image: the nose tip lands
    # on a foreground pixel, near the image centre.
    frame = data.frame(2)
    cams = frame.cameras
    pixels = project(landmarks[2].astype(np.float64), cams.world_to_cam[1].double().numpy(),
                     cams.intrinsics[1].double().numpy())  # fmt: skip
    x, y = pixels[1, :2].astype(int)
    assert frame.masks is not None and frame.masks[1, y, x, 0] == 1.0
    assert abs(x - 36) < 12 and abs(y - 36) < 18


def test_masks_match_images(capture: Path) -> None:
    for t in range(6):
        for name in ("cam_00", "cam_01", "cam_02"):
            rgb = np.asarray(Image.open(frame_path(capture, t, name)))
            mask = np.asarray(Image.open(frame_path(capture, t, name, masks=True)))
            assert (rgb[mask == 0] == 255).all()  # background is white
            assert 0.08 < (mask == 255).mean() < 0.6  # a head, not an empty or full frame
            assert (rgb[mask == 255].mean(axis=-1) < 250).mean() > 0.95


def test_identical_seed_identical_bytes(capture: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["synth", str(again), "--frames", "6", "--cameras", "3", "--resolution", "72",
                 "--seed", "3"]) == 0  # fmt: skip
    files = sorted(p.relative_to(capture) for p in capture.rglob("*.png"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png")) and len(files) == 36
    for name in files:
        assert (capture / name).read_bytes() == (again / name).read_bytes(), name
    other = animate(6, seed=4)[0]
    assert not np.allclose(other, animate(6, seed=3)[0])


def test_resume_and_existing_capture(capture: Path, tmp_path: Path) -> None:
    assert main(["synth", str(capture), "--frames", "6", "--cameras", "3"]) == 2
    out, config = tmp_path / "cap", SynthConfig(frames=3, cameras=1, resolution=32)
    write_synth(out, config)
    before = frame_path(out, 2, "cam_00").read_bytes()
    stamp = frame_path(out, 0, "cam_00").stat().st_mtime_ns
    (out / "cameras.json").unlink()  # as if interrupted while writing frame 2
    frame_path(out, 2, "cam_00").unlink()
    write_synth(out, config, resume=True)
    assert frame_path(out, 0, "cam_00").stat().st_mtime_ns == stamp  # kept, not re-rendered
    assert frame_path(out, 2, "cam_00").read_bytes() == before
    assert len(CaptureDataset(out)) == 3
    with pytest.raises(FileExistsError, match="started with other settings"):
        write_synth(out, SynthConfig(frames=4, cameras=1, resolution=32), resume=True)


def _front_view(head: HeadModel, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> rgb [160, 160, 3] uint8 of the front camera (face close-up), landmarks [478, 2]."""
    cameras = orbit_cameras(
        [0.0], distance=1.0, focal_px=1200.0, width=160, height=160, target=(0.0, 0.02, 0.0)
    )
    vertices = world_vertices(head, params, np.array([1.0, 0, 0, 0]), np.zeros(3))
    shade = vertex_light(head, vertices, params)
    rgb, _ = render_views(vertices, head.triangles, head.uvs, shade, head.texture, cameras)
    w2c, k = cameras.world_to_cam[0].double().numpy(), cameras.intrinsics[0].double().numpy()
    return rgb[0], project(vertices[:478], w2c, k)[:, :2]


def _box(pixels: np.ndarray, indices: list[int], margin: int = 2) -> tuple[slice, slice]:
    lo = np.floor(pixels[indices].min(axis=0)).astype(int) - margin
    hi = np.ceil(pixels[indices].max(axis=0)).astype(int) + margin
    return slice(lo[1], hi[1]), slice(lo[0], hi[0])


def test_appearance_changes_beyond_landmark_motion(head: HeadModel) -> None:
    neutral = np.zeros(len(PARAMETERS))
    rest, rest_points = _front_view(head, neutral)
    jaw = neutral.copy()
    jaw[PARAMETERS.index("jaw_open")] = 1.0
    opened, open_points = _front_view(head, jaw)
    lips = [61, 291, 0, 17, 13, 14, 78, 308]
    mouth = _box(open_points, lips)
    dark = opened[mouth].max(axis=-1) < 70  # the mouth interior
    bright = opened[mouth].min(axis=-1) > 200  # teeth
    rest_mouth = _box(rest_points, lips)
    assert dark.sum() > 60 and bright.sum() > 10
    assert (rest[rest_mouth].max(axis=-1) < 70).sum() < 0.2 * dark.sum()
    # Lower lip landmarks moved down by several pixels; the opening exposes new colours that no
    # warp of the closed mouth contains.
    assert open_points[14, 1] - rest_points[14, 1] > 3
    # Blinking covers the irises with eyelid skin.
    blink = neutral.copy()
    blink[PARAMETERS.index("blink_l")] = blink[PARAMETERS.index("blink_r")] = 1.0
    closed, _ = _front_view(head, blink)
    eyes = _box(rest_points, [33, 133, 159, 145, 263, 362, 386, 374], margin=0)
    iris_open = (rest[eyes].max(axis=-1) < 60).sum()
    iris_closed = (closed[eyes].max(axis=-1) < 60).sum()
    assert iris_open > 20 and iris_closed < 0.3 * iris_open


def test_camera_arc() -> None:
    names, cameras, front, held_out = synth_cameras(8, 64)
    assert len(names) == 8 and front == "cam_03" and held_out == "cam_04"
    centres = cameras.centers() - torch.tensor(TARGET)
    torch.testing.assert_close(centres.norm(dim=1), torch.ones(8), atol=1e-4, rtol=0)
    yaw = torch.rad2deg(torch.atan2(centres[:, 0], -centres[:, 2]))
    assert yaw.min() < -44 and yaw.max() > 44 and abs(float(yaw[3])) < 1e-3


def test_rasteriser_perspective_correct_texture() -> None:
    """A quad slanting away from the camera, textured with a vertical ramp: every pixel shows the
    texture coordinate of the point its ray hits (affine interpolation is off by up to 0.15)."""
    from npga.cameras import Cameras

    corners = np.array([[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [1.0, 1.0, 4.0], [-1.0, 1.0, 4.0]])
    triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uvs = np.array([[0.5, 0.0], [0.5, 0.0], [0.5, 256.0], [0.5, 256.0]])
    ramp = ((np.arange(256) + 0.5) / 256)[:, None, None] * np.ones((1, 1, 3))  # [256, 1, 3]
    k = torch.tensor([[32.0, 0.0, 32.0], [0.0, 32.0, 32.0], [0.0, 0.0, 1.0]])
    cameras = Cameras(torch.eye(4)[None], k[None], 64, 64)
    rgb, masks = render_views(corners, triangles, uvs, np.ones(4), ramp.astype(np.float32), cameras)
    sub = (np.arange(128) + 0.5) / 2  # supersample centres, in pixels
    ray = (sub - 32.0) / 32.0  # y / z along each sub-row
    y = 3 * ray / (1 - ray)  # where the ray meets the plane z = 3 + y
    v = np.clip((y + 1) / 2, 0, 1).reshape(64, 2).mean(axis=1)  # [64] per pixel row
    rows = slice(17, 39)  # inside the quad (its image spans rows 16 to 40), away from the edges
    np.testing.assert_allclose(rgb[0, rows, 32, 0] / 255.0, v[rows], atol=2.5 / 255)
    assert (masks[0, rows, 25:39] == 255).all() and (masks[0, :, :3] == 0).all()


def _yaw_pitch(rotation_wxyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head rotations [T, 4] -> yaw, pitch [T] in degrees of where the face (-z) points."""
    rotations = quat_to_rotmat(torch.from_numpy(rotation_wxyz).double()).numpy()
    forward = rotations @ np.array([0.0, 0.0, -1.0])  # [T, 3]
    yaw = np.degrees(np.arctan2(-forward[:, 0], -forward[:, 2]))
    return yaw, np.degrees(np.arcsin(np.clip(forward[:, 1], -1, 1)))


def test_wide_head_motion() -> None:
    """--head-motion wide: the same expressions, a head that turns well beyond the rig's ±18°
    already within 3 s, and ±35° yaw, ±15° pitch over a minute (30 timesteps a second)."""
    assert FPS == 30
    for seed in (0, 3, 7):
        params, rotations, _ = animate(90, seed)
        wide_params, wide_rotations, wide_translations = animate(90, seed, "wide")
        np.testing.assert_array_equal(wide_params, params)
        yaw = _yaw_pitch(rotations)[0]
        wide_yaw = _yaw_pitch(wide_rotations)[0]
        assert np.ptp(yaw) < 38 and np.ptp(wide_yaw) > 45, (np.ptp(yaw), np.ptp(wide_yaw))
        assert np.abs(wide_translations).max() <= 0.008 + 1e-6
        # Smooth: at most ~1° of yaw per timestep.
        assert np.abs(np.diff(wide_yaw)).max() < 1.2
    _, minute, _ = animate(1800, 0, "wide")
    np.testing.assert_array_equal(minute[:90], animate(90, 0, "wide")[1])  # a function of time
    yaw, pitch = _yaw_pitch(minute)
    assert 34 < -yaw.min() <= 35.01 and 34 < yaw.max() <= 35.01
    assert 14 < -pitch.min() <= 15.01 and 14 < pitch.max() <= 15.01
    with pytest.raises(ValueError, match="unknown head motion"):
        animate(10, 0, "spin")


def test_wide_head_motion_capture(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    assert main(["synth", str(out), "--frames", "4", "--cameras", "4", "--resolution", "64",
                 "--head-motion", "wide"]) == 0  # fmt: skip
    assert json.loads((out / "synth.json").read_text())["head_motion"] == "wide"
    _, rotations, translations = animate(4, 0, "wide")
    with np.load(out / "rig.npz") as rig:
        np.testing.assert_array_equal(rig["head_rotation_wxyz"], rotations)
        np.testing.assert_array_equal(rig["head_translation"], translations)
    assert len(CaptureDataset(out)) == 4
    with pytest.raises(FileExistsError, match="started with other settings"):
        write_synth(out, SynthConfig(frames=4, cameras=4, resolution=64), resume=True)
    # A capture started before head_motion existed (not in its synth.json) resumes as "rig".
    old = tmp_path / "old"
    write_synth(old, SynthConfig(frames=2, cameras=1, resolution=32))
    settings = json.loads((old / "synth.json").read_text())
    assert settings.pop("head_motion") == "rig"
    (old / "synth.json").write_text(json.dumps(settings, sort_keys=True))
    (old / "cameras.json").unlink()
    write_synth(old, SynthConfig(frames=2, cameras=1, resolution=32), resume=True)
    with pytest.raises(FileExistsError, match="started with other settings"):
        write_synth(old, SynthConfig(frames=2, cameras=1, resolution=32, head_motion="wide"),
                    resume=True)  # fmt: skip


def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_data_video(capture: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"clip{suffix}"
    assert main(["data", "video", str(capture), "--out", str(out)]) == 0
    frames = _decode(out)
    assert len(frames) == 6 and frames[0].shape == (72, 72, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no partial file left
    data = CaptureDataset(capture)
    for t, frame in enumerate(frames):  # frame i is timestep i of the front camera (cam_01)
        front = data.image(t, "cam_01").numpy() * 255
        side = data.image(t, "cam_00").numpy() * 255
        error = np.abs(frame - front).mean()
        assert error < 4 and error < 0.3 * np.abs(frame - side).mean(), error
    side_video = tmp_path / "side.mkv"
    assert main(["data", "video", str(capture), "--camera", "cam_00", "--out", str(side_video),
                 "--fps", "10"]) == 0  # fmt: skip
    assert np.abs(_decode(side_video)[2] - data.image(2, "cam_00").numpy() * 255).mean() < 4


def test_data_video_errors(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.mp4"
    cases = {
        ("--camera", "cam_09"): "no camera 'cam_09' (cameras: cam_00, cam_01, cam_02)",
        ("--out", str(tmp_path / "clip.gif")): "the suffix must be one of .mp4, .mov, .mkv, .webm",
        ("--out", str(tmp_path / "missing" / "clip.mp4")): "clip.mp4: its folder does not exist",
    }
    for extra, message in cases.items():
        assert main(["data", "video", str(capture), "--out", str(out), *extra]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert main(["data", "video", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "capture folder missing" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_data_video_interrupted(
    capture: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An interrupted encode leaves the previous file as it was and no partial file."""
    from npga.video import VideoWriter

    out = tmp_path / "clip.mp4"
    out.write_bytes(b"previous")
    written, encode, close = [], VideoWriter.write, VideoWriter.close
    seen: set[Path] = set()

    def write(self: VideoWriter, frame: np.ndarray) -> None:
        encode(self, frame)
        written.append(frame)
        if len(written) == 3:
            raise KeyboardInterrupt

    def closed(self: VideoWriter) -> None:
        close(self)
        seen.update(tmp_path.iterdir())

    monkeypatch.setattr(VideoWriter, "write", write)
    monkeypatch.setattr(VideoWriter, "close", closed)
    # Ctrl-C: one line and exit status 130
    assert main(["data", "video", str(capture), "--out", str(out)]) == 130
    assert seen == {out, tmp_path / "clip.mp4.partial.mp4"}  # the encoder wrote beside it
    assert out.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [out]
    assert capsys.readouterr().err.strip().endswith("npga: interrupted")
