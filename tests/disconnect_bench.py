"""100 abrupt disconnects against a real `telepresence serve` process (issue 23): its resident
memory after them against the level after the first 10, and how fast the slots come back.

Run: ``.venv/bin/python tests/disconnect_bench.py [--peers 100] [--batch 10]``.
The server runs the demo avatar at 128 px in its own process. Each peer joins a room of its
own as a sender, streams expression frames for 1 s, and then its machine "vanishes": its ICE
sockets close silently (no DTLS, SCTP or ctrl goodbye; only ICE consent notices). Peers come
in batches; after each, the bench waits until ``/healthz`` shows no session. RSS is read from
the server's own ``/metrics`` (``telepresence_process_resident_memory_bytes``). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from telepresence.ice import restrict_host_addresses
from telepresence.sender import TelepresenceClient
from telepresence.sources import SendOptions, synthetic_frames

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _get(base: str, path: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(base + path) as response:
        return await response.text()


async def _rss_mb(base: str) -> float:
    for line in (await _get(base, "/metrics")).splitlines():
        if line.startswith("telepresence_process_resident_memory_bytes "):
            return float(line.split()[1]) / 2**20
    raise RuntimeError("the server's /metrics has no resident memory gauge")


async def _vanishing_peer(base: str, room: str, dim: int) -> None:
    client = TelepresenceClient(base, room, "sender", seats=1)
    await client.connect()
    await client.wait_channels()
    async for frame in synthetic_frames(dim, SendOptions(seconds=1.0)):
        client.send_frame(frame)
    ice = client.pc.sctp.transport.transport  # type: ignore[union-attr]
    for protocol in ice._connection._protocols:  # the machine is unplugged
        protocol.transport.close()
    await client.close()


async def _until_no_session(base: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while json.loads(await _get(base, "/healthz"))["sessions"]:
        if time.monotonic() - started > timeout:
            raise RuntimeError("sessions were not freed")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def run(base: str, peers: int, batch: int) -> dict[str, object]:
    avatars = json.loads(await _get(base, "/api/avatars"))["avatars"]
    dim = int(avatars[0]["expression_dim"])
    rss, freed = [await _rss_mb(base)], []
    for first in range(0, peers, batch):
        rooms = [f"peer{k}" for k in range(first, min(first + batch, peers))]
        await asyncio.gather(*(_vanishing_peer(base, room, dim) for room in rooms))
        freed.append(await _until_no_session(base))
        rss.append(await _rss_mb(base))
    after_first = rss[1]
    return {
        "peers": peers,
        "batch": batch,
        "rss_mb_start": round(rss[0], 1),
        "rss_mb_after_first_batch": round(after_first, 1),
        "rss_mb_after_all": round(rss[-1], 1),
        "rss_growth_after_first_batch_percent": round(100 * (rss[-1] / after_first - 1), 2),
        "rss_mb_per_batch": [round(value, 1) for value in rss],
        "slots_freed_s_max": round(max(freed), 2),
        "slots_freed_s_per_batch": [round(value, 2) for value in freed],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100, help="abrupt disconnects (100)")
    parser.add_argument("--batch", type=int, default=10, help="peers at once (10)")
    args = parser.parse_args()
    port = _free_port()
    command = [sys.executable, "-m", "telepresence.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--resolution", "128"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(_get(base, "/healthz"))
                break
            except aiohttp.ClientError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        restrict_host_addresses(["127.0.0.1"])
        print(json.dumps(asyncio.run(run(base, args.peers, args.batch))))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
