"""Avatar video encoding: tuned x264 (H.264) or libvpx (VP8), pre-encoded packets.

aiortc's own encoders run once per video track and its H.264 encoder sets no x264 preset (~9 ms
per 512x512 frame here against ~1.5 ms with ultrafast/zerolatency). Our tracks return
``av.Packet``s, which aiortc only packetises: one encode per avatar frame and codec serves every
viewer (telepresence/streams.py). Keyframes on PLI/FIR and the bitrate from REMB are then ours:
:func:`watch_rtcp` hands them to the stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, unpack_remb_fci
from aiortc.sdp import SessionDescription

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90_000)
MIN_BITRATE = 150_000
MAX_BITRATE = 3_000_000
START_BITS_PER_PIXEL = 0.1  # per frame: ~200 kbit/s at 256x256, ~800 kbit/s at 512x512
BITRATE_CHANGE = 0.15  # reopen the encoder only for changes beyond 15 %
CODECS = {"video/H264": "h264", "video/VP8": "vp8"}  # negotiated mime type -> our codec name


def _x264_options(keyframe_interval: int, bitrate: int) -> dict[str, str]:
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "level": "31",
        "x264-params": f"keyint={keyframe_interval}:min-keyint={keyframe_interval}"
        ":scenecut=0:repeat-headers=1:bframes=0"
        f":vbv-maxrate={bitrate // 1000}:vbv-bufsize={bitrate // 2000}",
    }


def _vp8_options(bitrate: int) -> dict[str, str]:
    """aiortc's realtime VP8 settings (codecs/vpx.py), as one encoder for every viewer."""
    return {
        "bufsize": str(bitrate),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "noise-sensitivity": "4",
        "overshoot-pct": "15",
        "partitions": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
    }


class VideoEncoder:
    """yuv420p images -> packets of ``codec`` ("h264": Annex-B; "vp8"); thread-safe requests,
    encoding in one thread at a time."""

    def __init__(
        self, codec: str, width: int, height: int, fps: float, keyframe_interval_s: float = 2.0
    ):
        if codec not in CODECS.values():
            raise ValueError(f"unknown codec {codec!r}")
        self.codec, self.width, self.height, self.fps = codec, width, height, fps
        self.keyframe_interval = max(1, round(keyframe_interval_s * fps))
        self._lock = threading.Lock()
        self._context: Any = None
        start = int(min(MAX_BITRATE, max(MIN_BITRATE, START_BITS_PER_PIXEL * width * height * fps)))
        self._bitrate = start
        self._wanted_bitrate = start
        self._keyframe_requested = True

    @property
    def bitrate(self) -> int:
        return self._wanted_bitrate

    def request_keyframe(self) -> None:
        with self._lock:
            self._keyframe_requested = True

    def set_target_bitrate(self, bitrate: int) -> None:
        with self._lock:
            self._wanted_bitrate = int(min(MAX_BITRATE, max(MIN_BITRATE, bitrate)))

    def _open(self, bitrate: int) -> None:
        name = "libx264" if self.codec == "h264" else "libvpx"
        context: Any = av.CodecContext.create(name, "w")  # a VideoCodecContext
        context.width, context.height = self.width, self.height
        context.pix_fmt = "yuv420p"
        context.framerate = Fraction(self.fps).limit_denominator(1001)
        context.time_base = VIDEO_TIME_BASE
        context.bit_rate = bitrate
        if self.codec == "h264":
            context.options = _x264_options(self.keyframe_interval, bitrate)
        else:
            context.gop_size = self.keyframe_interval
            context.qmin, context.qmax = 2, 56
            context.options = _vp8_options(bitrate)
        context.open()
        self._context, self._bitrate = context, bitrate

    def encode(self, yuv: np.ndarray, pts: int) -> list[av.Packet]:
        """Encode one image [H*3/2, W] uint8 shown at ``pts`` (90 kHz, increasing)."""
        with self._lock:
            keyframe, self._keyframe_requested = self._keyframe_requested, False
            wanted = self._wanted_bitrate
        if self._context is None or abs(wanted - self._bitrate) > BITRATE_CHANGE * self._bitrate:
            self._open(wanted)  # a new encoder starts with a keyframe
            keyframe = True
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = list(self._context.encode(frame))
        for packet in packets:
            packet.pts, packet.time_base = pts, VIDEO_TIME_BASE
        return packets


def watch_rtcp(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_bitrate: Callable[[int], None],
) -> None:
    """Route PLI/FIR (keyframe) and REMB (bitrate estimate) received for ``sender``.

    aiortc applies these to its own encoders only; it delivers RTCP by calling the sender's
    ``_handle_rtcp_packet``, which we extend on this one instance.
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await original(packet)
        if not isinstance(packet, RtcpPsfbPacket):
            return
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                on_bitrate(bitrate)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def negotiated_video_codecs(sdp: str) -> dict[str | None, str]:
    """mid -> the codec chosen for that video section of an answer (its first payload type)."""
    description = SessionDescription.parse(sdp)
    return {
        media.rtp.muxId: media.rtp.codecs[0].mimeType
        for media in description.media
        if media.kind == "video" and media.rtp.codecs
    }
