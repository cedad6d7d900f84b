"""The browser viewer in headless Chromium against a real server: live avatar video, stats,
automatic reconnect and readable errors (room full, server unreachable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright import sync_api

from browser_fixtures import (
    BROWSER_TEST_MARKS,
    FRAMES_DECODED_JS,
    error_text,
    keep_screenshots,
    launch_chromium,
    seat_pixels,
    server_thread,
    synthetic_sender,
    wait_until,
)
from telepresence.app import PEERS
from telepresence.config import Limits

pytestmark = BROWSER_TEST_MARKS


@pytest.mark.usefixtures("loopback_ice")
def test_viewer_shows_live_avatar_video_and_readable_errors(tmp_path: Path) -> None:
    # Two participants per room: the Python sender and one browser viewer fill room "v1".
    with server_thread(Limits(max_participants_per_room=2)) as server:
        server.background(synthetic_sender(server.url, "v1", "anna", dim=16))
        wait_until(lambda: server.metric("telepresence_frames_received_total") > 5, 20, "sender")
        with sync_api.sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path / "profile")
            try:
                page = context.new_page()
                page.goto(f"{server.url}/?room=v1&role=viewer&autojoin=1")
                wait_until(
                    lambda: page.evaluate("() => window.telepresence.state") == "connected",
                    20,
                    "the viewer to connect",
                )
                first = wait_until(lambda: page.evaluate(FRAMES_DECODED_JS), 20, "frames")
                page.wait_for_timeout(2000)
                second = page.evaluate(FRAMES_DECODED_JS)
                assert second > first + 10, (first, second)  # ~20 fps: rising

                pixels = wait_until(lambda: seat_pixels(page), 10, "a visible avatar seat")
                assert pixels.std() > 15  # a head on a background, not a flat grey seat
                assert (pixels < 200).mean() > 0.1
                page.wait_for_timeout(1200)  # one stats period: the overlay has its numbers
                stats = page.evaluate("() => window.telepresence.stats[0]")
                assert stats["fps"] > 5 and stats["kbps"] > 0 and stats["latencyMs"] > 0
                chip = page.locator(".seat:not([hidden]) [data-stat=chip]")
                assert "fps" in chip.inner_text()  # a corner chip, off the face
                page.screenshot(path=str(tmp_path / "viewer.png"))
                chip.click()  # expands to the details
                render = page.locator(".seat:not([hidden]) [data-stat=render]").inner_text()
                # the server's level: the load controller may lower it on a busy machine
                assert re.fullmatch(r"\d+ px · ≤\d+ fps( \(reduced: [a-z ]+\))?", render), render
                hints = page.evaluate(
                    "() => window.telepresence.seats.map((s) => s.receiver.jitterBufferTarget)"
                )
                assert set(hints) == {0}  # minimal playout delay asked for
                assert page.locator(".seat:not([hidden]) [data-stat=state]").inner_text() == (
                    "connected"
                )
                page.screenshot(path=str(tmp_path / "viewer_stats.png"))

                # The server drops the session: the page reconnects by itself.
                participant = page.evaluate("() => window.telepresence.participant")
                server.run(server.app[PEERS].close(participant))
                wait_until(
                    lambda: (
                        page.evaluate("() => window.telepresence.participant") != participant
                        and page.evaluate("() => window.telepresence.state") == "connected"
                    ),
                    20,
                    "the viewer to reconnect",
                )
                again = wait_until(lambda: page.evaluate(FRAMES_DECODED_JS), 20, "frames again")
                page.wait_for_timeout(1000)
                assert page.evaluate(FRAMES_DECODED_JS) > again

                full = context.new_page()  # a third participant: refused with 429
                full.goto(f"{server.url}/?room=v1&role=viewer&autojoin=1")
                wait_until(lambda: "full" in error_text(full), 10, "the room-full message")
                assert full.locator("#error").is_visible()
                full.screenshot(path=str(tmp_path / "room_full.png"))
                full.close()

                offline = context.new_page()  # the server stops answering offers
                offline.route("**/api/rooms/**", lambda route: route.abort())
                offline.goto(f"{server.url}/?room=v2&role=viewer&autojoin=1")
                wait_until(lambda: "unreachable" in error_text(offline), 10, "the error")
                assert "Retrying" in error_text(offline)
                offline.close()
            finally:
                context.close()
    keep_screenshots(tmp_path, "viewer.png", "viewer_stats.png", "room_full.png")


@pytest.mark.usefixtures("loopback_ice")
def test_seat_labels_name_people_in_the_order_they_joined(tmp_path: Path) -> None:
    with server_thread() as server:
        server.background(synthetic_sender(server.url, "two", "anna", dim=16))
        wait_until(lambda: server.metric("telepresence_frames_received_total") > 5, 20, "anna")
        server.background(synthetic_sender(server.url, "two", "ben", dim=16))
        with sync_api.sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path / "profile")
            try:
                page = context.new_page()
                page.goto(f"{server.url}/?room=two&role=viewer&autojoin=1")
                labels = wait_until(
                    lambda: (
                        page.locator(".seat:not([hidden]) figcaption").all_inner_texts()
                        if page.locator(".seat:not([hidden])").count() == 2
                        else None
                    ),
                    30,
                    "two seats",
                )
                assert labels == ["guest 1 · anna", "guest 2 · ben"], labels
            finally:
                context.close()
