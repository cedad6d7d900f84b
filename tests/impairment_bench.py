"""Sessions through a lossy path at 0 / 2 / 5 / 10 % loss (issue 23), the receive path and
SCTP timers of this project against aiortc's own, in one run.

Run: ``.venv/bin/python tests/impairment_bench.py [--seconds 30] [--resolution 256]``.
A server with a small synthetic avatar and stamped frames; one sender watching its own avatar
through tests/impairment.py's relay (40 ± 10 ms each way). Prints one JSON line per run:
connect time, first frame, video and avatar fps, e2e latency p50/p95 (overall, first 10 s,
after 10 s, last 20 s). ``aiortc`` rows: aiortc 1.16's stock video receiver (no marker
release, one NACK per gap, one frame per packet) and RFC 4960 SCTP timers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from unittest import mock

from impairment import Impairment, impaired_session
from server_fixtures import SMALL_CONFIG, running_server, url
from telepresence import sender
from telepresence.ice import check_consent, restrict_host_addresses
from telepresence.sctp_timers import quicken_sctp_retransmits


async def run(seconds: float, resolution: int, losses: list[float]) -> None:
    async with running_server(stamp_frames=True, resolution=resolution) as server:
        for loss in losses:
            for receive_path in ("ours", "aiortc"):
                impairment = Impairment(loss=loss, delay_ms=40, jitter_ms=10)
                if receive_path == "ours":
                    quicken_sctp_retransmits()
                    report = await impaired_session(
                        url(server), impairment, seconds, SMALL_CONFIG.expression_dim
                    )
                else:
                    quicken_sctp_retransmits(3.0, 1.0)  # aiortc's (RFC 4960)
                    with mock.patch.object(sender, "decode_on_marker", lambda receiver: None):
                        report = await impaired_session(
                            url(server), impairment, seconds, SMALL_CONFIG.expression_dim
                        )
                row = {"loss": loss, "receive_path": receive_path, **report.summary()}
                print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per run (default 30)")
    parser.add_argument("--resolution", type=int, default=256, help="avatar px (default 256)")
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.10])
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])
    check_consent()
    asyncio.run(run(args.seconds, args.resolution, args.loss))


if __name__ == "__main__":
    main()
