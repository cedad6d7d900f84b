"""GaussianAvatars / VHAP reader: a tiny fake capture in the exact layout (OpenGL cameras,
transforms_{train,val,test}.json, FLAME npz), checked by projecting known 3D points."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from npga.cli import main
from npga.data import CaptureDataset, CaptureError
from npga.data.gaussian_avatars import import_gaussian_avatars, opengl_c2w_to_opencv_w2c
from npga.data.layout import write_image
from npga.geometry import quat_to_rotmat

W, H, F = 80, 64, 70.0
POINTS = np.array([[0.0, 0.0, 0.0], [0.04, 0.05, 0.0], [-0.05, -0.02, 0.03]])  # y up (OpenGL)
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def gl_camera(yaw_degrees: float, distance: float = 0.6) -> np.ndarray:
    """OpenGL camera-to-world [4, 4]: columns right, up, back (the camera looks along -z) and
    the position, for a camera on the +z side of a y-up world looking at the origin."""
    yaw = math.radians(yaw_degrees)
    position = distance * np.array([math.sin(yaw), 0.1, math.cos(yaw)])
    back = position / np.linalg.norm(position)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, position
    return c2w


def gl_project(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The OpenGL pinhole written out: [N, 3] -> pixels [N, 2] (y down in the image)."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]  # camera coordinates (x right, y up, z back)
    depth = -cam[:, 2]
    return np.stack([W / 2 + F * cam[:, 0] / depth, H / 2 - F * cam[:, 1] / depth], axis=1)


def make_capture(root: Path) -> Path:
    """3 cameras x 3 timesteps: train = cameras 0, 1 at timesteps 0, 1; val = camera 2 at
    timesteps 0, 1; test = all cameras at timestep 2."""
    cams = {i: gl_camera(yaw) for i, yaw in enumerate((-25.0, 0.0, 25.0))}
    splits: dict[str, list[dict[str, object]]] = {"train": [], "val": [], "test": []}
    for t in range(3):
        flame = f"flame_param/{t:05d}.npz"
        (root / "flame_param").mkdir(parents=True, exist_ok=True)
        np.savez(root / flame, expr=np.full((1, 100), 0.1 * t), jaw_pose=np.full((1, 3), 0.01),
                 eyes_pose=np.zeros((1, 6)), rotation=np.array([[0.0, 0.2 * t, 0.0]]),
                 translation=np.array([[0.0, 0.01 * t, 0.0]]), shape=np.zeros(300))  # fmt: skip
        for c, c2w in cams.items():
            image = np.full((H, W, 3), 210, np.uint8)
            for (x, y), colour in zip(gl_project(c2w, POINTS), COLOURS, strict=True):
                image[int(y) - 4 : int(y) + 4, int(x) - 4 : int(x) + 4] = colour
            write_image(root / f"images/{t:05d}_{c:02d}.png", image)
            write_image(root / f"fg_masks/{t:05d}_{c:02d}.png", np.full((H, W), 255, np.uint8))
            split = "test" if t == 2 else ("val" if c == 2 else "train")
            splits[split].append({
                "timestep_index": t, "timestep_id": f"frame_{t:05d}", "camera_index": c,
                "camera_id": f"22220{c}", "transform_matrix": c2w.tolist(),
                "fl_x": F, "fl_y": F, "cx": W / 2, "cy": H / 2, "w": W, "h": H,
                "file_path": f"images/{t:05d}_{c:02d}.png",
                "fg_mask_path": f"fg_masks/{t:05d}_{c:02d}.png", "flame_param_path": flame,
            })  # fmt: skip
    for split, frames in splits.items():
        data = {"camera_angle_x": 2 * math.atan(W / (2 * F)), "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(data))
    return root


def _centroid(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    close = np.abs(image * 255 - colour).max(axis=-1) < 60
    ys, xs = np.nonzero(close)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def test_opengl_to_opencv() -> None:
    c2w = gl_camera(0.0)  # at +z, looking along -z
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    centre = -w2c[:3, :3].T @ w2c[:3, 3]
    np.testing.assert_allclose(centre, c2w[:3, 3], atol=1e-12)
    np.testing.assert_allclose(w2c[2, :3] @ (-c2w[:3, 3]) > 0, True)  # origin in front (+z)
    np.testing.assert_allclose(w2c[1, :3] @ np.array([0.0, 1.0, 0.0]) < 0, True)  # world up = -y


def test_import_projects_known_points(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    import_gaussian_avatars(make_capture(tmp_path / "ga"), out, resolution=40)
    data = CaptureDataset(out)
    assert data.camera_names == ["cam_00", "cam_01", "cam_02"] and data.front_camera == "cam_01"
    assert data.splits.train_timesteps == [0, 1] and data.splits.test_timesteps == [2]
    assert data.splits.test_cameras == ["cam_02"] and data.has_masks
    assert data.codes is not None and data.codes.expression_space == "flame"
    assert data.codes.codes.shape == (3, 109)
    np.testing.assert_allclose(data.codes.codes[2, :100], 0.2, atol=1e-6)
    rotation = quat_to_rotmat(torch.from_numpy(data.codes.rotation_wxyz[1]))
    np.testing.assert_allclose(rotation[0, 2], math.sin(0.2), atol=1e-6)
    frame = data.frame(2)
    assert frame.images.shape == (3, 32, 40, 3) and frame.code is not None
    full = data.cameras.resized(W, H)
    for c in range(3):
        # Project through the converted OpenCV camera at full size; find the markers there.
        w2c, k = full.world_to_cam[c].double().numpy(), full.intrinsics[c].double().numpy()
        cam = POINTS @ w2c[:3, :3].T + w2c[:3, 3]
        assert (cam[:, 2] > 0).all()
        pixels = (cam[:, :2] / cam[:, 2:]) * [k[0, 0], k[1, 1]] + k[:2, 2]
        image = np.kron(frame.images[c].numpy(), np.ones((2, 2, 1)))  # back to 80x64
        for point, colour in zip(pixels, COLOURS, strict=True):
            np.testing.assert_allclose(_centroid(image, colour), point, atol=1.0)


def _damage_json(root: Path, split: str, edit: Callable[[Any], object]) -> None:
    path = root / f"transforms_{split}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "transforms_train.json").unlink(), r"transforms_train\.json: missing"),
        (lambda r: _damage_json(r, "val", lambda d: d["frames"][0].pop("camera_index")),
         r"transforms_val\.json: frames\[0\]: field 'camera_index' missing"),
        (lambda r: _damage_json(r, "train", lambda d: d["frames"][1].update(fl_x=None)),
         r"frames\[1\]: field 'fl_x' missing or not a finite number"),
        (lambda r: _damage_json(r, "test", lambda d: d["frames"][0].update(
            transform_matrix=[[1, 0, 0]])), r"transform_matrix must be a finite 4x4"),
        (lambda r: _damage_json(r, "test", lambda d: d["frames"].pop()),
         r"no frame for timestep 2, camera_index 2"),
        (lambda r: (r / "images/00001_00.png").unlink(), r"images/00001_00\.png: missing"),
        (lambda r: _damage_json(r, "test", lambda d: d["frames"][0].update(timestep_index=0)),
         r"timestep 0, camera_index 0 is both 00000_00\.png \(train\) and 00002_00\.png \(test\)"),
        (lambda r: np.savez(r / "flame_param/00001.npz", expr=np.zeros(100)),
         r"flame_param/00001\.npz: field 'jaw_pose' missing"),
    ],
)  # fmt: skip
def test_reader_errors(tmp_path: Path, damage: Callable[[Path], object], message: str) -> None:
    root = make_capture(tmp_path / "ga")
    damage(root)
    with pytest.raises(CaptureError, match=message):
        import_gaussian_avatars(root, tmp_path / "out")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_capture(tmp_path / "ga")
    assert main(["data", "import-gaussian-avatars", str(root), str(tmp_path / "cap")]) == 0
    assert CaptureDataset(tmp_path / "cap").cameras.width == W
    (root / "transforms_train.json").write_text("{")
    assert main(["data", "import-gaussian-avatars", str(root), str(tmp_path / "c2")]) == 2
    assert "transforms_train.json: not valid JSON" in capsys.readouterr().err
