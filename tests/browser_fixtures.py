"""Helpers for the browser tests: a real server in a thread, headless Chromium, fake-camera media.

Playwright's sync API runs its own event loop, so the server (aiohttp + aiortc) runs on a second
loop in a background thread; Chromium connects to it over loopback like any browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from server_fixtures import TEST_SERVER_CONFIG, small_registry
from telepresence.app import WEB_CLIENT, create_app, server_runner
from telepresence.config import Limits
from telepresence.sender import TelepresenceClient
from telepresence.sources import SendOptions, synthetic_frames

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
# Low resolution and frame rate: the server, the encoder, Chromium and Face Mesh share 2 cores.
BROWSER_SERVER_CONFIG = replace(TEST_SERVER_CONFIG, resolution=128, fps=20.0)


def client_built() -> bool:
    return (WEB_CLIENT / "index.html").is_file() and (WEB_CLIENT / "mediapipe").is_dir()


def requires(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip when a requirement is missing on a developer's machine, never in CI (CI=true): `make
    test` installs everything there, so a missing piece must fail the run, not hide it."""
    return pytest.mark.skipif(missing and not os.environ.get("CI"), reason=reason)


BROWSER_TEST_MARKS = [
    pytest.mark.browser,
    requires(not CHROMIUM.exists(), "needs Debian's chromium (make system-deps)"),
    requires(not client_built(), "web client not built (make install)"),
]


SERVER_START_SECONDS = 180.0


