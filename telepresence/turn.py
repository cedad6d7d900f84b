"""Short-lived TURN credentials (the TURN REST API scheme coturn calls ``use-auth-secret``).

username = "<expiry unix time>:<user>", password = base64(HMAC-SHA1(secret, username)). coturn,
configured with the same ``static-auth-secret``, accepts them until the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credentials(
    secret: str, user: str, ttl_s: float, now: float | None = None
) -> tuple[str, str]:
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_json(
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    turn_secret: str | None,
    user: str,
    ttl_s: float,
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a client (browser or Python) with fresh TURN credentials."""
    servers: list[dict[str, Any]] = [{"urls": url} for url in stun_urls]
    if turn_urls and turn_secret is not None:
        username, credential = turn_credentials(turn_secret, user, ttl_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers
