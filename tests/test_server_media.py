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


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_two_senders_and_a_viewer_share_a_room() -> None:
    async with running_server() as server:
        a = TelepresenceClient(url(server), "room", "sender", avatar="anna", seats=0)
        own = FrameLog()  # ben's one seat: his own avatar, though he joined second
        b = TelepresenceClient(url(server), "room", "sender", avatar="ben", seats=1, on_frame=own)
        frames = FrameLog()
        viewer = TelepresenceClient(url(server), "room", "viewer", seats=2, on_frame=frames)
        try:
            for client in (a, b, viewer):
                await client.connect()
            await _until(lambda: len(viewer.stats.seats) == 2)
            assert [s["avatar"] for s in viewer.stats.seats] == ["anna", "ben"]
            await _until(lambda: len(b.stats.seats) == 2)
            assert [s["avatar"] for s in b.stats.seats] == ["ben", "anna"]
            assert b.own_seat() == 0  # what `telepresence send --record` records for ben
            await a.wait_channels()
            await b.wait_channels()
            a.send_frame(frame(1, np.zeros(16)))
            b.send_frame(frame(1, np.zeros(16)))
            await _until(lambda: {0, 1} <= set(frames.latest) and 0 in own.latest)
            await asyncio.sleep(0.5)
            first, second = frames.latest[0].astype(float), frames.latest[1].astype(float)
            bens_own = own.latest[0].astype(float)
        finally:
            for client in (a, b, viewer):
                await client.close()
    assert (first < 200).mean() > 0.1 and (second < 200).mean() > 0.1
    assert np.abs(first - second).mean() > 1.0  # two different avatars
    assert np.abs(bens_own - second).mean() < np.abs(bens_own - first).mean()  # ben sees ben


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_join_leave_and_reconnect() -> None:
    async with running_server() as server:
        viewer = TelepresenceClient(url(server), "room", "viewer", seats=1)
        await viewer.connect()
        try:
            for _ in range(2):  # join, leave, join again
                sender = TelepresenceClient(url(server), "room", "sender", seats=0)
                await sender.connect()
                await _until(lambda: len(viewer.stats.seats) == 1)
                await sender.close()
                await _until(lambda: viewer.stats.seats == [])
        finally:
            await viewer.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_vanishing_peer_frees_its_resources() -> None:
    from telepresence.app import PEERS, ROOMS

    async with running_server() as server:
        app = server.app
        assert app is not None
        await asyncio.sleep(0.2)
        tasks_before = len(asyncio.all_tasks())
        sender = TelepresenceClient(url(server), "room", "sender", seats=1)
        await sender.connect()
        await sender.wait_channels()
        await _stream(sender, np.ones(16), 1, 0.5)
        assert app[PEERS].active == 1
        await sender.pc.close()  # gone mid-stream, no goodbye on ctrl
        await _until(lambda: app[PEERS].active == 0 and not app[ROOMS].rooms)
        await sender.close()
        await asyncio.sleep(0.5)
        leftover = [t for t in asyncio.all_tasks() if not t.done()]
        assert len(leftover) <= tasks_before, [t.get_coro() for t in leftover]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_a_peer_whose_machine_vanishes_frees_its_slot_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No DTLS or SCTP goodbye, no packet at all: only ICE consent notices (check_consent, as
    `telepresence serve` sets it; aioice's own ~30 s without it)."""
    import aioice.ice

    from telepresence.app import PEERS
    from telepresence.ice import check_consent

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", aioice.ice.CONSENT_INTERVAL)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", aioice.ice.CONSENT_FAILURES)
    check_consent()
    async with running_server() as server:
        sender = TelepresenceClient(url(server), "room", "sender", seats=1)
        await sender.connect()
        await sender.wait_channels()
        await _stream(sender, np.ones(16), 1, 0.5)
        ice = sender.pc.sctp.transport.transport  # the client's machine is unplugged:
        for protocol in ice._connection._protocols:  # its ICE sockets close silently
            protocol.transport.close()
        gone = time.monotonic()
        await _until(lambda: server.app[PEERS].active == 0, timeout=20)
        freed_s = time.monotonic() - gone
        await sender.close()
    assert freed_s < 8, freed_s  # measured 4.9 s (30.0 s with aioice's defaults)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_garbage_on_the_channels_is_refused_while_others_keep_streaming() -> None:
    from npga.codes import HEADER_SIZE, encode_frame
    from telepresence.app import METRICS

    async with running_server() as server:
        app = server.app
        assert app is not None
        rogue = TelepresenceClient(url(server), "room", "sender", avatar="anna", seats=0)
        good = TelepresenceClient(url(server), "room", "sender", avatar="ben", seats=0)
        viewer = TelepresenceClient(url(server), "room", "viewer", seats=2)
        try:
            for client in (rogue, good, viewer):
                await client.connect()
            await rogue.wait_channels()
            await good.wait_channels()
            valid = encode_frame(frame(5, np.zeros(16)))
            nan = valid[:HEADER_SIZE] + np.full(16, np.nan, dtype="<f2").tobytes()
            abuse = [
                b"\x00" * 2000,  # oversized
                b"\x07garbled",  # wrong version, too short
                nan,  # NaN code
                "text, not bytes",  # wrong message kind
                encode_frame(frame(6, np.zeros(8))),  # wrong code dimension
            ]
            streaming = asyncio.create_task(_stream(good, np.ones(16), 1, 2.0))
            for message in abuse:
                rogue.send_raw(message)
            for seq in range(200, 400):  # a flood far over 120 expr messages/s
                rogue.send_frame(frame(seq, np.zeros(16)))
            rogue.send_ctrl("{not json")
            rogue.send_ctrl({"type": "launch-missiles"})
            rogue.send_ctrl({"type": "avatar", "avatar": "zed"})
            rogue.send_ctrl({"type": "framing", "framing": "zoom"})
            for _ in range(100):  # a ctrl flood far over 20 requests/s
                rogue.send_ctrl({"type": "stats"})
            good.send_ctrl({"type": "framing", "framing": "fixed"})
            await _until(lambda: len(rogue.stats.ctrl_errors) >= 11)
            await _until(lambda: good.stats.framing == "fixed")
            before = viewer.stats.frames_received.get(1, 0)
            await streaming
            after = viewer.stats.frames_received.get(1, 0)
        finally:
            for client in (rogue, good, viewer):
                await client.close()
        errors = " | ".join(rogue.stats.ctrl_errors)
        for expected in (
            "exceeds 1024",
            "expression frame too short",
            "code contains NaN",
            "must be binary",
            "does not match the avatar's 16",
            "not JSON",
            "unknown ctrl message type",
            "unknown avatar 'zed'",
            "framing must be one of auto, fixed, free",
            "over 120 expr messages/s",
            "over 20 ctrl messages/s",
        ):
            assert expected in errors
        assert app[METRICS].counter("ctrl_dropped_total", reason="rate") >= 50
        assert after - before > 10  # the well-behaved sender's avatar kept coming
        assert app[METRICS].counter("frames_received_total") > 30
        assert app[METRICS].counter("errors_total", kind="expr") == 5


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
@pytest.mark.parametrize(("prefer_h264", "codec"), [(True, "video/H264"), (False, "video/VP8")])
async def test_tuned_h264_when_offered_and_vp8_as_the_fallback(
    prefer_h264: bool, codec: str
) -> None:
    from telepresence.peers import negotiated_video_codecs

    async with running_server() as server:
        sender = TelepresenceClient(url(server), "r", "sender", seats=0)
        frames = FrameLog()
        viewer = TelepresenceClient(
            url(server), "r", "viewer", seats=1, on_frame=frames, prefer_h264=prefer_h264
        )
        try:
            await sender.connect()
            await sender.wait_channels()
            await viewer.connect()
            chosen = negotiated_video_codecs(viewer.pc.remoteDescription.sdp)
            await _stream(sender, np.ones(16), 1, 1.0)
        finally:
            await sender.close()
            await viewer.close()
    assert list(chosen.values()) == [codec]
    assert (frames.latest[0] < 200).mean() > 0.1  # decoded avatar frames


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_clients_report_their_latency_into_metrics() -> None:
    """A stats request's ``e2e_ms`` (what the client measured or estimated) is counted in the
    server's /metrics; a value that is not a latency is refused on ctrl."""
    from telepresence.app import METRICS

    async with running_server() as server:
        metrics = server.app[METRICS]  # type: ignore[index]
        sender = TelepresenceClient(url(server), "room", "sender", seats=0)
        await sender.connect()
        await sender.wait_channels()
        try:
            sender.send_ctrl({"type": "stats", "e2e_ms": 120.5})
            sender.send_ctrl({"type": "stats", "e2e_ms": 80, "estimated": True})
            for bad in ('"fast"', "-1", "1e9", "NaN", "true"):
                sender.send_ctrl('{"type": "stats", "e2e_ms": ' + bad + "}")
            await _until(lambda: len(sender.stats.ctrl_errors) == 5)
            assert all("'e2e_ms' must be" in error for error in sender.stats.ctrl_errors)
            measured = metrics.histogram("client_e2e_ms")
            estimated = metrics.histogram("client_e2e_estimate_ms")
            assert measured is not None and (measured.count, measured.total) == (1, 120.5)
            assert estimated is not None and (estimated.count, estimated.total) == (1, 80)
            text = metrics.render()
            assert 'telepresence_client_e2e_ms_bucket{le="200"} 1' in text
        finally:
            await sender.close()