class ServerThread:
    """``create_app`` served on 127.0.0.1 (a free port) from its own event loop thread."""

    def __init__(self, limits: Limits | None = None, **overrides: Any) -> None:
        config = replace(BROWSER_SERVER_CONFIG, **overrides)
        if limits is not None:
            config = replace(config, limits=limits)
        self.app = create_app(config, small_registry(config.resolution))
        self.loop = asyncio.new_event_loop()
        self.runner = server_runner(self.app)
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Future[Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()

        async def serve() -> int:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            return int(server.sockets[0].getsockname()[1])

        # The app renders every avatar before it listens: on a fresh clone that compiles the CPU
        # kernels first (~15 s alone, more on a loaded machine).
        self.port = self.run(serve(), timeout=SERVER_START_SECONDS)

    def background(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._tasks.append(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.sleep(0)
            await self.runner.cleanup()

        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def metric(self, name: str) -> float:
        """The sum of a counter over its labels, read from /metrics."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def server_thread(limits: Limits | None = None, **overrides: Any) -> Iterator[ServerThread]:
    """A ServerThread running for the block; ``overrides``: ServerConfig fields."""
    server = ServerThread(limits, **overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def synthetic_sender(url: str, room: str, avatar: str, dim: int) -> None:
    """A Python sender that keeps an avatar moving in ``room`` until cancelled."""
    client = TelepresenceClient(url, room, "sender", avatar=avatar, seats=0)
    try:
        await client.connect()
        await client.wait_channels()
        async for frame in synthetic_frames(dim, SendOptions(fps=BROWSER_SERVER_CONFIG.fps)):
            client.send_frame(frame)
    finally:
        await client.close()


def launch_chromium(playwright: Any, user_data: Path, extra_flags: list[str] | None = None) -> Any:
    """A fresh persistent context of Debian's Chromium (never a downloaded browser)."""
    return playwright.chromium.launch_persistent_context(
        str(user_data),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS + (extra_flags or []),
        viewport={"width": 1100, "height": 760},
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.25) -> Any:
    """The first truthy value (or array) ``predicate`` returns; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, np.ndarray) or value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


# ---------------------------------------------------------------- fake camera (.y4m)


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    """RGB frames [H, W, 3] uint8 (H, W even) -> a YUV4MPEG2 4:2:0 file Chromium can loop."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b  # BT.601 full range (JPEG)
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

            def sub(plane: np.ndarray) -> np.ndarray:
                return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

            out.write(b"FRAME\n")
            for plane in (y, sub(u), sub(v)):
                out.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())


def synthetic_head_frames(
    out: Path, frames: int = 90, resolution: int = 256, head_motion: str = "rig"
) -> list[np.ndarray]:
    """RGB frames [R, R, 3] of the synthetic talking head (``npga synth``, front camera);
    ``head_motion`` "wide" turns it ±35° and nods it ±15°."""
    from PIL import Image

    npga = Path(sys.executable).with_name("npga")
    subprocess.run(
        [str(npga), "synth", str(out), "--frames", str(frames), "--cameras", "1",
         "--resolution", str(resolution), "--seed", "0", "--head-motion", head_motion],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    camera = json.loads((out / "cameras.json").read_text())["front_camera"]
    return [
        np.asarray(Image.open(out / "frames" / f"{t:05d}" / f"{camera}.png").convert("RGB"))
        for t in range(frames)
    ]


# ---------------------------------------------------------------- reading the page

# Sum of framesDecoded over the page's inbound video streams (RTCPeerConnection.getStats()).
FRAMES_DECODED_JS = """async () => {
  const pc = window.telepresence.pc;
  if (!pc) return 0;
  let total = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") total += s.framesDecoded || 0;
  });
  return total;
}"""

# The page's own seat (a sender's avatar), else the first visible one: its current frame as
# a [size*size] list of grey levels (0..255).
SEAT_PIXELS_JS = """(size) => {
  const t = window.telepresence;
  const seat = t.seats.find((s) => s.participant && s.participant === t.participant)
    || t.seats.find((s) => !s.element.hidden);
  if (!seat || seat.video.videoWidth === 0) return null;
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(seat.video, 0, 0, size, size);
  const rgba = context.getImageData(0, 0, size, size).data;
  const grey = [];
  for (let i = 0; i < rgba.length; i += 4) {
    grey.push(Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]));
  }
  return grey;
}"""


def seat_pixels(page: Any, size: int = 48) -> np.ndarray | None:
    grey = page.evaluate(SEAT_PIXELS_JS, size)
    return None if grey is None else np.asarray(grey, dtype=np.float64).reshape(size, size)


def keep_screenshots(tmp_path: Path, *names: str) -> None:
    """Check the test's screenshots and copy them to build/screenshots/ for a person to look at."""
    out = Path(__file__).resolve().parent.parent / "build" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        assert (tmp_path / name).stat().st_size > 1000, name
        shutil.copy(tmp_path / name, out / name)


def error_text(page: Any) -> str:
    return str(page.evaluate("() => window.telepresence.error || ''"))


# ---------------------------------------------------------------- a browser sender

# The sender's state (window.telepresence) as the tests read it.
SENDER_STATE_JS = """() => {
  const t = window.telepresence;
  const s = t.trackerState;
  return {
    state: t.state, error: t.error, sent: t.framesSent, faces: t.facesSeen,
    bytes: t.lastFrameBytes, faceMeshMs: t.faceMeshMs, stats: t.stats[0] || null,
    calibrated: s ? s.calibrated : false, code: s ? s.code : null,
  };
}"""


def sender_state(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(SENDER_STATE_JS))


def camera_flags(video: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


MOTION = 1.0  # mean grey-level change per 250 ms above video-coding noise


def wait_for_motion(page: Any, timeout: float, what: str) -> None:
    """Until two avatar frames 250 ms apart differ by more than MOTION: the returned video flows
    (on a loaded machine its decoder can sit on one frame for seconds after (re)starting)."""
    previous: np.ndarray | None = None

    def moved() -> bool:
        nonlocal previous
        pixels, before = seat_pixels(page), previous
        previous = pixels if pixels is not None else previous
        if pixels is None or before is None:
            return False
        return float(np.abs(pixels - before).mean()) > MOTION

    wait_until(moved, timeout, what)


def frame_motion(page: Any, seconds: float) -> tuple[float, list[np.ndarray]]:
    """Mean grey-level change between avatar frames sampled every 250 ms for ``seconds``,
    and the codes the page held at those moments."""
    frames: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for _ in range(int(seconds * 4)):
        page.wait_for_timeout(250)
        pixels = seat_pixels(page)
        code = sender_state(page)["code"]
        if pixels is not None:
            frames.append(pixels)
        if code is not None:
            codes.append(np.asarray(code))
    gaps = [float(np.abs(a - b).mean()) for a, b in pairwise(frames)]
    assert len(gaps) >= seconds * 2, "the seat showed no video"
    return float(np.mean(gaps)), codes
