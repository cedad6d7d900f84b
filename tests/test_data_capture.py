"""The own capture layout: round trip, downscaling, caching and every validation error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from npga.cameras import orbit_cameras
from npga.data import CaptureCodes, CaptureDataset, CaptureError, CaptureSplits
from npga.data.layout import frame_path, write_cameras, write_codes, write_image, write_splits

NAMES = ["cam_a", "cam_b", "cam_c"]
STEPS = [0, 1, 2, 3]
W, H = 32, 24


def _pixels(t: int, c: int) -> np.ndarray:
    """[H, W, 3] uint8, a pattern that differs per timestep and camera."""
    rng = np.random.default_rng(10 * t + c)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def make_capture(root: Path, *, masks: bool = True, codes: bool = True) -> Path:
    cameras = orbit_cameras([-30.0, 0.0, 30.0], distance=1.0, focal_px=40.0, width=W, height=H)
    write_cameras(root, NAMES, cameras, front_camera="cam_b")
    for t in STEPS:
        for c, name in enumerate(NAMES):
            write_image(frame_path(root, t, name), _pixels(t, c))
            if masks:
                write_image(frame_path(root, t, name, masks=True), _pixels(t, c)[..., 0])
    write_splits(root, CaptureSplits([0, 1, 2], [3], ["cam_c"]))
    if codes:
        write_codes(
            root,
            CaptureCodes(
                np.array(STEPS),
                np.tile(np.array([1.0, 0, 0, 0], np.float32), (4, 1)),
                np.zeros((4, 3), np.float32),
                np.arange(20, dtype=np.float32).reshape(4, 5),
                "facemesh-pca",
            ),
        )
    return root


def test_round_trip(tmp_path: Path) -> None:
    data = CaptureDataset(make_capture(tmp_path))
    assert data.camera_names == NAMES and data.front_camera == "cam_b"
    assert data.timesteps == STEPS and len(data) == 4 and data.has_masks
    assert data.splits == CaptureSplits([0, 1, 2], [3], ["cam_c"])
    assert data.codes is not None and data.codes.expression_space == "facemesh-pca"
    frame = data[2]
    assert frame.timestep == 2 and frame.camera_names == NAMES
    assert frame.images.shape == (3, H, W, 3) and frame.images.dtype == torch.float32
    assert frame.masks is not None and frame.masks.shape == (3, H, W, 1)
    expected = torch.from_numpy(_pixels(2, 1).astype(np.float32) / 255)
    torch.testing.assert_close(frame.images[1], expected)
    torch.testing.assert_close(data.image(2, "cam_b"), expected)
    assert frame.code is not None and frame.code.tolist() == [10, 11, 12, 13, 14]
    assert frame.cameras.num_cameras == 3 and frame.cameras.width == W
    one = data.frame(1, ["cam_c"])
    assert one.images.shape == (1, H, W, 3)
    torch.testing.assert_close(one.cameras.world_to_cam[0], data.cameras.world_to_cam[2])


def test_downscaling_camera_selection_and_cache(tmp_path: Path) -> None:
    make_capture(tmp_path, masks=False, codes=False)
    data = CaptureDataset(tmp_path, resolution=16, cameras=["cam_c", "cam_a"])
    assert data.camera_names == ["cam_a", "cam_c"] and not data.has_masks and data.codes is None
    frame = data.frame(0)
    assert frame.images.shape == (2, 12, 16, 3) and frame.masks is None and frame.code is None
    assert data.cameras.width == 16 and data.cameras.height == 12
    torch.testing.assert_close(data.cameras.intrinsics[0, 0, 0], torch.tensor(20.0))
    # 2x2 box filter of the full-resolution image.
    full = _pixels(0, 0).astype(np.float32).reshape(12, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(frame.images[0].numpy() * 255 - full).max() <= 1.0
    frame_path(tmp_path, 0, "cam_a").unlink()  # cached: still served
    torch.testing.assert_close(data.frame(0).images, frame.images)
    uncached = CaptureDataset(make_capture(tmp_path), cache=False)
    frame_path(tmp_path, 1, "cam_a").write_bytes(b"")
    with pytest.raises(CaptureError, match=r"cam_a\.png: not a readable image"):
        uncached.frame(1)
    with pytest.raises(KeyError):
        uncached.frame(99)


def _edit_json(path: Path, edit: Callable[[Any], object]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(key: str, value: object) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        data["cameras"]["cam_b"][key] = value

    return edit


def _codes(**changes: object) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        with np.load(root / "codes.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays.update(changes)
        arrays = {k: v for k, v in arrays.items() if v is not None}
        np.savez(root / "codes.npz", **arrays)

    return write


CASES = {
    "missing cameras.json": (lambda r: (r / "cameras.json").unlink(), "cameras.json: missing"),
    "cameras.json not JSON": (
        lambda r: (r / "cameras.json").write_text("{"),
        "cameras.json: not valid JSON",
    ),
    "bad matrix shape": (
        lambda r: _edit_json(r / "cameras.json", _set("world_to_cam", [[1, 0, 0]])),
        r"cameras.cam_b.world_to_cam must be 4x4",
    ),
    "non-finite intrinsics": (
        lambda r: _edit_json(
            r / "cameras.json", _set("intrinsics", [[1, 0, 0], [0, 1e999, 0], [0, 0, 1]])
        ),
        "cameras.cam_b.intrinsics contains NaN or Inf",
    ),
    "missing field": (
        lambda r: _edit_json(r / "cameras.json", lambda d: d["cameras"]["cam_b"].pop("height")),
        "cameras.cam_b.height missing",
    ),
    "mixed sizes": (
        lambda r: _edit_json(r / "cameras.json", _set("width", 64)),
        "share one image size",
    ),
    "unknown front camera": (
        lambda r: _edit_json(r / "cameras.json", lambda d: d.update(front_camera="x")),
        "front_camera 'x'",
    ),
    "missing frame file": (
        lambda r: frame_path(r, 2, "cam_c").unlink(),
        "frames/00002/cam_c.png: missing",
    ),
    "missing mask file": (
        lambda r: frame_path(r, 1, "cam_a", masks=True).unlink(),
        "masks/00001/cam_a.png: missing",
    ),
    "wrong image size": (
        lambda r: write_image(frame_path(r, 3, "cam_a"), np.zeros((H, W + 1, 3), np.uint8)),
        "frames/00003/cam_a.png: image is 33x24, cameras.json says 32x24",
    ),
    "corrupt PNG": (
        lambda r: frame_path(r, 0, "cam_b").write_bytes(b"\x89PNG garbage"),
        "frames/00000/cam_b.png: not a readable image",
    ),
    "grey frame": (
        lambda r: write_image(frame_path(r, 0, "cam_b"), np.zeros((H, W), np.uint8)),
        "frames/00000/cam_b.png: expected an RGB image",
    ),
    "stray frame folder": (
        lambda r: (r / "frames" / "notes").mkdir(),
        "frames/notes: frame folders are named by timestep",
    ),
    "splits unknown timestep": (
        lambda r: _edit_json(r / "splits.json", lambda d: d.update(test_timesteps=[3, 7])),
        "splits.json: test_timesteps names unknown timestep 7",
    ),
    "splits unknown camera": (
        lambda r: _edit_json(r / "splits.json", lambda d: d.update(test_cameras=["cam_z"])),
        "splits.json: test_cameras names unknown camera 'cam_z'",
    ),
    "splits not integers": (
        lambda r: _edit_json(r / "splits.json", lambda d: d.update(train_timesteps="all")),
        "train_timesteps must be a list of integers",
    ),
    "codes wrong T": (
        _codes(translation=np.zeros((3, 3), np.float32)),
        r"codes.npz: translation must be \[4, 3\], got \(3, 3\)",
    ),
    "codes wrong E": (_codes(codes=np.zeros(4, np.float32)), r"codes.npz: codes must be \[4, -1\]"),
    "codes NaN": (
        _codes(codes=np.full((4, 5), np.nan, np.float32)),
        "codes.npz: codes must be finite floats",
    ),
    "codes missing timestep": (
        _codes(timesteps=np.array([0, 1, 2, 9])),
        "codes.npz: timesteps has no code for frame timestep 3",
    ),
    "codes missing field": (
        _codes(expression_space=None),
        "codes.npz: field 'expression_space' missing",
    ),
    "codes corrupt": (lambda r: (r / "codes.npz").write_bytes(b"zip?"), "codes.npz: unreadable"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_errors_name_the_file(tmp_path: Path, case: str) -> None:
    damage, message = CASES[case]
    make_capture(tmp_path)
    damage(tmp_path)
    with pytest.raises(CaptureError, match=message) as info:
        CaptureDataset(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_root_frames_and_unknown_camera(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="capture folder missing"):
        CaptureDataset(tmp_path / "nope")
    make_capture(tmp_path)
    with pytest.raises(CaptureError, match=r"no camera named \['cam_q'\]"):
        CaptureDataset(tmp_path, cameras=["cam_q"])
    for path in sorted((tmp_path / "frames").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(CaptureError, match="frames: no timesteps"):
        CaptureDataset(tmp_path)


def test_preview_and_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from npga.cli import main

    (tmp_path / "cap").mkdir()
    make_capture(tmp_path / "cap")
    sheet = tmp_path / "sheet.png"
    args = ["data", "preview", str(tmp_path / "cap"), "--out", str(sheet)]
    assert main([*args, "--columns", "3", "--resolution", "16"]) == 0
    pixels = np.asarray(Image.open(sheet))
    assert pixels.shape == (3 * (12 + 2), 3 * (16 + 2), 3)
    assert main(["data", "check", str(tmp_path / "cap")]) == 0
    assert "4 timesteps, 3 cameras (32x24), masks: yes, codes: facemesh-pca [5]" in (
        capsys.readouterr().out
    )
    frame_path(tmp_path / "cap", 1, "cam_a").unlink()
    assert main(["data", "check", str(tmp_path / "cap")]) == 2
    assert "frames/00001/cam_a.png: missing" in capsys.readouterr().err


def _flat(t: int, c: int) -> np.ndarray:
    """[H, W, 3] uint8, one flat colour per timestep and camera (survives video compression)."""
    return np.broadcast_to(np.array([40 + 50 * t, 200 - 60 * c, 120], np.uint8), (H, W, 3))


def make_video_capture(root: Path, frames: int = 3) -> Path:
    from npga.video import VideoWriter

    root.mkdir(parents=True, exist_ok=True)
    cameras = orbit_cameras([-20.0, 20.0], distance=1.0, focal_px=40.0, width=W, height=H)
    write_cameras(root, NAMES[:2], cameras, front_camera="cam_a")
    for folder, mask in (("videos", False), ("mask_videos", True)):
        (root / folder).mkdir()
        for c, name in enumerate(NAMES[:2]):
            with VideoWriter(root / folder / f"{name}.mp4", W, H, 10.0) as writer:
                for t in range(frames):
                    writer.write(np.full((H, W, 3), 255, np.uint8) if mask else _flat(t, c))
    return root


@pytest.mark.parametrize("cache", [True, False])
def test_per_camera_videos(tmp_path: Path, cache: bool) -> None:
    data = CaptureDataset(make_video_capture(tmp_path), resolution=16, cache=cache)
    assert data.timesteps == [0, 1, 2] and data.camera_names == NAMES[:2] and data.has_masks
    for t in (2, 0, 1):
        frame = data.frame(t)
        assert frame.images.shape == (2, 12, 16, 3) and frame.masks is not None
        for c in range(2):
            expected = torch.from_numpy(_flat(t, c)[:12, :16].astype(np.float32) / 255)
            torch.testing.assert_close(frame.images[c], expected, atol=6 / 255, rtol=0)
        assert float(frame.masks.min()) > 0.97


def test_video_errors(tmp_path: Path) -> None:
    from npga.video import VideoWriter

    root = make_video_capture(tmp_path / "a")
    (root / "mask_videos" / "cam_b.mp4").unlink()
    with pytest.raises(CaptureError, match=r"mask_videos/cam_b\.mp4: missing"):
        CaptureDataset(root)
    root = make_video_capture(tmp_path / "b")
    with VideoWriter(root / "videos" / "cam_b.mp4", W, H, 10.0) as writer:
        writer.write(_flat(0, 0))
    with pytest.raises(CaptureError, match=r"videos/cam_b\.mp4: 1 frames, but .*cam_a\.mp4 has 3"):
        CaptureDataset(root)
    with VideoWriter(root / "videos" / "cam_b.mp4", 2 * W, H, 10.0) as writer:
        writer.write(np.zeros((H, 2 * W, 3), np.uint8))
    with pytest.raises(CaptureError, match=r"cam_b\.mp4: video is 64x24, cameras.json says 32x24"):
        CaptureDataset(root)
    (root / "videos" / "cam_b.mp4").write_bytes(b"nope")
    with pytest.raises(CaptureError, match=r"cam_b\.mp4: cannot decode"):
        CaptureDataset(root)
    for folder in ("videos", "mask_videos"):
        for path in (root / folder).iterdir():
            path.unlink()
        (root / folder).rmdir()
    with pytest.raises(CaptureError, match=r"frames: missing \(and no videos/ either\)"):
        CaptureDataset(root)
