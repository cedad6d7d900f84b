"""Avatar bundles: a directory with ``avatar.safetensors`` (tensors) and ``avatar.json`` (metadata).

Loading is strict and never unpickles: every tensor the model config implies must be present with
the right shape, dtype and finite values, and nothing else; every problem is a one-line
:class:`BundleError` that names the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from npga.cameras import Cameras
from npga.model import AvatarConfig, GaussianAvatar
from npga.tracking.expression import ExpressionBasis
from npga.tracking.template import load_default_template

FORMAT_NAME = "npga-avatar"
FORMAT_VERSION = 1
TENSORS_FILE = "avatar.safetensors"
GAUSSIAN_COUNT_TENSOR = "gaussians.means"  # [N, 3]: its rows are the bundle's Gaussians
METADATA_FILE = "avatar.json"
# Stored in avatar.json (docs/architecture.md §6) rather than in the tensor file.
TEMPLATE_KEY = "prior.template"
# The expression space of Face Mesh landmarks projected on a PCA basis (npga.tracking).
FACEMESH_SPACE = "facemesh-pca"
CALIBRATION_KEY = "monocular_calibration"  # optional, in avatar.json's expression_space
# The avatar that ships with the package (trained on a synthetic capture; docs/training.md).
DEMO_AVATAR_DIR = Path(__file__).resolve().parent / "assets" / "demo"


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the file and the field."""


@dataclass
class AvatarBundle:
    """A loaded avatar with what its metadata says about it."""

    avatar: GaussianAvatar
    default_camera: Cameras  # one camera
    summary: dict[str, Any] = field(default_factory=dict)  # training summary, free-form JSON
    # [E, E]: maps a monocular sender's codes to the codes the avatar was trained on (None: the
    # identity); folded into expression_encoder()
    calibration: np.ndarray | None = None

    @property
    def config(self) -> AvatarConfig:
        return self.avatar.config

    def expression_encoder(self) -> ExpressionBasis:
        """What a sender needs to drive this avatar (served at /api/avatars/{id}/encoder)."""
        if self.config.expression_space != FACEMESH_SPACE:
            raise ValueError(
                f"avatar is driven in the {self.config.expression_space!r} space; live senders "
                f"produce {FACEMESH_SPACE!r}"
            )
        prior = self.avatar.prior
        encoder = ExpressionBasis.from_avatar(
            prior.basis.detach().cpu().numpy(),
            prior.template.detach().cpu().numpy(),
            load_default_template(),
        )
        return encoder if self.calibration is None else encoder.calibrated(self.calibration)


def _camera_to_json(camera: Cameras) -> dict[str, Any]:
    return {
        "width": camera.width,
        "height": camera.height,
        "world_to_cam": camera.world_to_cam[0].tolist(),
        "intrinsics": camera.intrinsics[0].tolist(),
    }


