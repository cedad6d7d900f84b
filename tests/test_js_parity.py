"""The browser sender's encoder (web_client/src/tracking.js, run under node) against npga.tracking.

Python writes test vectors (landmarks and timestamps through calibration, expression, pose
changes, a frame without a face and a recalibration), node runs the JS port on them, and the
codes, pose, gaze and wire bytes must agree within float16 precision.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from npga.codes import ExpressionFrame, FrameFlags, decode_frame, encode_frame
from npga.tracking.expression import ExpressionBasis, canonicalize
from npga.tracking.gaze import gaze_angles
from npga.tracking.identity import Continuity
from npga.tracking.pipeline import ExpressionTracker, FaceObservation, TrackerConfig
from npga.tracking.procrustes import Similarity
from npga.tracking.template import load_default_template

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"
NODE = shutil.which("node")
CALIBRATION_FRAMES = 12
E = 16

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))  # fmt: skip
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _vectors() -> tuple[dict, ExpressionBasis, list[dict]]:
    rng = np.random.default_rng(7)
    template = load_default_template()
    num = template.points.shape[0]
    training = rng.normal(0, 0.02, (40, num, 3)) * rng.uniform(0.2, 1.0, (1, num, 1))
    fitted = ExpressionBasis.fit(training, E, template)
    basis_json = json.loads(json.dumps(fitted.to_json()))  # the JSON the server hands out
    basis = ExpressionBasis.from_json(basis_json)
    frames: list[dict] = []
    t = 100.0
    for i in range(95):
        t += 1 / 30 + rng.uniform(-0.004, 0.004)
        if i == 20 or 64 <= i < 72:
            frames.append({"points": None, "t": t})  # no face: one frame, then a longer loss
            continue
        calibrating = i < CALIBRATION_FRAMES + 1
        weight = 0.0 if calibrating else 1.5 * np.sin(i / 5)
        expression = weight * training[i % 40] * 2
        if i == 5:
            expression = training[3] * 6  # an outlier frame for the MAD rule
        cut = i >= 82  # a shot cut: the face elsewhere in the image and larger
        pose = Similarity(
            _rotation(0.2 * np.sin(i / 9), 0.1 * np.cos(i / 7), 0.05 * np.sin(i / 4)),
            np.array([320.0 + 10 * np.sin(i / 6) + 150 * cut, 240.0 + 5 * i / 60, 3.0]),
            180.0 * (1 + 0.05 * np.sin(i / 8)) * (1.4 if cut else 1.0),
        )
        noise = rng.normal(0, 0.3, (num, 3))
        points = pose.apply(template.points + expression) + noise
        continuity = {72: Continuity.REACQUIRED, 82: Continuity.NEW_SHOT}.get(i, 0)
        frames.append(
            {"points": points.tolist(), "t": t, "recalibrate": i == 40, "continuity": continuity}
        )
    return basis_json, basis, frames


def _python_frames(basis: ExpressionBasis, frames: list[dict]) -> list[dict]:
    tracker = ExpressionTracker(
        basis.template, basis, TrackerConfig(calibration_frames=CALIBRATION_FRAMES)
    )
    out = []
    for seq, item in enumerate(frames):
        if item.get("recalibrate"):
            tracker.recalibrate()
        observation = None
        if item["points"] is not None:
            pose, canonical = canonicalize(np.asarray(item["points"]), basis.template)
            observation = FaceObservation(
                pose, canonical, gaze_angles(canonical),
                continuity=Continuity(item.get("continuity", 0)),
            )  # fmt: skip
        state = tracker.update(observation, item["t"])
        wire = encode_frame(state.to_expression_frame(seq, item["t"]))
        out.append({"state": state, "bytes": wire, "frame": decode_frame(wire)})
    return out


def test_js_encoder_matches_python(tmp_path: Path) -> None:
    basis_json, basis, frames = _vectors()
    expected = _python_frames(basis, frames)
    encode_cases = [
        {
            "seq": 4_000_000_000 + k,
            "timestamp": float(item["frame"].timestamp),
            "rotation": item["state"].rotation_wxyz.tolist(),
            "translation": item["state"].translation.tolist(),
            "gaze": item["state"].gaze.tolist(),
            "code": item["state"].code.tolist(),
            "flags": int(item["frame"].flags),
        }
        for k, item in enumerate(expected)
    ]
    special = [0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, 2.9e-8, 3e-8, 1e-9, 0.1, 1 / 3]
    special += np.random.default_rng(1).normal(0, 3, 200).tolist()
    special += [
        float(np.float16(x)) + 0.5 * float(np.spacing(np.float16(x))) for x in special[5:60]
    ]
    vectors = {
        "basis": basis_json,
        "calibration_frames": CALIBRATION_FRAMES,
        "frames": frames,
        "encode_cases": encode_cases,
        "float16_values": special,
    }
    vectors_path, out_path = tmp_path / "vectors.json", tmp_path / "js.json"
    vectors_path.write_text(json.dumps(vectors))
    assert NODE is not None
    subprocess.run(
        [NODE, str(WEB_CLIENT / "test" / "run_parity.mjs"), str(vectors_path), str(out_path)],
        check=True,
        timeout=60,
    )
    js = json.loads(out_path.read_text())

    # float16 rounding: bit-identical to numpy (round to nearest even, subnormals, overflow).
    numpy_bits = np.asarray(special, dtype=np.float64).astype("<f2").view("<u2").tolist()
    assert js["float16"] == numpy_bits
    # The wire encoder alone: byte-identical on the same values.
    for case, got in zip(encode_cases, js["encoded"], strict=True):
        frame = ExpressionFrame(
            seq=case["seq"],
            timestamp=case["timestamp"],
            rotation_wxyz=np.asarray(case["rotation"]),
            translation=np.asarray(case["translation"]),
            gaze=np.asarray(case["gaze"]),
            code=np.asarray(case["code"]),
            flags=FrameFlags(case["flags"]),
        )
        assert bytes.fromhex(got) == encode_frame(frame)
    # The whole tracker: the same state machine, the same numbers.
    assert len(js["frames"]) == len(expected)
    saw_code = False
    for seq, (want, got) in enumerate(zip(expected, js["frames"], strict=True)):
        state = want["state"]
        assert got["flags"] == int(want["frame"].flags), seq
        np.testing.assert_allclose(got["rotation"], state.rotation_wxyz, atol=1e-7)
        np.testing.assert_allclose(got["translation"], state.translation, atol=1e-7)
        np.testing.assert_allclose(got["gaze"], state.gaze, atol=1e-7)
        np.testing.assert_allclose(got["code"], state.code, rtol=1e-6, atol=1e-6)
        # On the wire: within float16 precision (one unit in the last place).
        want_code = want["frame"].code.astype(np.float64)
        ulp = np.spacing(np.abs(want_code).astype(np.float16)).astype(np.float64)
        assert (np.abs(np.asarray(got["decoded_code"]) - want_code) <= ulp).all(), seq
        decoded = decode_frame(bytes.fromhex(got["bytes"]), expected_dim=E)
        assert decoded.seq == seq
        saw_code |= bool(np.abs(state.code).max() > 0.5)
    assert saw_code  # the vectors exercise real codes, not only zeros
    # ... and a glide after a loss and a re-anchoring after a cut: no jump at either
    for back in (72, 82):
        step = np.abs(np.asarray(js["frames"][back]["translation"]) -
                      np.asarray(js["frames"][back - 1]["translation"])).max()  # fmt: skip
        assert step < 0.05, (back, step)
