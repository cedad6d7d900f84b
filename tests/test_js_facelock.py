"""The browser sender follows one person among several faces (web_client/src/tracking.js
FaceLock, run under node): the most central and largest at start, never a passer-by who
comes closer, nothing while the person is away, the same person when they come back."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"
NODE = shutil.which("node")
WIDTH, HEIGHT, FPS = 640, 480, 30.0
CONTINUITY_REACQUIRED = 1

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def face(x: float, y: float, width: float) -> list[list[float]]:
    """A ring of 36 landmarks [36][3] (pixels) around (x, y), ``width`` across."""
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    ring = np.stack([x + width / 2 * np.cos(angles), y + width * 0.6 * np.sin(angles)], axis=1)
    return np.concatenate([ring, np.zeros((36, 1))], axis=1).tolist()


def follow(tmp_path: Path, frames: list[list[list[list[float]]]]) -> list[dict | None]:
    source, out = tmp_path / "facelock_in.json", tmp_path / "facelock_out.json"
    timed = [{"faces": faces, "timestamp": i / FPS} for i, faces in enumerate(frames)]
    source.write_text(json.dumps({"width": WIDTH, "height": HEIGHT, "frames": timed}))
    assert NODE is not None
    subprocess.run(
        [NODE, str(WEB_CLIENT / "test" / "run_facelock.mjs"), str(source), str(out)],
        check=True,
        timeout=60,
    )
    return list(json.loads(out.read_text()))


def test_the_lock_stays_on_one_person_among_two_faces(tmp_path: Path) -> None:
    person = lambda i: face(320 + 10 * np.sin(i / 10), 240, 160)  # noqa: E731
    # a passer-by walks in behind, toward the centre, and grows larger than the person
    passer = lambda i: face(600 - 2.4 * i, 100 + 0.4 * i, 60 + 2 * i)  # noqa: E731
    frames = [[passer(i), person(i)] for i in range(60)]  # 2 s, both in view
    frames += [[passer(60 + i)] for i in range(12)]  # the person looks away for 0.4 s
    frames += [[person(72 + i), passer(72 + i)] for i in range(15)]  # and is back
    followed = follow(tmp_path, frames)
    # every frame with the person in view follows them (x near 320), never the passer-by
    for i in [*range(60), *range(72, 87)]:
        chosen = followed[i]
        assert chosen is not None and abs(chosen["centre"][0] - 320) < 12, (i, chosen)
    # while the person is away, the passer-by (now the largest face) is not taken
    assert all(followed[i] is None for i in range(60, 72))
    assert followed[72]["continuity"] == CONTINUITY_REACQUIRED  # back after a gap: no pose jump


def test_the_most_central_largest_face_is_chosen_at_start(tmp_path: Path) -> None:
    frames = [[face(80, 80, 120), face(330, 250, 110), face(560, 400, 140)]] * 5
    followed = follow(tmp_path, frames)
    assert all(abs(f["centre"][0] - 330) < 1 for f in followed)


def test_a_lock_released_after_a_long_absence_takes_whoever_is_there(tmp_path: Path) -> None:
    frames = [[face(200, 240, 150)]] * 10 + [[]] * int(4 * FPS) + [[face(450, 240, 150)]] * 5
    followed = follow(tmp_path, frames)
    assert abs(followed[-1]["centre"][0] - 450) < 1  # someone new: a deliberate handover