def save_bundle(
    path: str | Path,
    avatar: GaussianAvatar,
    default_camera: Cameras,
    summary: dict[str, Any] | None = None,
    calibration: np.ndarray | None = None,  # [E, E], see AvatarBundle.calibration
) -> Path:
    """Write ``avatar`` to the directory ``path`` (created if needed); returns the path."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in avatar.state_dict().items()}
    template = state.pop(TEMPLATE_KEY)
    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_gaussians": avatar.num_gaussians,
        "config": avatar.config.to_dict(),
        "expression_space": {
            "name": avatar.config.expression_space,
            "basis_shape": list(avatar.prior.basis.shape),
        },
        "template_landmarks": template.tolist(),
        "default_camera": _camera_to_json(default_camera.to("cpu")),
        "summary": summary or {},
    }
    if calibration is not None:
        metadata["expression_space"][CALIBRATION_KEY] = np.asarray(calibration).tolist()
    # Write both files next to their final names, then rename: a crash never leaves half a bundle.
    tmp_tensors = directory / (TENSORS_FILE + ".tmp")
    tmp_metadata = directory / (METADATA_FILE + ".tmp")
    save_file(state, str(tmp_tensors), metadata={"format": FORMAT_NAME})
    tmp_metadata.write_text(json.dumps(metadata, indent=1))
    tmp_tensors.replace(directory / TENSORS_FILE)
    tmp_metadata.replace(directory / METADATA_FILE)
    return directory


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise BundleError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BundleError(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _matrix(value: Any, shape: tuple[int, ...], where: str, name: str) -> Tensor:
    try:
        tensor = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise BundleError(f"{where}: field '{name}' is not a numeric array ({error})") from None
    if tuple(tensor.shape) != shape:
        raise BundleError(
            f"{where}: field '{name}' has shape {list(tensor.shape)}, expected {list(shape)}"
        )
    if not torch.isfinite(tensor).all():
        raise BundleError(f"{where}: field '{name}' contains NaN or Inf")
    return tensor


def _read_metadata(path: Path) -> dict[str, Any]:
    where = str(path)
    if not path.is_file():
        raise BundleError(f"{where}: file not found")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise BundleError(f"{where}: JSON nested too deeply to be an avatar") from None
    if not isinstance(metadata, dict):
        raise BundleError(f"{where}: top level must be a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise BundleError(
            f"{where}: field 'format' is {metadata.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{where}: field 'version' is {version!r}; this npga reads version {FORMAT_VERSION}"
        )
    return metadata


MAX_IMAGE_SIDE = 8192  # pixels, a bundle's default camera


def _read_camera(data: Any, where: str) -> Cameras:
    if not isinstance(data, dict):
        raise BundleError(f"{where}: field 'default_camera' must be an object")
    width = _require(data, "width", int, where + " default_camera")
    height = _require(data, "height", int, where + " default_camera")
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise BundleError(
            f"{where}: field 'default_camera' has image size {width}x{height}; each side must "
            f"be 1-{MAX_IMAGE_SIDE}"
        )
    w2c = _matrix(data.get("world_to_cam"), (4, 4), where, "default_camera.world_to_cam")
    k = _matrix(data.get("intrinsics"), (3, 3), where, "default_camera.intrinsics")
    focal_ok = float(k[0, 0]) > 0 and float(k[1, 1]) > 0
    if not focal_ok or k[2].tolist() != [0.0, 0.0, 1.0] or float(k[1, 0]) != 0.0:
        raise BundleError(
            f"{where}: field 'default_camera.intrinsics' is not a camera matrix "
            "[[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0"
        )
    if torch.linalg.det(w2c[:3, :3]).abs().item() < 1e-6 or w2c[3].tolist() != [0, 0, 0, 1]:
        raise BundleError(f"{where}: field 'default_camera.world_to_cam' is not a rigid transform")
    return Cameras(w2c[None], k[None], width, height)


def _stored_gaussians(path: Path) -> int | None:
    """How many Gaussians the tensor file holds (from its header, nothing loaded); None when it
    cannot tell (a missing or unreadable file is reported by :func:`_read_tensors`)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())  # a safe_open handle has no __contains__
            if GAUSSIAN_COUNT_TENSOR not in names:
                return None
            shape = handle.get_slice(GAUSSIAN_COUNT_TENSOR).get_shape()
    except (OSError, SafetensorError):
        return None
    return int(shape[0]) if shape else None


