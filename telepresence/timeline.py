"""Where an expression frame's time goes on the server, for ``telepresence bench``'s breakdown.

With ``stamp_frames`` on, the server marks each sender frame (participant id, seq) as it is
received, as its render starts and ends, and as the first video track starts and ends encoding
the image that shows it. Times are ``time.time()`` (CLOCK_REALTIME): the clock the sender's wire
timestamp uses and that every process of one machine shares, so the client's capture and decode
times join them.
"""

from __future__ import annotations

import time
from collections import OrderedDict

STAGES = ("received", "render_start", "render_end", "encode_start", "encode_end")
KEEP = 16384  # frames remembered (about a minute of 8 senders at 30 fps)

FrameKey = tuple[str, int]  # (sender participant id, seq)


class FrameTimeline:
    """First time each stage happened to each frame; the oldest frames are forgotten."""

    def __init__(self) -> None:
        self._frames: OrderedDict[FrameKey, dict[str, float]] = OrderedDict()

    def mark(self, participant: str, seq: int | None, stage: str) -> None:
        if seq is None:
            return
        key = (participant, seq)
        times = self._frames.get(key)
        if times is None:
            times = self._frames[key] = {}
            if len(self._frames) > KEEP:
                self._frames.popitem(last=False)
        times.setdefault(stage, time.time())

    def of(self, participant: str, seq: int) -> dict[str, float]:
        return dict(self._frames.get((participant, seq), {}))
