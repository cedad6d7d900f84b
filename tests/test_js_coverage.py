"""The recording checks of 'Create my avatar' (web_client/src/coverage.js, run under node).

Head turns: real Face Mesh landmarks of the synthetic performer turning ±35° and nodding ±15°;
the yaw and pitch the page measures must follow where the nose points in the picture (a person
turning to their left shows the camera their nose to the picture's right). Expressions: the
template face with one feature moved at a time; each is counted, and a still face counts none.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clips import front_frames
from npga.data.synth.writer import SynthConfig, write_synth
from npga.tracking.expression import ExpressionBasis
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.template import load_default_template

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"
NODE = shutil.which("node")
CALIBRATION = 10
NOSE_TIP, FACE_RIGHT, FACE_LEFT, FOREHEAD, CHIN = 1, 234, 454, 10, 152

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _run(tmp_path: Path, sequences: list[list[list[list[float]] | None]]) -> list[dict]:
    template = load_default_template()
    rng = np.random.default_rng(0)
    training = rng.normal(0, 0.02, (20, template.points.shape[0], 3))
    basis = ExpressionBasis.fit(training, 4, template).to_json()
    source, out = tmp_path / "coverage_in.json", tmp_path / "coverage_out.json"
    spec = {"basis": basis, "calibration_frames": CALIBRATION, "fps": 5, "sequences": sequences}
    source.write_text(json.dumps(spec))
    assert NODE is not None
    subprocess.run(
        [NODE, str(WEB_CLIENT / "test" / "run_coverage.mjs"), str(source), str(out)],
        check=True,
        timeout=60,
    )
    return list(json.loads(out.read_text()))


def test_turns_follow_where_the_nose_points(tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    write_synth(capture, SynthConfig(frames=150, cameras=1, resolution=256, seed=2,
                                     head_motion="wide"))  # fmt: skip
    tracker = FaceMeshTracker()
    try:
        points = [tracker.process(rgb) for rgb in front_frames(capture)]
    finally:
        tracker.close()
    faces = [p.points for p in points if p is not None]
    assert len(faces) > 120
    # start where the head faces the camera (the recording's first prompt): the neutral
    frontal = int(np.argmin([abs(_nose_x(f[None])[0]) for f in faces]))
    faces = faces[frontal:] + faces[:frontal]
    (result,) = _run(tmp_path, [[f.tolist() for f in faces]])
    measured = [(k, t) for k, t in enumerate(result["turns"]) if t is not None]
    index = np.array([k for k, _ in measured])
    yaw = np.array([t["yaw"] for _, t in measured])
    pitch = np.array([t["pitch"] for _, t in measured])
    stack = np.stack(faces)[index]
    nose_x = _nose_x(stack)
    nose_x -= np.median(nose_x[:CALIBRATION])  # turns count from the neutral (the first frames)
    # + : the nose higher in the face than at the start (looking up)
    height = stack[:, CHIN, 1] - stack[:, FOREHEAD, 1]
    nose_y = -(stack[:, NOSE_TIP, 1] - stack[:, FOREHEAD, 1]) / height
    nose_y -= np.median(nose_y[:CALIBRATION])
    print(f"yaw {yaw.min():.0f}..{yaw.max():.0f} deg, pitch {pitch.min():.0f}..{pitch.max():.0f}")
    assert np.corrcoef(yaw, nose_x)[0, 1] > 0.9
    assert np.corrcoef(pitch, nose_y)[0, 1] > 0.7
    clearly = np.abs(nose_x) > 0.1
    assert clearly.sum() > 10 and np.all(np.sign(yaw[clearly]) == np.sign(nose_x[clearly]))
    assert np.ptp(yaw) > 50 and np.ptp(pitch) > 15  # the ±35° turns, ±15° nods
    assert {"left", "right"} <= {m.removeprefix("turn ") for m in _seen(result)}


def _nose_x(faces: np.ndarray) -> np.ndarray:
    """Landmarks [N, L, 3] -> [N]: the nose's offset from the face's middle in face widths,
    + to the picture's right (where a person turning to their left shows it)."""
    middle = 0.5 * (faces[:, FACE_LEFT, 0] + faces[:, FACE_RIGHT, 0])
    width = np.abs(faces[:, FACE_LEFT, 0] - faces[:, FACE_RIGHT, 0])
    return np.asarray((faces[:, NOSE_TIP, 0] - middle) / width)


def _seen(result: dict) -> set[str]:
    every = {"turn left", "turn right", "turn up", "turn down", "neutral", "mouth open", "smile",
             "brows raised", "blink", "talk"}  # fmt: skip
    return every - set(result["summary"]["missing"])


def _face(moves: dict[int, tuple[float, float]] | None = None) -> list[list[float]]:
    """The template as a face in a 640 x 480 picture, landmarks moved by ``moves`` (dx, dy in
    eye-corner distances)."""
    template = load_default_template().points
    unit = np.linalg.norm(template[33] - template[263])
    assert template[152, 1] > template[10, 1]  # image axes: y down, the chin below the brow
    points = template / unit * 90.0 + [320.0, 240.0, 0.0]
    for index, (dx, dy) in (moves or {}).items():
        points[index, :2] += np.array([dx, dy]) * 90.0
    return points.tolist()


def test_each_expression_counts_and_a_still_face_counts_none(tmp_path: Path) -> None:
    still = [_face() for _ in range(CALIBRATION)]
    mouth_open = {14: (0, 0.25), 87: (0, 0.22), 317: (0, 0.22)}
    smile = {61: (-0.08, -0.03), 291: (0.08, -0.03)}
    brows = {105: (0, -0.08), 334: (0, -0.08), 66: (0, -0.08), 296: (0, -0.08)}
    blink = {159: (0, 0.07), 386: (0, 0.07), 145: (0, -0.02), 374: (0, -0.02)}  # lids shut
    talk = [_face({14: (0, 0.08)}) if k % 2 else _face() for k in range(8)]
    gap = [_face() for _ in range(25)]  # 5 s at the page's 5 checks a second
    slow_talk = [*talk[:2], *gap, *talk[:2], *gap, *talk[:2], _face()]  # 3 cycles over 10 s
    results = _run(
        tmp_path,
        [
            still + [_face() for _ in range(20)],
            [*still, _face(mouth_open)],
            [*still, _face(smile)],
            [*still, _face(brows)],
            [*still, _face(blink)],
            still + talk,
            still[:-1],  # not enough frames for the neutral
            still + slow_talk,  # a mouth opened now and then is not talking
        ],
    )
    seen = [_seen(r) for r in results]
    assert seen[0] == {"neutral"}
    assert "mouth open" in seen[1]
    assert seen[2] == {"neutral", "smile"}
    assert seen[3] == {"neutral", "brows raised"}
    assert seen[4] == {"neutral", "blink"}
    assert seen[5] == {"neutral", "talk"}
    assert seen[6] == set()
    assert seen[7] == {"neutral"}
    assert results[0]["summary"]["turns"] == 0 and results[0]["summary"]["expressions"] == 1
