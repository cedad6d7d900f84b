"""The zero-install browser sender in headless Chromium.

A fake camera plays a .y4m of the synthetic talking head (`npga synth`, front camera), Face Mesh
runs in the page, expression frames reach the server, and the avatar video that comes back
changes with the expression. Also: readable errors when the camera is refused or shows no face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api

from browser_fixtures import (
    BROWSER_TEST_MARKS,
    MOTION,
    camera_flags,
    error_text,
    frame_motion,
    keep_screenshots,
    launch_chromium,
    sender_state,
    server_thread,
    synthetic_head_frames,
    wait_for_motion,
    wait_until,
    write_y4m,
)

pytestmark = BROWSER_TEST_MARKS


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("camera")
    path = folder / "face.y4m"
    write_y4m(synthetic_head_frames(folder / "synth"), path)
    return path


@pytest.mark.usefixtures("loopback_ice")
def test_browser_sender_drives_the_avatar(tmp_path: Path, face_video: Path) -> None:
    with server_thread() as server, sync_api.sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path / "profile", camera_flags(face_video))
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?room=s1&role=sender&autojoin=1&avatar=anna")
            wait_until(lambda: sender_state(page)["faces"] > 0, 30, "a face in the page")
            wait_until(lambda: sender_state(page)["calibrated"], 30, "the neutral")
            received = wait_until(
                lambda: server.metric("telepresence_frames_received_total") > 20 or None,
                20,
                "expression frames at the server",
            )
            assert received
            # While the face in the video talks, the returned avatar moves...
            wait_for_motion(page, 30, "the returned avatar to move")
            moving, codes = frame_motion(page, 5.0)
            # ...when the page stops sending, the server holds the last frame and it stands still
            # (after the render + encode + network delay drains)...
            page.click("#pause")
            page.wait_for_timeout(1500)
            received_paused = server.metric("telepresence_frames_received_total")
            paused, _ = frame_motion(page, 3.0)
            received_after_pause = server.metric("telepresence_frames_received_total")
            # ...and moves again when it resumes.
            page.click("#pause")
            wait_for_motion(page, 30, "the avatar to move again after resuming")
            resumed, _ = frame_motion(page, 3.0)
            # the page reports its own avatar's latency estimate into the server's /metrics
            reported = server.metric("telepresence_client_e2e_estimate_ms_count")
            estimate_ms = server.metric("telepresence_client_e2e_estimate_ms_sum") / reported
            assert reported >= 1 and 0 < estimate_ms < 2000, (reported, estimate_ms)
            page.screenshot(path=str(tmp_path / "sender.png"))
            state = sender_state(page)
            assert "You are driving: anna" in page.locator("#driving").inner_text()
            slow_note = page.locator("#slow-tracking")
            # the page says so exactly when Face Mesh is slower than 50 ms a frame here
            assert slow_note.is_visible() == (state["faceMeshMs"] > 50), state["faceMeshMs"]

            # Choose another avatar: the server switches the seat, the page recalibrates.
            page.select_option("#avatar", "ben")
            wait_until(
                lambda: "you · ben" in page.locator(".seat.own figcaption").inner_text(),
                15,
                "the seat to show the new avatar",
            )
            page.click("#calibrate")
            assert not sender_state(page)["calibrated"]
            wait_until(lambda: sender_state(page)["calibrated"], 30, "a new neutral")

            # The camera goes away (as when unplugged): the page says so, the server holds the
            # last pose, and the page opens the camera again and goes on tracking.
            page.evaluate(
                "document.getElementById('self-view').srcObject"
                ".getVideoTracks().forEach((track) => track.stop())"
            )
            wait_until(
                lambda: (page.evaluate("window.telepresence.error") or "").startswith(
                    "The camera stopped"
                ),
                10,
                "the page to report the stopped camera",
            )
            page.screenshot(path=str(tmp_path / "camera-stopped.png"))
            wait_until(
                lambda: (
                    page.evaluate("window.telepresence.cameraReopened") >= 1
                    and page.evaluate("window.telepresence.error") is None
                ),
                20,
                "the camera to be reopened",
            )
            sent = page.evaluate("window.telepresence.framesSent")
            wait_until(
                lambda: page.evaluate("window.telepresence.framesSent") > sent + 10,
                15,
                "frames sent again from the reopened camera",
            )
        finally:
            context.close()
    assert state["error"] is None, state["error"]
    assert state["bytes"] == 52 + 2 * 16  # E = 16 for the test avatars
    assert state["stats"]["framesDecoded"] > 20
    code_spread = float(np.ptp(np.stack(codes), axis=0).max())
    print(
        f"avatar motion (mean grey-level change per 250 ms): sending {moving:.2f}, "
        f"paused {paused:.2f}, resumed {resumed:.2f}; code spread {code_spread:.2f}"
    )
    print(f"uplink {state['bytes']} B/frame, Face Mesh {state['faceMeshMs']:.0f} ms/frame")
    assert code_spread > 0.3  # the tracked expression changes while the face talks
    assert received_after_pause == received_paused  # paused means nothing is sent
    # The avatar moves only while the sender sends: beyond video-coding noise, and causal.
    assert moving > MOTION and moving > 3 * paused, (moving, paused)
    assert resumed > MOTION and resumed > 3 * paused, (resumed, paused)
    keep_screenshots(tmp_path, "sender.png", "camera-stopped.png")


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
            state = sender_state(page)
            page.screenshot(path=str(tmp_path / "no_face.png"))
        finally:
            context.close()
    assert state["faces"] == 0 and not state["calibrated"]
    keep_screenshots(tmp_path, "no_face.png")
