"""Open the web client in a stock headless Firefox and print the page's state (manual check).

Playwright drives only its own patched Firefox, so this speaks WebDriver BiDi (built into
Firefox 129+) over a websocket. Firefox gathers no loopback ICE candidates: start the server
with the machine's address as its host candidate, e.g.

    IP=$(hostname -I | cut -d' ' -f1)
    telepresence serve --demo-sender --resolution 128 --ice-host-address "$IP"
    .venv/bin/python web_client/tools/firefox_check.py \
        "http://127.0.0.1:8080/?room=demo&autojoin=1" ff.png

The profile gives Firefox a fake camera and skips the permission prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
}
PORT = 9333
STATE_JS = """JSON.stringify({
  userAgent: navigator.userAgent,
  webgl2: !!document.createElement("canvas").getContext("webgl2"),
  state: window.telepresence.state, error: window.telepresence.error,
  faces: window.telepresence.facesSeen, sent: window.telepresence.framesSent,
  seats: window.telepresence.stats.filter(Boolean)
    .map((s) => ({fps: s.fps, frames: s.framesDecoded})),
})"""


async def inspect(url: str, screenshot: Path, wait_s: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        for _ in range(60):
            try:
                ws = await http.ws_connect(f"ws://127.0.0.1:{PORT}/session")
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.5)
        else:
            raise SystemExit("Firefox did not open its WebDriver BiDi port")
        ids = iter(range(1, 1_000_000))

        async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
            request = next(ids)
            await ws.send_json({"id": request, "method": method, "params": params})
            while True:
                message = await ws.receive_json()
                if message.get("id") == request:
                    if message.get("type") == "error":
                        raise RuntimeError(message)
                    return dict(message["result"])

        await call("session.new", {"capabilities": {}})
        context = (await call("browsingContext.getTree", {}))["contexts"][0]["context"]
        await call("browsingContext.navigate", {"context": context, "url": url, "wait": "complete"})
        await asyncio.sleep(wait_s)
        result = await call(
            "script.evaluate",
            {"expression": STATE_JS, "target": {"context": context}, "awaitPromise": True},
        )
        shot = await call("browsingContext.captureScreenshot", {"context": context})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return dict(json.loads(result["result"]["value"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="web client in headless Firefox")
    parser.add_argument("url")
    parser.add_argument("screenshot", type=Path)
    parser.add_argument("--wait", type=float, default=10.0, help="seconds after loading")
    parser.add_argument("--firefox", default="firefox-esr")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        prefs = "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items())
        (Path(profile) / "user.js").write_text(prefs)
        firefox = subprocess.Popen(
            [args.firefox, "--headless", "--no-remote", "--profile", profile,
             "--remote-debugging-port", str(PORT), "--window-size=1100,760"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            print(json.dumps(asyncio.run(inspect(args.url, args.screenshot, args.wait))))
        finally:
            firefox.terminate()
            firefox.wait(10)


if __name__ == "__main__":
    main()