def _read_tensors(path: Path, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    where = str(path)
    if not path.is_file():
        raise BundleError(f"{where}: file not found")
    tensors: dict[str, Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            missing = sorted(set(expected) - names)
            unknown = sorted(names - set(expected))
            if missing:
                raise BundleError(f"{where}: missing tensor '{missing[0]}'")
            if unknown:
                raise BundleError(f"{where}: unexpected tensor '{unknown[0]}'")
            for name, like in expected.items():
                tensor = handle.get_tensor(name)
                if tensor.dtype != like.dtype:
                    raise BundleError(
                        f"{where}: tensor '{name}' has dtype {tensor.dtype}, expected {like.dtype}"
                    )
                if tensor.shape != like.shape:
                    raise BundleError(
                        f"{where}: tensor '{name}' has shape {list(tensor.shape)}, "
                        f"expected {list(like.shape)}"
                    )
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise BundleError(f"{where}: tensor '{name}' contains NaN or Inf")
                tensors[name] = tensor
    except SafetensorError as error:
        raise BundleError(f"{where}: truncated or corrupt safetensors file ({error})") from None
    except (OSError, RuntimeError) as error:
        raise BundleError(f"{where}: cannot read tensors ({error})") from None
    return tensors


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> AvatarBundle:
    """Load and validate the bundle in directory ``path``; raises :class:`BundleError`."""
    directory = Path(path)
    if not directory.is_dir():
        raise BundleError(f"{directory}: not an avatar bundle directory")
    metadata_path = directory / METADATA_FILE
    where = str(metadata_path)
    for name in (METADATA_FILE, TENSORS_FILE):  # no links out of the bundle's directory
        inside = (directory / name).resolve().parent == directory.resolve()
        if (directory / name).exists() and not inside:
            raise BundleError(f"{directory / name}: points outside the bundle directory")
    metadata = _read_metadata(metadata_path)
    num_gaussians = _require(metadata, "num_gaussians", int, where)
    if num_gaussians < 1:
        raise BundleError(f"{where}: field 'num_gaussians' must be positive")
    stored = _stored_gaussians(directory / TENSORS_FILE)
    if stored is not None and stored != num_gaussians:  # checked before anything is allocated
        raise BundleError(
            f"{where}: field 'num_gaussians' is {num_gaussians} but the tensors hold {stored}"
        )
    try:
        config = AvatarConfig.from_dict(_require(metadata, "config", dict, where))
    except (TypeError, ValueError) as error:
        raise BundleError(f"{where}: field 'config': {error}") from None
    space = _require(metadata, "expression_space", dict, where)
    if space.get("name") != config.expression_space:
        raise BundleError(f"{where}: field 'expression_space.name' disagrees with config")
    basis_shape = [config.expression_dim, config.num_landmarks, 3]
    if space.get("basis_shape") != basis_shape:
        raise BundleError(f"{where}: field 'expression_space.basis_shape' is not {basis_shape}")
    template = _matrix(
        metadata.get("template_landmarks"), (config.num_landmarks, 3), where, "template_landmarks"
    )
    calibration = None
    if CALIBRATION_KEY in space:
        shape = (config.expression_dim, config.expression_dim)
        name = f"expression_space.{CALIBRATION_KEY}"
        calibration = _matrix(space[CALIBRATION_KEY], shape, where, name).double().numpy()
    camera = _read_camera(metadata.get("default_camera"), where)
    summary = _require(metadata, "summary", dict, where)

    avatar = GaussianAvatar(config, num_gaussians)
    expected = {k: v for k, v in avatar.state_dict().items() if k != TEMPLATE_KEY}
    tensors = _read_tensors(directory / TENSORS_FILE, expected)
    tensors[TEMPLATE_KEY] = template
    index = tensors["prior.neighbor_index"]
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= config.num_landmarks):
        raise BundleError(
            f"{directory / TENSORS_FILE}: tensor 'prior.neighbor_index' points outside the "
            f"{config.num_landmarks} landmarks"
        )
    weight = tensors["prior.neighbor_weight"]
    if weight.numel() and (float(weight.min()) < 0 or float(weight.sum(dim=1).max()) > 1.001):
        raise BundleError(
            f"{directory / TENSORS_FILE}: tensor 'prior.neighbor_weight' has rows that are "
            "negative or sum to more than 1 (they blend landmark motion)"
        )
    avatar.load_state_dict(tensors)
    return AvatarBundle(avatar.to(device).eval(), camera.to(device), summary, calibration)
