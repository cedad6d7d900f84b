"""Avatar bundles: round trip and strict, one-line errors for every kind of damage."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from npga.bundle import BundleError, load_bundle, save_bundle
from npga.model import AvatarConfig, default_camera, synthetic_avatar

CONFIG = AvatarConfig(expression_dim=8, num_landmarks=30, feature_dim=4, hidden_dim=16)


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    avatar = synthetic_avatar(150, CONFIG, seed=3)
    return save_bundle(tmp_path / "avatar", avatar, default_camera(64), {"psnr": 30.5})


def test_round_trip_renders_identically(bundle_dir: Path) -> None:
    original = synthetic_avatar(150, CONFIG, seed=3).eval()
    loaded = load_bundle(bundle_dir)
    assert loaded.summary == {"psnr": 30.5}
    assert loaded.default_camera.width == 64
    codes = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = original.render(codes, default_camera(64)).rgb
        b = loaded.avatar.render(codes, loaded.default_camera).rgb
    assert torch.equal(a, b)
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.avatar.state_dict()[name], tensor), name


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((path / "avatar.json").read_text())
    edit(data)
    (path / "avatar.json").write_text(json.dumps(data))


def _edit_tensors(path: Path, edit: Callable[[dict], None]) -> None:
    tensors = load_file(str(path / "avatar.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "avatar.safetensors"))


def _set_nan(tensors: dict) -> None:
    tensors["gaussians.means"][3, 1] = float("nan")


def _link_out(path: Path, name: str) -> None:
    """Replace a bundle file by a symbolic link to a copy outside the bundle's directory."""
    outside = path.parent / f"outside-{name}"
    (path / name).rename(outside)
    (path / name).symlink_to(outside)


