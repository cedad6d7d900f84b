"""Oversized data-channel messages against real aiortc on both sides.

aiortc reassembles a whole message before anyone can look at its size, at a CPU cost that grows
with the square of the size (16 MiB: 20 s). The server bounds what it holds for reassembly to
the max-message-size it advertises (telepresence/sctp_guard.py): a peer that sends more is
closed, within a fraction of that cost, while the other sessions go on.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from npga.codes import encode_frame
from server_fixtures import running_server, url
from telepresence.app import METRICS, PEERS
from telepresence.sctp_guard import advertised_max_message_size
from telepresence.sender import TelepresenceClient
from test_server_media import frame


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _frame(seq: int) -> bytes:
    return encode_frame(frame(seq, np.ones(16) * np.sin(seq / 5)))


def _hostile(client: TelepresenceClient) -> None:
    """Make the client's aiortc send more than the server allows (a real client refuses)."""
    assert client.pc.sctp is not None
    client.pc.sctp._remote_max_message_size = 1 << 30


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_message_over_the_advertised_size_closes_only_its_peer() -> None:
    async with running_server() as server:
        app = server.app
        assert app is not None
        rogue = TelepresenceClient(url(server), "r1", "sender", avatar="anna", seats=0)
        good = TelepresenceClient(url(server), "r2", "sender", avatar="ben", seats=0)
        viewer = TelepresenceClient(url(server), "r2", "viewer", seats=1)
        try:
            for client in (rogue, good, viewer):
                await client.connect()
            for client in (rogue, good):
                await client.wait_channels()
            assert "a=max-message-size:" in rogue.pc.remoteDescription.sdp
            _hostile(rogue)
            # under the advertised size: reassembled, then refused as any long message is
            rogue.send_ctrl("x" * (advertised_max_message_size() // 2))
            await _until(lambda: any("at most 1 KiB" in e for e in rogue.stats.ctrl_errors))
            assert app[PEERS].active == 3

            started = time.monotonic()
            rogue.send_ctrl("x" * (8 << 20))  # 8 MiB: ~6 s of server CPU unguarded
            seq, received_before = 0, viewer.stats.frames_received.get(0, 0)
            async with aiohttp.ClientSession() as http:
                while app[METRICS].counter("errors_total", kind="oversize") == 0:
                    assert time.monotonic() - started < 20, "the rogue was never closed"
                    good.send_raw(_frame(seq))
                    seq += 1
                    probe = time.monotonic()
                    async with http.get(f"{url(server)}/healthz") as response:
                        assert response.status == 200
                    assert time.monotonic() - probe < 1.0  # the server keeps answering
                    await asyncio.sleep(1 / 30)
            await _until(lambda: app[PEERS].active == 2)
            closed_after = time.monotonic() - started
            for _ in range(30):
                good.send_raw(_frame(seq))
                seq += 1
                await asyncio.sleep(1 / 30)
            await _until(lambda: viewer.stats.frames_received.get(0, 0) > received_before + 10)
        finally:
            for client in (rogue, good, viewer):
                await client.close()
    print(f"the 8 MiB sender was closed after {closed_after:.2f} s")
    assert app[METRICS].counter("errors_total", kind="oversize") == 1
    assert closed_after < 10
