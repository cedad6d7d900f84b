"""The zero-install browser sender in headless Chromium.

A fake camera plays a .y4m of the synthetic talking head (`npga synth`, front camera), Face Mesh
runs in the page, expression frames reach the server, and the avatar video that comes back
changes with the expression. Also: readable errors when the camera is refused or shows no face.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api

from browser_fixtures import (
    BROWSER_TEST_MARKS,
    error_text,
    keep_screenshots,
    launch_chromium,
    seat_pixels,
    server_thread,
    synthetic_head_frames,
    wait_until,
    write_y4m,
)

pytestmark = BROWSER_TEST_MARKS

STATE_JS = """() => {
  const t = window.telepresence;
  const s = t.trackerState;
  return {
    state: t.state, error: t.error, sent: t.framesSent, faces: t.facesSeen,
    bytes: t.lastFrameBytes, faceMeshMs: t.faceMeshMs, stats: t.stats[0] || null,
    calibrated: s ? s.calibrated : false, code: s ? s.code : null,
  };
}"""


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("camera")
    path = folder / "face.y4m"
    write_y4m(synthetic_head_frames(folder / "synth"), path)
    return path


def _camera_flags(video: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


@pytest.mark.usefixtures("loopback_ice")
def _lagged_correlation(samples: list[tuple[np.ndarray, np.ndarray]], lag: int) -> float:
    """Correlation of code differences with avatar-frame differences over all sample pairs,
    each frame paired with the code sent ``lag`` samples before it."""
    codes = [code for code, _ in samples][: len(samples) - lag]
    frames = [pixels for _, pixels in samples][lag:]
    shifted = list(zip(codes, frames, strict=True))
    pairs = [
        (float(np.abs(a[0] - b[0]).max()), float(np.abs(a[1] - b[1]).mean()))
        for a, b in combinations(shifted, 2)
    ]
    return float(np.corrcoef(np.asarray(pairs).T)[0, 1])


def test_browser_sender_drives_the_avatar(tmp_path: Path, face_video: Path) -> None:
    with server_thread() as server, sync_api.sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path / "profile", _camera_flags(face_video))
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?room=s1&role=sender&autojoin=1&avatar=anna")
            wait_until(lambda: page.evaluate(STATE_JS)["faces"] > 0, 30, "a face in the page")
            wait_until(lambda: page.evaluate(STATE_JS)["calibrated"], 30, "the neutral")
            received = wait_until(
                lambda: server.metric("telepresence_frames_received_total") > 20 or None,
                20,
                "expression frames at the server",
            )
            assert received
            # Sample (code, returned avatar frame) pairs while the face in the video talks.
            samples: list[tuple[np.ndarray, np.ndarray]] = []
            for _ in range(24):
                page.wait_for_timeout(250)
                state = page.evaluate(STATE_JS)
                pixels = seat_pixels(page)
                if pixels is not None and state["code"] is not None:
                    samples.append((np.asarray(state["code"]), pixels))
            page.screenshot(path=str(tmp_path / "sender.png"))
            state = page.evaluate(STATE_JS)

            # Choose another avatar: the server switches the seat, the page recalibrates.
            page.select_option("#avatar", "ben")
            wait_until(
                lambda: "you · ben" in page.locator(".seat.own figcaption").inner_text(),
                15,
                "the seat to show the new avatar",
            )
            page.click("#calibrate")
            assert not page.evaluate(STATE_JS)["calibrated"]
            wait_until(lambda: page.evaluate(STATE_JS)["calibrated"], 30, "a new neutral")
        finally:
            context.close()
    assert state["error"] is None, state["error"]
    assert state["bytes"] == 52 + 2 * 16  # E = 16 for the test avatars
    assert state["stats"]["framesDecoded"] > 20
    assert len(samples) >= 12
    # The returned avatar follows the expression: the pair of samples whose codes differ most
    # shows clearly different avatar frames.
    pairs = sorted(
        (float(np.abs(a[0] - b[0]).max()), float(np.abs(a[1] - b[1]).mean()))
        for a, b in combinations(samples, 2)
    )
    code_gap, image_gap = pairs[-1]
    still = float(np.median([gap for code, gap in pairs if code < 0.1] or [0.0]))
    # The returned frames lag the codes by the render + encode + network delay (100-700 ms on a
    # busy 2-core machine, samples are 250 ms apart): take the best of a few lags.
    correlation = max(_lagged_correlation(samples, lag) for lag in range(4))
    print(
        f"max code gap {code_gap:.3f}: image gap {image_gap:.2f} grey levels; "
        f"similar codes: {still:.2f}; correlation {correlation:.2f}"
    )
    print(f"uplink {state['bytes']} B/frame, Face Mesh {state['faceMeshMs']:.0f} ms/frame")
    assert code_gap > 0.3
    assert image_gap > 1.5 and image_gap > 2 * still  # beyond video-coding noise
    # The more the codes differ, the more the avatar frames differ (head motion adds its own).
    assert correlation > 0.2
    keep_screenshots(tmp_path, "sender.png")


def test_camera_refused_is_a_readable_error(tmp_path: Path) -> None:
    with server_thread() as server, sync_api.sync_playwright() as playwright:
        # A fake camera exists, but nobody answers the permission prompt: it is refused.
        context = launch_chromium(
            playwright, tmp_path / "profile", ["--use-fake-device-for-media-stream"]
        )
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?room=s2&role=sender&autojoin=1")
            wait_until(lambda: "permission" in error_text(page), 15, "the camera message")
            assert page.locator("#error").is_visible()
            page.screenshot(path=str(tmp_path / "camera_refused.png"))
        finally:
            context.close()
    keep_screenshots(tmp_path, "camera_refused.png")


@pytest.mark.usefixtures("loopback_ice")
def test_no_face_is_a_readable_error(tmp_path: Path) -> None:
    with server_thread() as server, sync_api.sync_playwright() as playwright:
        # Chromium's own fake camera: a moving test pattern, no face in it.
        context = launch_chromium(
            playwright,
            tmp_path / "profile",
            ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
        )
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?room=s3&role=sender&autojoin=1")
            wait_until(lambda: "No face" in error_text(page), 30, "the no-face message")
            assert page.locator("#face").inner_text() == "no face"
            state = page.evaluate(STATE_JS)
            page.screenshot(path=str(tmp_path / "no_face.png"))
        finally:
            context.close()
    assert state["faces"] == 0 and not state["calibrated"]
    keep_screenshots(tmp_path, "no_face.png")