def _truncate(path: Path) -> None:
    data = (path / "avatar.safetensors").read_bytes()
    (path / "avatar.safetensors").write_bytes(data[: len(data) // 2])


BAD_BUNDLES: dict[str, tuple[Callable[[Path], None], str]] = {
    "wrong version": (
        lambda p: _edit_json(p, lambda d: d.update(version=99)),
        r"avatar\.json: field 'version' is 99",
    ),
    "wrong format": (
        lambda p: _edit_json(p, lambda d: d.update(format="other")),
        r"avatar\.json: field 'format'",
    ),
    "missing tensor": (
        lambda p: _edit_tensors(p, lambda t: t.pop("fine.out.weight")),
        r"avatar\.safetensors: missing tensor 'fine\.out\.weight'",
    ),
    "unexpected tensor": (
        lambda p: _edit_tensors(p, lambda t: t.update(extra=torch.zeros(2))),
        r"avatar\.safetensors: unexpected tensor 'extra'",
    ),
    "wrong shape": (
        lambda p: _edit_tensors(p, lambda t: t.update({"gaussians.features": torch.zeros(150, 5)})),
        r"tensor 'gaussians\.features' has shape \[150, 5\], expected \[150, 4\]",
    ),
    "wrong dtype": (
        lambda p: _edit_tensors(
            p,
            lambda t: t.update(
                {"gaussians.opacity_logits": t["gaussians.opacity_logits"].double()}
            ),
        ),
        r"tensor 'gaussians\.opacity_logits' has dtype torch\.float64",
    ),
    "NaN": (lambda p: _edit_tensors(p, _set_nan), r"tensor 'gaussians\.means' contains NaN or Inf"),
    "truncated tensors": (_truncate, r"avatar\.safetensors: truncated or corrupt"),
    "garbage tensors": (
        lambda p: (p / "avatar.safetensors").write_bytes(b"\x00" * 7),
        r"avatar\.safetensors: truncated or corrupt",
    ),
    "missing tensors file": (
        lambda p: (p / "avatar.safetensors").unlink(),
        r"avatar\.safetensors: file not found",
    ),
    "corrupt JSON": (
        lambda p: (p / "avatar.json").write_text("{not json"),
        r"avatar\.json: not valid JSON",
    ),
    "missing JSON": (lambda p: (p / "avatar.json").unlink(), r"avatar\.json: file not found"),
    "bad config": (
        lambda p: _edit_json(p, lambda d: d["config"].update(sh_degree=5)),
        r"avatar\.json: field 'config': sh_degree",
    ),
    "bad template": (
        lambda p: _edit_json(p, lambda d: d.update(template_landmarks=[[0.0, 1.0]])),
        r"avatar\.json: field 'template_landmarks' has shape",
    ),
    "NaN template": (
        lambda p: _edit_json(p, lambda d: d["template_landmarks"][0].__setitem__(0, float("nan"))),
        r"field 'template_landmarks' contains NaN",
    ),
    "count mismatch": (
        lambda p: _edit_json(p, lambda d: d.update(num_gaussians=151)),
        r"avatar\.json: field 'num_gaussians' is 151 but the tensors hold 150",
    ),
    "a huge count declared": (  # refused from the header, before 5e8 Gaussians are allocated
        lambda p: _edit_json(p, lambda d: d.update(num_gaussians=500_000_000)),
        r"field 'num_gaussians' is 500000000 but the tensors hold 150",
    ),
    "a huge network declared": (
        lambda p: _edit_json(p, lambda d: d["config"].update(hidden_dim=30_000)),
        r"field 'config': hidden_dim must be at most 1024, got 30000",
    ),
    "deeply nested JSON": (
        lambda p: (p / "avatar.json").write_text("[" * 100_000 + "]" * 100_000),
        r"avatar\.json: JSON nested too deeply",
    ),
    "a link out of the bundle": (
        lambda p: _link_out(p, "avatar.safetensors"),
        r"avatar\.safetensors: points outside the bundle directory",
    ),
    "bad neighbour index": (
        lambda p: _edit_tensors(
            p,
            lambda t: t.update(
                {"prior.neighbor_index": torch.full_like(t["prior.neighbor_index"], 99)}
            ),
        ),
        r"tensor 'prior\.neighbor_index' points outside",
    ),
    "bad neighbour weights": (
        lambda p: _edit_tensors(
            p,
            lambda t: t.update(
                {"prior.neighbor_weight": torch.full_like(t["prior.neighbor_weight"], 5.0)}
            ),
        ),
        r"tensor 'prior\.neighbor_weight' has rows that are negative or sum to more than 1",
    ),
    "a negative focal length": (
        lambda p: _edit_json(
            p, lambda d: d["default_camera"]["intrinsics"][0].__setitem__(0, -100.0)
        ),
        r"field 'default_camera\.intrinsics' is not a camera matrix",
    ),
    "a huge camera image": (
        lambda p: _edit_json(p, lambda d: d["default_camera"].update(width=10**9)),
        r"field 'default_camera' has image size 1000000000x\d+",
    ),
    "a camera that is not rigid": (
        lambda p: _edit_json(
            p, lambda d: d["default_camera"].update(world_to_cam=[[0.0] * 4] * 3 + [[0, 0, 0, 1]])
        ),
        r"field 'default_camera\.world_to_cam' is not a rigid transform",
    ),
    "bad camera": (
        lambda p: _edit_json(p, lambda d: d["default_camera"].update(intrinsics=[[1, 2]])),
        r"field 'default_camera\.intrinsics' has shape",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_bad_bundles_give_one_line_errors_naming_file_and_field(
    bundle_dir: Path, case: str
) -> None:
    damage, message = BAD_BUNDLES[case]
    damage(bundle_dir)
    with pytest.raises(BundleError, match=message) as error:
        load_bundle(bundle_dir)
    assert "\n" not in str(error.value)
    assert str(bundle_dir) in str(error.value)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not an avatar bundle directory"):
        load_bundle(tmp_path / "nope")


def test_no_pickle_in_bundle(bundle_dir: Path) -> None:
    for file in bundle_dir.iterdir():
        assert b"\x80\x04\x95" not in file.read_bytes()[:64]  # pickle protocol 4 header


def test_a_facemesh_avatar_serves_an_encoder_consistent_with_its_prior(tmp_path: Path) -> None:
    config = AvatarConfig(expression_dim=16, feature_dim=4, hidden_dim=16)  # 478 landmarks
    save_bundle(tmp_path / "a", synthetic_avatar(200, config), default_camera(64))
    bundle = load_bundle(tmp_path / "a")
    encoder = bundle.expression_encoder()
    assert encoder.dim == 16 and encoder.num_landmarks == 478
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)).numpy()
    # a sender's displacement (face units) -> code -> the avatar's landmark motion (metres)
    np.testing.assert_allclose(encoder.encode(encoder.decode(z)), z, atol=1e-6)
    template = bundle.avatar.prior.template.numpy()
    face_unit = np.linalg.norm(template[263] - template[33])
    avatar_motion = bundle.avatar.prior.landmark_displacements(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(encoder.decode(z) * face_unit, avatar_motion, atol=1e-6)


def test_the_served_encoder_applies_the_bundled_calibration(tmp_path: Path) -> None:
    config = AvatarConfig(expression_dim=4, feature_dim=4, hidden_dim=8)
    avatar = synthetic_avatar(100, config)
    calibration = np.arange(16.0).reshape(4, 4) / 10 + np.eye(4)
    save_bundle(tmp_path / "a", avatar, default_camera(32), calibration=calibration)
    bundle = load_bundle(tmp_path / "a")
    assert bundle.calibration is not None
    np.testing.assert_allclose(bundle.calibration, calibration, rtol=1e-6)
    plain = replace(bundle, calibration=None).expression_encoder()
    displacement = np.random.default_rng(0).normal(scale=0.01, size=(478, 3))
    np.testing.assert_allclose(
        bundle.expression_encoder().encode(displacement),
        calibration @ plain.encode(displacement),
        rtol=1e-5,
    )
    metadata = json.loads((tmp_path / "a" / "avatar.json").read_text())
    metadata["expression_space"]["monocular_calibration"] = [[1.0, 2.0]]
    (tmp_path / "a" / "avatar.json").write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="monocular_calibration' has shape \\[1, 2\\]"):
        load_bundle(tmp_path / "a")


def test_encoder_needs_the_facemesh_space(tmp_path: Path) -> None:
    config = AvatarConfig(expression_dim=8, num_landmarks=30, expression_space="flame")
    save_bundle(tmp_path / "f", synthetic_avatar(50, config), default_camera(32))
    with pytest.raises(ValueError, match="live senders produce 'facemesh-pca'"):
        load_bundle(tmp_path / "f").expression_encoder()
