"""The live path over real aiortc peers: one encode per avatar frame for every viewer, the
render level reported in ctrl stats and /metrics."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from server_fixtures import running_server, url
from telepresence.app import METRICS
from telepresence.sender import TelepresenceClient
from test_server_media import FrameLog, _stream, _until


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
@pytest.mark.parametrize("prefer_h264", [True, False], ids=["h264", "vp8"])
async def test_four_viewers_of_one_avatar_cost_one_encode_per_frame(prefer_h264: bool) -> None:
    async with running_server() as server:
        sender = TelepresenceClient(url(server), "r1", "sender", avatar="anna", seats=0)
        logs = [FrameLog() for _ in range(4)]
        viewers = [
            TelepresenceClient(
                url(server), "r1", "viewer", seats=1, on_frame=log, prefer_h264=prefer_h264
            )
            for log in logs
        ]
        try:
            await sender.connect()
            await sender.wait_channels()
            await asyncio.gather(*(viewer.connect() for viewer in viewers))
            await _until(lambda: all(0 in log.latest for log in logs))
            seq = await _stream(sender, np.zeros(16), 1, 1.0)
            neutral = [log.latest[0].astype(float) for log in logs]
            metrics = server.app[METRICS]
            renders_before = metrics.counter("renders_total")
            codec = "h264" if prefer_h264 else "vp8"
            encodes_before = metrics.counter("encodes_total", codec=codec)
            await _stream(sender, np.full(16, 3.0), seq, 1.5)
            renders = metrics.counter("renders_total") - renders_before
            encodes = metrics.counter("encodes_total", codec=codec) - encodes_before
            moved = [log.latest[0].astype(float) for log in logs]
        finally:
            await asyncio.gather(sender.close(), *(viewer.close() for viewer in viewers))
    assert renders >= 10
    # one encode per rendered frame (plus a few keyframes for PLIs), not one per viewer
    assert encodes <= renders * 1.2 + 3, (encodes, renders)
    for before, after in zip(neutral, moved, strict=True):
        assert np.abs(after - before).mean() > 2.0  # every viewer sees the codes change


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_the_render_level_is_in_ctrl_stats_and_metrics() -> None:
    async with running_server() as server:
        client = TelepresenceClient(url(server), "r1", "sender", avatar="anna", seats=1)
        try:
            await client.connect()
            await client.wait_channels()
            client.send_ctrl({"type": "stats"})
            await _until(lambda: bool(client.stats.server))
        finally:
            await client.close()
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{url(server)}/metrics")).text()
    assert client.stats.server["render"] == {"level": 0, "resolution": 64, "fps_cap": 30.0}
    assert "telepresence_render_level 0" in text
    assert "telepresence_render_resolution 64" in text
