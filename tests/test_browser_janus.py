"""The browser viewer of a room whose media lives in Janus: headless Chromium subscribes with
the Janus JavaScript library the receiver serves, shows the live avatar, and comes back by
itself after Janus restarts."""

from __future__ import annotations

from pathlib import Path

from playwright import sync_api

from browser_fixtures import (
    BROWSER_TEST_MARKS,
    FRAMES_DECODED_JS,
    keep_screenshots,
    launch_chromium,
    seat_pixels,
    server_thread,
    synthetic_sender,
    wait_until,
)
from conftest import JANUS_SECRET
from telepresence.app import PEERS
from telepresence.config import SfuConfig
from telepresence.janus_local import LocalJanus

pytestmark = BROWSER_TEST_MARKS


def test_browser_viewer_watches_through_janus_and_survives_a_restart(
    tmp_path: Path, janus: LocalJanus
) -> None:
    with server_thread(sfu=SfuConfig(url=janus.url, secret=JANUS_SECRET)) as server:
        server.background(synthetic_sender(server.url, "j1", "anna", dim=16))
        wait_until(lambda: server.metric("telepresence_sfu_publishers_total") >= 1, 30, "publish")
        with sync_api.sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path / "profile")
            try:
                page = context.new_page()
                page.goto(f"{server.url}/?room=j1&role=viewer&autojoin=1")
                wait_until(
                    lambda: page.evaluate("() => window.telepresence.state") == "connected",
                    30,
                    "the viewer to subscribe through Janus",
                )
                assert page.evaluate("() => window.telepresence.sfu") == janus.url
                first = wait_until(lambda: page.evaluate(FRAMES_DECODED_JS), 20, "frames")
                page.wait_for_timeout(2000)
                second = page.evaluate(FRAMES_DECODED_JS)
                assert second > first + 10, (first, second)
                pixels = wait_until(lambda: seat_pixels(page), 10, "a visible avatar seat")
                assert pixels.std() > 15 and (pixels < 200).mean() > 0.1  # a head
                # the viewer has no peer with the receiver: only the Python sender has one
                assert server.app[PEERS].active == 1
                page.wait_for_timeout(1200)
                page.screenshot(path=str(tmp_path / "janus_viewer.png"))

                page.evaluate("() => { window.telepresence.pc.beforeRestart = true; }")
                janus.restart()  # the receiver publishes again, the page subscribes again

                def moving_again() -> bool:
                    fresh = page.evaluate("() => !window.telepresence.pc?.beforeRestart")
                    return fresh and page.evaluate(FRAMES_DECODED_JS) > 10

                wait_until(moving_again, 30, "video on a new subscription after the restart")
                page.screenshot(path=str(tmp_path / "janus_viewer_after_restart.png"))
            finally:
                context.close()
    keep_screenshots(tmp_path, "janus_viewer.png", "janus_viewer_after_restart.png")
