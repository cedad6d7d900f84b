"""The avatar video encoders (x264, VP8) and the RTCP hooks that drive them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from telepresence.encode import MAX_BITRATE, MIN_BITRATE, VideoEncoder, watch_rtcp


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (96, 64), dtype=np.uint8)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_keyframes_come_first_on_request_and_after_a_bitrate_change(codec: str) -> None:
    encoder = VideoEncoder(codec, 64, 64, 30, keyframe_interval_s=10)
    first = encoder.encode(_image(0), 0)
    assert len(first) == 1 and first[0].is_keyframe
    if codec == "h264":
        assert bytes(first[0]).startswith(b"\x00\x00\x00\x01")  # Annex-B
    assert not encoder.encode(_image(1), 3000)[0].is_keyframe
    encoder.request_keyframe()
    assert encoder.encode(_image(2), 6000)[0].is_keyframe
    encoder.set_target_bitrate(3 * MIN_BITRATE)
    assert encoder.encode(_image(3), 9000)[0].is_keyframe  # reopened at the new rate
    assert not encoder.encode(_image(4), 12000)[0].is_keyframe
    encoder.set_target_bitrate(10)
    assert encoder.bitrate == MIN_BITRATE  # clamped
    encoder.set_target_bitrate(10**9)
    assert encoder.bitrate == MAX_BITRATE


class _Sender:
    """Just what watch_rtcp touches on an RTCRtpSender."""

    _ssrc = 1234

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def _handle_rtcp_packet(self, packet: object) -> None:
        self.seen.append(packet)


def test_unknown_codecs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown codec 'av1'"):
        VideoEncoder("av1", 64, 64, 30)


def test_pli_and_remb_reach_the_encoder() -> None:
    encoder = VideoEncoder("h264", 64, 64, 30)
    encoder.encode(_image(0), 0)  # consumes the initial keyframe request
    sender = _Sender()
    watch_rtcp(sender, encoder.request_keyframe, encoder.set_target_bitrate)  # type: ignore[arg-type]
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=1234)
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(400_000, [1234])
    )
    asyncio.run(sender._handle_rtcp_packet(pli))
    assert encoder.encode(_image(1), 3000)[0].is_keyframe
    asyncio.run(sender._handle_rtcp_packet(remb))
    assert encoder.bitrate == pytest.approx(400_000, rel=0.01)
    assert len(sender.seen) == 2  # aiortc's own handling still runs
