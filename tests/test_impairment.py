"""Sessions through a lossy, delayed path (tests/impairment.py: a UDP relay as the only ICE
path), issue 23: the rate holds, latency settles and stays, and a lost network comes back."""

from __future__ import annotations

from collections.abc import Iterator

import aioice.ice
import aiortc.rtcsctptransport
import pytest

from impairment import Impairment, impaired_session, rewrite_candidates
from server_fixtures import SMALL_CONFIG, running_server, url
from telepresence.ice import check_consent, restrict_host_addresses
from telepresence.sctp_timers import quicken_sctp_retransmits

DIM = SMALL_CONFIG.expression_dim
LOSSY = Impairment(loss=0.05, delay_ms=40, jitter_ms=10)


@pytest.fixture()
def served_as_deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ICE on loopback, consent checks and SCTP timers as ``telepresence serve`` and ``send``
    set them (restored after the test)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    for name in ("CONSENT_INTERVAL", "CONSENT_FAILURES"):
        monkeypatch.setattr(aioice.ice, name, getattr(aioice.ice, name))
    for name in ("SCTP_RTO_INITIAL", "SCTP_RTO_MIN"):
        monkeypatch.setattr(aiortc.rtcsctptransport, name, getattr(aiortc.rtcsctptransport, name))
    restrict_host_addresses(["127.0.0.1"])
    check_consent()
    quicken_sctp_retransmits()
    yield


def test_candidates_are_rewritten_to_the_relay_only() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        "a=candidate:a 1 udp 2130706431 10.0.0.5 5000 typ host\r\n"
        "a=candidate:b 1 udp 1694498815 203.0.113.9 5001 typ srflx raddr 10.0.0.5 rport 5000\r\n"
        "a=end-of-candidates\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
        "a=candidate:a 1 udp 2130706431 10.0.0.5 5000 typ host\r\n"
    )
    rewritten = rewrite_candidates(sdp, 4242)
    candidates = [line for line in rewritten.split("\r\n") if line.startswith("a=candidate")]
    assert candidates == ["a=candidate:1 1 udp 2130706431 127.0.0.1 4242 typ host"] * 2
    assert "10.0.0.5" not in rewritten and "a=mid:1" in rewritten


@pytest.mark.slow
@pytest.mark.asyncio
async def test_at_5_percent_loss_a_session_holds_its_rate_and_its_latency_settles(
    served_as_deployed: None,
) -> None:
    async with running_server(stamp_frames=True, resolution=128) as server:
        clean = await impaired_session(url(server), Impairment(), 6.0, DIM)
        lossy = await impaired_session(url(server), LOSSY, 60.0, DIM)
    dropped = lossy.relay_counts["up_dropped"] + lossy.relay_counts["down_dropped"]
    assert dropped > 0.03 * sum(lossy.relay_counts.values())  # the relay really dropped 5 %
    print("clean", clean.summary(), "\nlossy", lossy.summary())
    assert lossy.fps >= 25.0
    assert lossy.avatar_fps >= 0.9 * clean.avatar_fps
    settled = lossy.latency_p(95, 10.0)
    assert settled is not None
    first, middle, last = (lossy.latency_p(95, a, b) for a, b in ((0, 10), (10, 35), (40, 60)))
    assert first is not None and middle is not None and last is not None
    assert first <= 2 * settled, f"first 10 s p95 {first:.0f} ms, settled {settled:.0f} ms"
    assert last <= 1.25 * middle + 20, f"p95 grew: {middle:.0f} ms -> {last:.0f} ms"
    assert lossy.reconnects == 0


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_session_comes_back_by_itself_after_a_5_s_outage(
    served_as_deployed: None,
) -> None:
    async with running_server(stamp_frames=True, resolution=128) as server:
        report = await impaired_session(
            url(server), Impairment(delay_ms=20), 18.0, DIM, outage=(3.0, 5.0)
        )
    print(report.summary())
    assert report.reconnects == 1
    assert report.recovery_s is not None and report.recovery_s < 6.0
    assert report.avatar_fps_between(12.0, 17.0) >= 25.0  # the session's own rate again
