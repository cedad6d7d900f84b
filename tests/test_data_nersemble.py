"""NeRSemble v2 raw reader: a tiny fake participant in the exact layout, camera conventions
checked by projecting known 3D points, colour calibration, frame selection, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npga.cameras import orbit_cameras
from npga.cli import main
from npga.data import CaptureDataset, CaptureError
from npga.data.nersemble import import_nersemble, read_calibration
from npga.video import VideoWriter

SERIALS = ["220700191", "221501007", "222200037"]
W, H = 96, 128  # portrait, like NeRSemble's 2200x3208
POINTS = np.array([[0.0, 0.0, 0.0], [0.05, -0.06, 0.02], [-0.04, 0.05, -0.03]])  # metres
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
SWAP_RB = [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]


def _project(world_to_cam: np.ndarray, k: np.ndarray, points: np.ndarray) -> np.ndarray:
    """OpenCV pinhole, written out: [N, 3] -> pixels [N, 2]."""
    cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    return np.stack([k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2],
                     k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]], axis=1)  # fmt: skip


def make_participant(root: Path, frames: int = 5) -> Path:
    rig = orbit_cameras([-30.0, 0.0, 30.0], distance=0.8, focal_px=150.0, width=W, height=H,
                        pitch_degrees=10.0)  # fmt: skip
    w2c = rig.world_to_cam.double().numpy()
    k = rig.intrinsics[0].double().numpy()
    (root / "calibration").mkdir(parents=True)
    params = {"world_2_cam": {s: w2c[i].tolist() for i, s in enumerate(SERIALS)},
              "intrinsics": k.tolist()}  # fmt: skip
    (root / "calibration" / "camera_params.json").write_text(json.dumps(params))
    colour = {f"cam_{SERIALS[2]}": SWAP_RB}  # keyed "cam_<serial>" here, by serial in others
    (root / "calibration" / "color_calibration.json").write_text(json.dumps(colour))
    videos = root / "sequences" / "EXP-1-head" / "images"
    videos.mkdir(parents=True)
    for i, serial in enumerate(SERIALS):
        pixels = _project(w2c[i], k, POINTS)
        with VideoWriter(videos / f"cam_{serial}.mp4", W, H, 24.0) as writer:
            for t in range(frames):
                image = np.full((H, W, 3), 200, np.uint8)
                image[:8, :8] = 40 * t  # frame index in a corner
                for (x, y), colour in zip(pixels, COLOURS, strict=True):
                    image[int(y) - 5 : int(y) + 5, int(x) - 5 : int(x) + 5] = colour
                writer.write(image)
    return root


def _centroid(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """image [H, W, 3] float; the centre [2] (x, y) of pixels close to ``colour``."""
    close = np.abs(image * 255 - colour).max(axis=-1) < 90
    ys, xs = np.nonzero(close)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def test_import_projects_known_points(tmp_path: Path) -> None:
    src = make_participant(tmp_path / "017")
    out = tmp_path / "cap"
    import_nersemble(src, "EXP-1-head", out, frames=[1, 3, 4], resolution=48,
                     test_cameras=["221501007"], test_fraction=0.34)  # fmt: skip
    data = CaptureDataset(out)
    assert data.camera_names == [f"cam_{s}" for s in SERIALS]
    assert data.front_camera == "cam_221501007"  # the middle of the arc
    assert data.timesteps == [0, 1, 2] and data.cameras.width == 48 and data.cameras.height == 64
    assert data.splits.test_timesteps == [2] and data.splits.test_cameras == ["cam_221501007"]
    frame = data.frame(1)  # video frame 3
    assert abs(float(frame.images[0, 1, 1].mean()) * 255 - 120) < 12
    cams = data.cameras
    for c in range(3):
        w2c, k = cams.world_to_cam[c].double().numpy(), cams.intrinsics[c].double().numpy()
        expected = _project(w2c, k, POINTS)
        colours = COLOURS[:, ::-1] if c == 2 else COLOURS  # camera 2's calibration swaps R, B
        for point, colour in zip(expected, colours, strict=True):
            found = _centroid(frame.images[c].numpy(), colour)
            np.testing.assert_allclose(found, point, atol=1.0)


def test_reader_errors(tmp_path: Path) -> None:
    src = make_participant(tmp_path / "p", frames=2)
    params = src / "calibration" / "camera_params.json"
    with pytest.raises(CaptureError, match=r"has no frame 5 \(fewer frames than selected\)"):
        import_nersemble(src, "EXP-1-head", tmp_path / "o1", frames=[0, 5])
    with pytest.raises(CaptureError, match=r"EXP-2/images/cam_220700191\.mp4: missing"):
        import_nersemble(src, "EXP-2", tmp_path / "o2", frames=[0])
    with pytest.raises(CaptureError, match=r"camera 222200037 \(held out or front\) is not among"):
        import_nersemble(src, "EXP-1-head", tmp_path / "o5", serials=SERIALS[:2], frames=[0],
                         test_cameras=[SERIALS[2]])  # fmt: skip
    with pytest.raises(CaptureError, match="camera 999 is not in"):
        import_nersemble(src, "EXP-1-head", tmp_path / "o3", serials=["999"], frames=[0])
    (src / "sequences/EXP-1-head/images" / f"cam_{SERIALS[0]}.mp4").write_bytes(b"not a video")
    with pytest.raises(CaptureError, match=r"cam_220700191\.mp4: cannot decode"):
        import_nersemble(src, "EXP-1-head", tmp_path / "o4", frames=[0])
    data = json.loads(params.read_text())
    data["world_2_cam"][SERIALS[1]] = [[1, 0, 0], [0, 1, 0]]
    params.write_text(json.dumps(data))
    with pytest.raises(CaptureError, match=r"world_2_cam\.221501007 must be 4x4"):
        read_calibration(src)
    del data["intrinsics"]
    params.write_text(json.dumps(data))
    with pytest.raises(CaptureError, match="field 'intrinsics' missing"):
        read_calibration(src)
    params.unlink()
    with pytest.raises(CaptureError, match=r"camera_params\.json: missing"):
        read_calibration(src)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_participant(tmp_path / "p", frames=4)
    out = tmp_path / "cap"
    args = ["data", "import-nersemble", str(src), str(out), "--sequence", "EXP-1-head",
            "--cameras", SERIALS[0], SERIALS[1], "--stride", "2", "--resolution", "32"]  # fmt: skip
    assert main(args) == 0
    data = CaptureDataset(out)
    assert len(data) == 2 and data.camera_names == ["cam_220700191", "cam_221501007"]
    assert data.cameras.width == 32
    assert main(["data", "check", str(out)]) == 0
    assert "2 timesteps, 2 cameras (32x43)" in capsys.readouterr().out
    assert main(["data", "import-nersemble", str(src), str(out), "--sequence", "NOPE"]) == 2
    assert "NOPE/images/cam_220700191.mp4" in capsys.readouterr().err
