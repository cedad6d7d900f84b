"""Room tokens: HMAC-SHA256-signed, expiring, scoped to a room and a role."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time

ROLES = ("sender", "viewer", "create")  # create: upload clips for new avatars (the room: owner)


class TokenError(ValueError):
    """A token that does not grant what was asked; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the canonical unpadded form decodes (no padding, no unused bits set), so a
    token has exactly one spelling."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def mint_token(secret: str, room: str, role: str, ttl_s: float, now: float | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not secret:
        raise ValueError("the secret is empty")
    if not (ttl_s > 0 and math.isfinite(ttl_s)):
        raise ValueError("ttl must be a positive, finite number of seconds")
    issued = time.time() if now is None else now
    payload = json.dumps({"room": room, "role": role, "exp": issued + ttl_s}, sort_keys=True)
    body = _b64(payload.encode())
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}"


def verify_token(secret: str, token: str, room: str, role: str, now: float | None = None) -> None:
    """Raises TokenError unless ``token`` is valid, unexpired and grants ``role`` in ``room``."""
    if not isinstance(token, str) or token.count(".") != 1:
        raise TokenError("malformed token")
    body, signature = token.split(".")
    expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except ValueError:
        raise TokenError("malformed token") from None
    if not hmac.compare_digest(expected, given):  # before anything of the body is parsed
        raise TokenError("bad token signature")
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError("malformed token") from None
    if not isinstance(claims, dict):
        raise TokenError("malformed token")
    if claims.get("room") != room:
        raise TokenError(f"token is for another room than {room!r}")
    if claims.get("role") != role:
        raise TokenError(f"token does not grant the {role} role")
    expiry = claims.get("exp")
    if not isinstance(expiry, int | float) or not math.isfinite(expiry):
        raise TokenError("malformed token")
    if (time.time() if now is None else now) > expiry:
        raise TokenError("token expired")


def token_room(token: str) -> str | None:
    """The room a token names, unverified (verify_token checks it): who a create token's owner
    is. None for a malformed token."""
    try:
        claims = json.loads(_unb64(token.split(".")[0]))
    except (ValueError, UnicodeDecodeError, IndexError, RecursionError):
        return None
    room = claims.get("room") if isinstance(claims, dict) else None
    return room if isinstance(room, str) else None
