"""Real aiortc peers on loopback against a real server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from npga.codes import ExpressionFrame
from server_fixtures import running_server, url
from telepresence.sender import TelepresenceClient


def frame(seq: int, code: np.ndarray) -> ExpressionFrame:
    return ExpressionFrame(
        seq=seq,
        timestamp=time.time(),
        rotation_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
        translation=np.zeros(3),
        gaze=np.zeros(4),
        code=code,
    )


class FrameLog:
    """The newest decoded frame per seat, as RGB arrays."""

    def __init__(self) -> None:
        self.latest: dict[int, np.ndarray] = {}

    def __call__(self, seat: int, video_frame) -> None:
        self.latest[seat] = video_frame.to_ndarray(format="rgb24")


async def _stream(client: TelepresenceClient, code: np.ndarray, start_seq: int, seconds: float):
    seq = start_seq
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.send_frame(frame(seq, code))
        seq += 1
        await asyncio.sleep(1 / 30)
    return seq


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_sender_codes_change_what_a_viewer_decodes() -> None:
    async with running_server() as server:
        sender = TelepresenceClient(url(server), "r1", "sender", avatar="anna", seats=0)
        frames = FrameLog()
        viewer = TelepresenceClient(url(server), "r1", "viewer", seats=1, on_frame=frames)
        try:
            await sender.connect()
            await sender.wait_channels()
            await viewer.connect()
            seq = await _stream(sender, np.zeros(16), 1, 1.5)
            neutral = frames.latest[0].astype(float)
            await _stream(sender, np.full(16, 3.0), seq, 1.5)
            moved = frames.latest[0].astype(float)
        finally:
            await sender.close()
            await viewer.close()
    assert (neutral < 200).mean() > 0.1  # a head, not an empty seat
    assert np.abs(moved - neutral).mean() > 2.0
