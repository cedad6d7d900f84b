"""ICE host candidates.

aioice offers every interface address except 127.0.0.1 as a host candidate and has no
per-connection option to choose them. ``restrict_host_addresses`` replaces its address lookup
for the whole process: a server for local demos and the tests use ``["127.0.0.1"]`` so that
media stays on loopback. Call it once at start-up, before any peer connection exists.

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
