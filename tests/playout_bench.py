"""Browser playout delay with and without the viewer's minimal-delay hint (issue 21, item 4).

Run: ``.venv/bin/python tests/playout_bench.py [--seconds 15]`` (needs Debian's chromium and a
built web client). A server with the demo avatar at 256 px and a Python sender at 30 fps;
headless Chromium views the room twice, once as the web client does by default (it sets
``RTCRtpReceiver.jitterBufferTarget = 0``) and once with ``?playout=default`` (the browser's
own buffering). Prints, per run, Chromium's mean jitter-buffer delay per frame (its
``jitterBufferDelay / jitterBufferEmittedCount``), decode time and frames per second, as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from playwright import sync_api

from browser_fixtures import launch_chromium, server_thread, synthetic_sender, wait_until
from telepresence.ice import restrict_host_addresses

INBOUND_JS = """async () => {
  if (!window.telepresence.pc) return null;
  const report = await window.telepresence.pc.getStats();
  let s = null; // the seat showing the sender: the most frames (empty seats send one per PLI)
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video" && r.framesDecoded > (s?.framesDecoded ?? 0))
      s = r;
  });
  return s && { delay: s.jitterBufferDelay, emitted: s.jitterBufferEmittedCount,
    decode: s.totalDecodeTime, frames: s.framesDecoded, plis: s.pliCount,
    target: s.jitterBufferTargetDelay ?? null };
}"""


def measure(url: str, profile: Path, query: str, seconds: float) -> dict[str, float | None]:
    with sync_api.sync_playwright() as playwright:
        context = launch_chromium(playwright, profile)
        try:
            page = context.new_page()
            page.goto(f"{url}/?room=bench&role=viewer&autojoin=1{query}")
            wait_until(lambda: page.evaluate(INBOUND_JS), 30, "decoded frames")
            page.wait_for_timeout(3000)  # settle
            first = page.evaluate(INBOUND_JS)
            page.wait_for_timeout(seconds * 1000)
            last = page.evaluate(INBOUND_JS)
        finally:
            context.close()
    emitted = last["emitted"] - first["emitted"]
    frames = last["frames"] - first["frames"]
    return {
        "jitter_buffer_ms_per_frame": round(1e3 * (last["delay"] - first["delay"]) / emitted, 1),
        "decode_ms_per_frame": round(1e3 * (last["decode"] - first["decode"]) / frames, 2),
        "fps": round(frames / seconds, 1),
        "plis_sent": last["plis"] - first["plis"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured per run")
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])
    results = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        server_thread(resolution=256, fps=30.0) as server,
    ):
        server.background(synthetic_sender(server.url, "bench", "anna", dim=16))
        wait_until(lambda: server.metric("telepresence_frames_received_total") > 5, 20, "sender")
        for name, query in (("minimal_hint", ""), ("browser_default", "&playout=default")):
            results[name] = measure(server.url, Path(scratch) / name, query, args.seconds)
            results[name]["server_renders"] = server.metric("telepresence_renders_total")
            results[name]["server_encodes"] = server.metric("telepresence_encodes_total")
            results[name]["viewer_resyncs"] = server.metric("telepresence_viewer_resyncs_total")
    print(json.dumps({"benchmark": "browser playout", "seconds": args.seconds, **results}))


if __name__ == "__main__":
    main()
