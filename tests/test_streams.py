"""Avatar streams: one encode per avatar frame and codec for every viewer, keyframes coalesced,
a viewer that falls behind resynchronised, the lowest viewer bitrate, capture-time RTP clocks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from telepresence.encode import MIN_BITRATE
from telepresence.metrics import Metrics
from telepresence.streams import QUEUE_FRAMES, EncodedFrame, RtpClock, StreamHub, Subscription


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (96, 64), dtype=np.uint8)


async def _take(subscription: Subscription, count: int) -> list[EncodedFrame]:
    return [await asyncio.wait_for(subscription.queue.get(), 5.0) for _ in range(count)]


async def _publish(hub: StreamHub, stream, frames: range) -> None:  # type: ignore[no-untyped-def]
    for i in frames:
        stream.publish(_image(i), "anna", i, 1000.0 + i / 30)
        await asyncio.sleep(0.03)  # the encoder takes each frame before the next


@pytest.mark.asyncio
@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_eight_viewers_cost_one_encode_per_frame(codec: str) -> None:
    metrics = Metrics()
    hub = StreamHub(64, 30, metrics)
    stream = hub.open("p1")
    viewers = [stream.subscribe(codec) for _ in range(8)]
    await _publish(hub, stream, range(6))
    received = [await _take(v, 6) for v in viewers]
    assert metrics.counter("encodes_total", codec=codec) == 6  # not 48
    for frames in received:
        assert frames[0].keyframe  # a decoder can start here
        assert [f.frame.seq for f in frames] == list(range(6))
        assert [bytes(f.packet) for f in frames] == [bytes(f.packet) for f in received[0]]
    await hub.close_all()


@pytest.mark.asyncio
async def test_keyframe_requests_are_coalesced_and_a_late_viewer_starts_on_one() -> None:
    metrics = Metrics()
    hub = StreamHub(64, 30, metrics)
    stream = hub.open("p1")
    first = stream.subscribe("h264")
    await _publish(hub, stream, range(3))
    await _take(first, 3)
    encodes = metrics.counter("encodes_total", codec="h264")
    late = [stream.subscribe("h264") for _ in range(3)]  # three join (or send PLIs) at once
    for viewer in late:
        stream.request_keyframe(viewer)
    await asyncio.sleep(0.2)
    assert metrics.counter("encodes_total", codec="h264") == encodes + 1  # one keyframe for all
    for viewer in late:
        (again,) = await _take(viewer, 1)
        assert again.keyframe and again.frame.seq == 2  # the current frame, as a keyframe
    await hub.close_all()


@pytest.mark.asyncio
async def test_a_viewer_that_falls_behind_skips_to_the_next_keyframe() -> None:
    metrics = Metrics()
    hub = StreamHub(64, 30, metrics)
    stream = hub.open("p1")
    slow, fast = stream.subscribe("h264"), stream.subscribe("h264")
    taken: list[EncodedFrame] = []
    for i in range(QUEUE_FRAMES + 4):  # the slow viewer never reads; the fast one always does
        stream.publish(_image(i), "anna", i, None)
        taken += await _take(fast, 1)
    assert metrics.counter("viewer_resyncs_total") >= 1
    assert any(f.keyframe for f in taken[1:])  # the resync keyframe reached everyone
    backlog = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert backlog and backlog[0].keyframe  # what the slow one has left starts decodable
    assert len(backlog) < QUEUE_FRAMES
    await hub.close_all()


@pytest.mark.asyncio
async def test_the_bitrate_is_the_lowest_viewer_estimate() -> None:
    hub = StreamHub(64, 30, Metrics())
    stream = hub.open("p1")
    a, b = stream.subscribe("h264"), stream.subscribe("h264")
    stream.set_bitrate(a, 900_000)
    stream.set_bitrate(b, 400_000)
    encoder = stream._encoders["h264"].encoder
    assert encoder.bitrate == 400_000
    stream.unsubscribe(b)  # the slow viewer leaves
    assert encoder.bitrate == 900_000
    stream.set_bitrate(a, 10)
    assert encoder.bitrate == MIN_BITRATE
    await hub.close_all()


def test_rtp_timestamps_follow_capture_times_and_always_increase() -> None:
    clock, source, other = RtpClock(), object(), object()
    assert clock.stamp(100.0, source) == 0
    assert clock.stamp(100.1, source) == 9000  # 100 ms of capture time at 90 kHz
    assert clock.stamp(100.05, source) > 9000  # a capture time going back: still increasing
    after_switch = clock.stamp(5.0, other)  # another sender's clock: the server's instead
    assert after_switch > 9000
    assert clock.stamp(None, other) > after_switch
