"""The avatar that ships with the package: a trained bundle that loads, renders and is served."""

from __future__ import annotations

import torch

from npga.bundle import DEMO_AVATAR_DIR, FACEMESH_SPACE, load_bundle
from npga.model import HeadPose
from telepresence.avatars import DEMO_AVATAR_ID, AvatarRegistry


def test_demo_avatar_is_a_trained_bundle_a_sender_can_drive() -> None:
    bundle = load_bundle(DEMO_AVATAR_DIR)
    assert bundle.config.expression_space == FACEMESH_SPACE
    assert bundle.summary["model"] == "npga" and bundle.summary["iterations"] > 0
    assert bundle.expression_encoder().dim == bundle.config.expression_dim
    assert bundle.calibration is not None  # trained on multi-view codes, driven by one webcam
    assert (DEMO_AVATAR_DIR / "avatar.safetensors").stat().st_size < 20 * 2**20
    assert not any(str(v).startswith("/") for v in bundle.summary.values())  # no build paths


def test_demo_avatar_renders_a_head_that_follows_the_codes() -> None:
    bundle = load_bundle(DEMO_AVATAR_DIR)
    avatar = bundle.avatar
    camera = bundle.default_camera.resized(96, 96)
    codes = torch.zeros(2, bundle.config.expression_dim)
    codes[1, 0] = 2.0  # two standard deviations along the main expression component
    with torch.inference_mode():
        rgb = avatar.render(codes, camera, HeadPose.identity(2), cache=avatar.inference_cache()).rgb
    neutral, moved = rgb[0, 0], rgb[1, 0]
    head = (neutral < 0.9).any(dim=-1)  # not the white background
    assert 0.1 < float(head.float().mean()) < 0.8  # the head fills part of the frame
    assert float((moved - neutral).abs().amax(dim=-1).gt(0.1).float().mean()) > 0.005


def test_server_serves_the_demo_avatar_by_default() -> None:
    registry = AvatarRegistry.load((), torch.device("cpu"), 64)
    assert registry.ids == [DEMO_AVATAR_ID]
    loaded = registry.get(DEMO_AVATAR_ID)
    assert loaded.bundle.summary["model"] == "npga"
    assert 0.05 < loaded.face_unit_metres < 0.12
