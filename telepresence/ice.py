"""ICE host candidates.

aioice offers every interface address except 127.0.0.1 as a host candidate and has no
per-connection option to choose them. ``restrict_host_addresses`` replaces its address lookup
for the whole process: a server for local demos and the tests use ``["127.0.0.1"]`` so that
media stays on loopback. Call it once at start-up, before any peer connection exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
