"""'Create my avatar' in headless Chromium, end to end.

Chromium's fake camera plays the synthetic performer turning its head widely. The page checks the
face and the light, records with MediaRecorder while it counts the turns and expressions it
sees, shows the clip for review, uploads it, follows the job (a tiny `npga create` recipe) to the
end, and then drives the new avatar from the same page: the video that comes back moves while
the page sends and stands still when it pauses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright import sync_api

from browser_fixtures import (
    BROWSER_TEST_MARKS,
    MOTION,
    camera_flags,
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
from server_fixtures import TINY_JOB_RECIPE

pytestmark = BROWSER_TEST_MARKS

RECORD_SECONDS = 14.0  # the page allows stopping after the server's minimum (3 s)
JOB_TIMEOUT = 420.0


@pytest.fixture(scope="module")
def turning_face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s loop of the synthetic performer turning ±35° and nodding ±15°, as a .y4m camera."""
    folder = tmp_path_factory.mktemp("camera")
    path = folder / "turning.y4m"
    write_y4m(synthetic_head_frames(folder / "synth", frames=180, head_motion="wide"), path)
    return path


def _creation(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("() => window.telepresence.creation"))


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
def test_record_upload_train_and_appear_as_the_new_avatar(
    tmp_path: Path, turning_face: Path
) -> None:
    shots = []

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(tmp_path / name))
        shots.append(name)

    with (
        server_thread(avatar_store=tmp_path / "avatars", job_recipe=TINY_JOB_RECIPE) as server,
        sync_api.sync_playwright() as playwright,
    ):
        context = launch_chromium(playwright, tmp_path / "profile", camera_flags(turning_face))
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?room=create1")
            page.click("#create-open")
            wait_until(
                lambda: _creation(page)["check"] == "Face found, light good", 60, "the live check"
            )
            assert page.locator("#create-start").is_enabled()
            shot(page, "create-1-ready.png")

            page.click("#create-start")
            wait_until(lambda: _creation(page)["seconds"] > 6, 20, "six seconds of recording")
            shot(page, "create-2-recording.png")
            wait_until(
                lambda: _creation(page)["seconds"] > RECORD_SECONDS, 30, "the rest of the recording"
            )
            page.click("#create-stop")
            wait_until(lambda: _creation(page)["phase"] == "review", 15, "the review")
            wait_until(
                lambda: page.evaluate("document.getElementById('create-clip').readyState") >= 1,
                15,
                "the recorded clip to load for review",
            )
            coverage = _creation(page)["coverage"]
            summary = page.locator("#create-summary").inner_text()
            shot(page, "create-3-review.png")

            page.fill("#create-name", "Sam")
            page.click("#create-upload")
            wait_until(
                lambda: (_creation(page)["job"] or {}).get("state") == "running",
                60,
                "the job to start",
            )
            wait_until(
                lambda: (_creation(page)["job"] or {}).get("stage", "").startswith("5/6"),
                JOB_TIMEOUT,
                "the job to train",
            )
            progress_text = page.locator("#create-stage").inner_text()
            shot(page, "create-4-training.png")
            wait_until(
                lambda: (_creation(page)["job"] or {}).get("state") in ("done", "failed"),
                JOB_TIMEOUT,
                "the job to finish",
            )
            job = _creation(page)["job"]
            assert job["state"] == "done", job
            wait_until(lambda: page.locator("#create-use").is_visible(), 10, "Appear as Sam")
            menu = page.locator("#avatar option").all_inner_texts()
            shot(page, "create-5-ready.png")

            page.click("#create-use")
            wait_until(lambda: sender_state(page)["calibrated"], 60, "the sender's neutral")
            wait_for_motion(page, 40, "the new avatar to move")
            moving, codes = frame_motion(page, 5.0)
            page.click("#pause")
            page.wait_for_timeout(1500)
            paused, _ = frame_motion(page, 3.0)
            page.click("#pause")
            driving = page.locator("#driving").inner_text()
            caption = page.locator(".seat.own figcaption").inner_text()
            shot(page, "create-6-driving.png")
            state = sender_state(page)
        finally:
            context.close()
        avatars = server.get_json("/api/avatars")["avatars"]

    print(f"coverage {coverage}; review: {summary}")
    print(f"new avatar motion {moving:.2f} (paused {paused:.2f}); menu {menu}")
    # the checks counted what the wide head motion shows
    assert coverage["turns"] >= 2, coverage
    assert "neutral" not in coverage["missing"], coverage
    assert "turns covered" in summary and " s, " in summary
    assert progress_text.startswith("Creating “Sam”: 5/6 training")
    # the new avatar is served, in the menu, and driven by this page
    assert any(a["id"] == job["avatar_id"] for a in avatars)
    assert any(text.startswith(job["avatar_id"]) for text in menu)
    assert driving == f"You are driving: {job['avatar_id']}"
    assert job["avatar_id"] in caption
    assert state["error"] is None, state["error"]
    assert state["bytes"] == 52 + 2 * 8  # the tiny recipe's 8-dim codes
    code_spread = float(np.ptp(np.stack(codes), axis=0).max())
    assert code_spread > 0.3, code_spread
    assert moving > MOTION and moving > 3 * paused, (moving, paused)
    keep_screenshots(tmp_path, *shots)
