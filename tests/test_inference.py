"""npga's one inference path (npga/inference.py): the live server and `npga render` show the
same head for the same frames."""

from __future__ import annotations

import numpy as np

from npga.bundle import AvatarBundle
from npga.codes import ExpressionFrame
from npga.framing import Framer, frontal_camera
from npga.inference import AvatarDriver
from npga.model import AvatarConfig, default_camera, synthetic_avatar
from npga.tracking import topology
from telepresence.avatars import AvatarRegistry, render_avatar

SMALL = AvatarConfig(expression_dim=8, feature_dim=8, hidden_dim=16)


def _bundle() -> AvatarBundle:
    return AvatarBundle(synthetic_avatar(2000, SMALL, seed=4).eval(), default_camera(48))


def _arrays(count: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 1, (count, 8)).astype(np.float32)
    angles = rng.uniform(-0.3, 0.3, count)
    rotations = np.stack([np.cos(angles), np.zeros(count), np.sin(angles), np.zeros(count)], 1)
    translations = rng.uniform(-0.8, 0.8, (count, 3)).astype(np.float32)  # face units
    timestamps = 10 + np.arange(count) / 30
    return codes, rotations.astype(np.float32), translations, timestamps


def test_the_server_and_npga_render_make_the_same_images() -> None:
    bundle = _bundle()
    codes, rotations, translations, timestamps = _arrays(4)
    loaded = AvatarRegistry.from_bundles({"a": bundle}, 48).get("a")
    frames: list[ExpressionFrame | None] = [
        ExpressionFrame(seq=i, timestamp=float(timestamps[i]), rotation_wxyz=rotations[i],
                        translation=translations[i], gaze=np.zeros(4), code=codes[i])
        for i in range(4)
    ]  # fmt: skip
    for mode in ("free", "auto", "fixed"):
        session = Framer(loaded.head, mode)  # one session's framer for all its frames
        served = render_avatar(loaded, frames, [session] * len(frames))
        # npga render's call: the recording's arrays, one framer for the whole clip
        driver = AvatarDriver(bundle)
        framer = Framer(driver.head, mode)
        camera = frontal_camera(driver.head, 48)
        offline = np.concatenate([
            driver.render(codes[i : i + 1], rotations[i : i + 1], translations[i : i + 1],
                          timestamps[i : i + 1], camera, [framer])
            for i in range(4)
        ])  # fmt: skip
        np.testing.assert_array_equal(served, offline)
        assert offline.shape == (4, 48, 48, 3) and offline.dtype == np.uint8


def test_a_face_unit_moves_the_head_by_the_avatars_own_eye_corner_distance() -> None:
    driver = AvatarDriver(_bundle())
    camera = frontal_camera(driver.head, 48)
    codes, rotations = np.zeros((2, 8), np.float32), np.tile([1.0, 0, 0, 0], (2, 1))
    one_unit = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    images = driver.render(codes, rotations, one_unit, np.zeros(2), camera)
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 5  # it moved
    template = driver.avatar.prior.template.detach().cpu().numpy()
    assert driver.face_unit_metres == topology.eye_corner_distance(template)
    neutral = driver.render_frames([None, None], camera)
    np.testing.assert_array_equal(neutral[0], images[0])
