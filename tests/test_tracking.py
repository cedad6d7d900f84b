"""Tracking on a real photograph: landmarks, head pose, neutral calibration, the basis."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from npga.tracking import (
    ExpressionBasis,
    ExpressionTracker,
    FaceMeshTracker,
    NeutralCalibrator,
    OneEuroConfig,
    OneEuroFilter,
    TrackerConfig,
    build_template,
    canonicalize,
    gaze_angles,
    load_default_template,
    roll_degrees,
    weighted_procrustes,
)
from npga.tracking.bench import random_basis
from npga.tracking.expression import fit_code_calibration


@pytest.fixture(scope="module")
def tracker():
    with FaceMeshTracker(static_images=True) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def _warp(image: np.ndarray, angle: float, scale: float, shift: tuple[float, float]):
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (w, h), borderValue=(255, 255, 255)), matrix


def test_face_mesh_finds_478_landmarks_on_a_real_photo(tracker, astronaut) -> None:
    face = tracker.process(astronaut)
    assert face is not None and face.points.shape == (478, 3)
    x, y = face.points[:, 0], face.points[:, 1]
    assert 150 < x.mean() < 350 and 50 < y.mean() < 250  # the astronaut's face, upper middle
    assert tracker.process(np.full((240, 320, 3), 128, np.uint8)) is None  # no face: None


@pytest.mark.parametrize(
    ("angle", "scale", "shift"),
    [(30, 1.0, (0, 0)), (-30, 1.0, (0, 0)), (12, 0.75, (20, -15)), (0, 1.25, (-30, 25))],
)
def test_pose_follows_rotations_scalings_and_shifts(
    tracker, astronaut, angle, scale, shift
) -> None:
    template = load_default_template()
    base_pose, _ = canonicalize(tracker.process(astronaut).points, template)
    warped, matrix = _warp(astronaut, angle, scale, shift)
    face = tracker.process(warped)
    assert face is not None
    pose, _ = canonicalize(face.points, template)
    # cv2's positive angle turns the image counter-clockwise: roll (y down) goes negative
    roll_change = roll_degrees(pose.rotation) - roll_degrees(base_pose.rotation)
    assert abs(roll_change + angle) < 2.0, roll_change
    assert abs(pose.scale / base_pose.scale - scale) < 0.03 * scale
    expected_centre = matrix[:, :2] @ base_pose.translation[:2] + matrix[:, 2]
    assert np.linalg.norm(pose.translation[:2] - expected_centre) < 4.0


def test_neutral_calibrated_identical_frame_has_zero_code(astronaut) -> None:
    template = load_default_template()
    basis = random_basis(template, 32)
    config = TrackerConfig(calibration_frames=3, filter=None)
    tracker = ExpressionTracker(template, basis, config, FaceMeshTracker(static_images=True))
    states = [tracker.process(astronaut, i / 30) for i in range(4)]
    tracker.close()
    assert states[0].calibrating and not states[3].calibrating
    assert states[3].code is not None
    assert np.linalg.norm(states[3].code) < 1e-6 * np.sqrt(32) / 0.01
    np.testing.assert_allclose(states[3].rotation_wxyz, [1, 0, 0, 0], atol=1e-6)


def test_no_face_holds_the_last_state(astronaut) -> None:
    template = load_default_template()
    config = TrackerConfig(calibration_frames=1)
    tracker = ExpressionTracker(template, random_basis(template, 8), config)
    turned, _ = _warp(astronaut, 10, 1.0, (0, 0))
    tracker.process(astronaut, 0.0)
    seen = tracker.process(turned, 0.1)
    lost = tracker.process(np.zeros((200, 200, 3), np.uint8), 0.2)
    tracker.close()
    assert seen.face_present and not lost.face_present
    np.testing.assert_array_equal(lost.rotation_wxyz, seen.rotation_wxyz)
    assert lost.code is not None and seen.code is not None
    np.testing.assert_array_equal(lost.code, seen.code)


def test_basis_round_trips_displacements_it_spans() -> None:
    template = load_default_template()
    rng = np.random.default_rng(0)
    true = rng.normal(size=(6, 478 * 3))
    weights = rng.normal(size=(200, 6)) * np.array([5, 4, 3, 2, 1, 0.5])
    displacements = (weights @ true).reshape(200, 478, 3)
    basis = ExpressionBasis.fit(displacements, 6, template)
    assert np.all(np.diff(basis.explained_variance_ratio) <= 0)
    assert basis.explained_variance_ratio.sum() == pytest.approx(1.0)
    codes = basis.encode(displacements)
    np.testing.assert_allclose(basis.decode(codes), displacements, atol=1e-9)
    assert np.std(codes, axis=0) == pytest.approx(np.ones(6), rel=0.2)  # ~unit-scale codes
    restored = ExpressionBasis.from_json(json.loads(json.dumps(basis.to_json())))
    np.testing.assert_allclose(restored.decode(codes[:3]), displacements[:3], atol=1e-3)


def test_calibrated_encoder_sends_the_calibrated_code() -> None:
    """What a sender computes with the served encoder (JSON, rows not orthogonal) is the
    calibration applied to the plain code."""
    rng = np.random.default_rng(1)
    basis = random_basis(load_default_template(), 6)
    calibration = rng.normal(size=(6, 6))
    displacements = rng.normal(scale=0.01, size=(5, 478, 3))
    served = ExpressionBasis.from_json(
        json.loads(json.dumps(basis.calibrated(calibration).to_json()))
    )
    expected = basis.encode(displacements) @ calibration.T
    np.testing.assert_allclose(served.encode(displacements), expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="finite \\[6, 6\\]"):
        basis.calibrated(np.full((6, 6), np.nan))


def test_code_calibration_recovers_a_linear_distortion() -> None:
    """Monocular codes = a distortion of the true ones plus noise: the fit undoes it on codes it
    never saw, far better than leaving them as they are."""
    rng = np.random.default_rng(2)
    true = rng.normal(size=(400, 8))
    distortion = np.diag(rng.uniform(0.3, 1.0, 8)) + 0.1 * rng.normal(size=(8, 8))  # Face Mesh-like
    monocular = true @ distortion.T + 0.02 * rng.normal(size=true.shape)
    calibration = fit_code_calibration(monocular[:300], true[:300])
    error = np.abs(monocular[300:] @ calibration.T - true[300:]).mean()
    assert error < 0.15 * np.abs(monocular[300:] - true[300:]).mean()  # measured: 0.09
    with pytest.raises(ValueError, match="two \\[T, E\\] arrays"):
        fit_code_calibration(monocular, true[:, :4])


def test_basis_json_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "basis.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not an expression basis"):
        ExpressionBasis.load(bad)
    with pytest.raises(ValueError, match="file not found"):
        ExpressionBasis.load(tmp_path / "missing.json")


def test_neutral_calibration_ignores_outliers() -> None:
    rng = np.random.default_rng(1)
    neutral = rng.normal(size=(478, 3))
    calibrator = NeutralCalibrator(frames=20)
    result = None
    for i in range(20):
        frame = neutral + 0.001 * rng.normal(size=(478, 3))
        if i in (3, 11):
            frame = frame + 0.5  # a blink / glitch
        result = calibrator.add(frame)
    assert result is not None
    assert np.abs(result - neutral).max() < 0.005


def test_committed_template_is_what_the_builder_makes(tracker, astronaut) -> None:
    rebuilt = build_template(tracker.process(astronaut).points)
    np.testing.assert_allclose(load_default_template().points, rebuilt.points, atol=1e-3)


def test_procrustes_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(2)
    source = rng.normal(size=(50, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    target = 2.5 * source @ rotation.T + np.array([1.0, -2.0, 3.0])
    fitted = weighted_procrustes(source, target, np.ones(50))
    np.testing.assert_allclose(fitted.rotation, rotation, atol=1e-9)
    assert fitted.scale == pytest.approx(2.5)
    np.testing.assert_allclose(fitted.invert(target), source, atol=1e-9)


def test_gaze_follows_the_iris() -> None:
    template = load_default_template().points.copy()
    straight = gaze_angles(template)
    looking_right = template.copy()
    looking_right[[468, 473], 0] += 0.05  # both irises move towards image right
    turned = gaze_angles(looking_right)
    assert turned[0] > straight[0] + 0.05 and turned[2] > straight[2] + 0.05
    assert abs(turned[1] - straight[1]) < 1e-9


def test_one_euro_smooths_noise_and_follows_steps() -> None:
    rng = np.random.default_rng(3)
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    noisy = [f(np.array([rng.normal(scale=0.1)]), i / 30)[0] for i in range(300)]
    assert np.std(noisy[30:]) < 0.05
    g = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=5.0))
    out = [g(np.array([0.0 if i < 30 else 1.0]), i / 30)[0] for i in range(60)]
    assert out[40] > 0.9  # a fast move is followed quickly with a large beta


def test_interrupted_and_resumed_tracking_equals_uninterrupted(tmp_path: Path) -> None:
    from npga.tracking.bench import synth_face_video
    from npga.tracking.run import observe_source, recording_from_observations
    from npga.tracking.sources import Frame, FrameSource

    video = synth_face_video(50)

    class Clip(FrameSource):
        def __init__(self, stop_after: int | None = None) -> None:
            super().__init__("clip", len(video))
            self.stop_after = stop_after

        def frames(self):
            for i, rgb in enumerate(video):
                if self.stop_after is not None and i == self.stop_after:
                    raise KeyboardInterrupt
                yield Frame(rgb, i / 30)

    template = load_default_template()
    whole = recording_from_observations(observe_source(Clip(), template), template, fit_dim=8)
    checkpoint = tmp_path / "codes.npz.partial.npz"
    with pytest.raises(KeyboardInterrupt):
        observe_source(Clip(stop_after=23), template, checkpoint)
    partial = observe_source(Clip(), template, checkpoint, resume=True)
    assert len(partial) == 50
    resumed = recording_from_observations(partial, template, fit_dim=8)
    assert whole.detected == resumed.detected == 50
    # Face Mesh re-detects the face on the first frame after the restart (instead of tracking
    # from the previous box), so landmarks there may move by a fraction of a pixel.
    np.testing.assert_allclose(
        resumed.recording.rotation_wxyz, whole.recording.rotation_wxyz, atol=2e-3
    )
    np.testing.assert_array_equal(resumed.recording.face_present, whole.recording.face_present)
