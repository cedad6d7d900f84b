"""Browser client figures on this machine (docs/benchmarks.md).

One browser sender (fake camera playing the synthetic head from `npga synth`) and one browser
viewer in the same room of a real server; prints one JSON line: sender uplink bytes/frame and
frames/s, Face Mesh ms per frame in the page, and the video fps each page receives.

    .venv/bin/python web_client/tools/bench.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from browser_fixtures import (  # noqa: E402
    launch_chromium,
    server_thread,
    synthetic_head_frames,
    wait_until,
    write_y4m,
)
from telepresence.ice import restrict_host_addresses  # noqa: E402

PAGE_JS = """() => {
  const t = window.telepresence;
  const own = t.seats.findIndex((s) => s.participant && s.participant === t.participant);
  const seat = t.stats[own >= 0 ? own : 0];
  return { sent: t.framesSent, bytes: t.bytesSent, faceMeshMs: t.faceMeshMs,
           fps: seat ? seat.fps : null, kbps: seat ? seat.kbps : null,
           latencyMs: seat ? seat.latencyMs : null,
           calibrated: t.trackerState ? t.trackerState.calibrated : false };
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "face.y4m"
        write_y4m(synthetic_head_frames(Path(tmp) / "synth"), video)
        camera = [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ]
        with server_thread() as server, sync_playwright() as playwright:
            context = launch_chromium(playwright, Path(tmp) / "profile", camera)
            sender = context.new_page()
            sender.goto(f"{server.url}/?room=bench&role=sender&autojoin=1&avatar=anna")
            wait_until(lambda: sender.evaluate(PAGE_JS)["calibrated"], 60, "calibration")
            viewer = context.new_page()
            viewer.goto(f"{server.url}/?room=bench&role=viewer&autojoin=1")
            time.sleep(3)
            start, t0 = sender.evaluate(PAGE_JS), time.monotonic()
            received0 = server.metric("telepresence_frames_received_total")
            time.sleep(args.seconds)
            end, t1 = sender.evaluate(PAGE_JS), time.monotonic()
            received1 = server.metric("telepresence_frames_received_total")
            watched = viewer.evaluate(PAGE_JS)
            context.close()
    frames = end["sent"] - start["sent"]
    print(
        json.dumps(
            {
                "seconds": round(t1 - t0, 1),
                "uplink_bytes_per_frame": (end["bytes"] - start["bytes"]) / max(frames, 1),
                "sender_frames_per_s": round(frames / (t1 - t0), 2),
                "server_frames_received_per_s": round((received1 - received0) / (t1 - t0), 2),
                "facemesh_ms_per_frame": round(end["faceMeshMs"], 1),
                "sender_received_fps": round(end["fps"] or 0, 1),
                "sender_latency_estimate_ms": round(end["latencyMs"] or 0),
                "viewer_received_fps": round(watched["fps"] or 0, 1),
                "viewer_kbps": round(watched["kbps"] or 0, 1),
                "viewer_latency_estimate_ms": round(watched["latencyMs"] or 0),
            }
        )
    )


if __name__ == "__main__":
    main()
