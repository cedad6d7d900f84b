"""ICE host candidates.

aioice offers every interface address except 127.0.0.1 as a host candidate and has no
per-connection option to choose them. ``restrict_host_addresses`` replaces its address lookup
for the whole process: a server for local demos and the tests use ``["127.0.0.1"]`` so that
media stays on loopback. Call it once at start-up, before any peer connection exists.

A peer whose machine vanishes (no DTLS or SCTP goodbye) is noticed only by ICE consent
freshness (RFC 7675): aioice checks every 5 s and gives up after 6 failures, ~30 s during which
it holds a session slot. ``check_consent`` makes that a few seconds, process-wide.

Janus (libnice) never offers loopback candidates: a local Janus's media is on the machine's
main address, so peers that talk to one offer :func:`machine_address` as well.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import aioice.ice


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


CONSENT_INTERVAL_S = 0.3  # the server's consent checks (aioice: 5 s)
CONSENT_FAILURES = 5  # in a row before a peer counts as gone (aioice: 6): ~4 s


def check_consent(interval_s: float = CONSENT_INTERVAL_S, failures: int = CONSENT_FAILURES) -> None:
    """ICE consent checks every ``interval_s`` (±20 %), a peer gone after ``failures`` misses in
    a row. A miss is one check unanswered in 0.5 s (aioice sends it once), so a vanished peer is
    let go after ~``failures`` × (``interval_s`` + 0.5) s. A live peer is dropped by mistake
    when ``failures`` checks in a row lose their request or answer: at 5 % loss each way
    (a miss in 9.75 % of checks) once in ~110,000 checks, about once in 10 hours of a session;
    at 2 % once in ~10 million (a month)."""
    aioice.ice.CONSENT_INTERVAL = interval_s  # type: ignore[assignment]  # aioice types it int
    aioice.ice.CONSENT_FAILURES = failures


def machine_address() -> str | None:
    """This machine's address on its main interface, if it has one besides loopback (found
    without sending a packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
        except OSError:
            try:
                address = socket.gethostbyname(socket.gethostname())
            except OSError:
                return None
    return None if address.startswith("127.") else address


def local_addresses() -> list[str]:
    """Loopback and the main interface: what a local peer offers to reach a local Janus."""
    address = machine_address()
    return ["127.0.0.1", *([address] if address else [])]
