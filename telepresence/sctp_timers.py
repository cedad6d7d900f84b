"""SCTP retransmission timers for the data channels, process-wide.

aiortc 1.16 uses RFC 4960's timers: RTO.Initial 3 s and RTO.Min 1 s. At connect, a lost INIT,
COOKIE or data-channel OPEN then costs 3 s each (at 10 % loss connecting took 6.7 s), and any
lost ctrl message at least 1 s. RFC 9260, which obsoletes RFC 4960, sets RTO.Initial to 1 s;
the minimum here is 0.2 s, above the round trip of any path a call is usable on, as in
WebRTC's own SCTP stacks. Call ``quicken_sctp_retransmits`` once at start-up.
"""

from __future__ import annotations

import aiortc.rtcsctptransport as sctp

RTO_INITIAL_S = 1.0
RTO_MIN_S = 0.2


def quicken_sctp_retransmits(
    initial_s: float = RTO_INITIAL_S, minimum_s: float = RTO_MIN_S
) -> None:
    sctp.SCTP_RTO_INITIAL = initial_s
    sctp.SCTP_RTO_MIN = minimum_s  # type: ignore[assignment]  # aiortc types it int
