"""HTTP API of the server: routes, validation, tokens, limits — every refusal a clear error."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCPeerConnection

from server_fixtures import TEST_SERVER_CONFIG, small_registry
from telepresence.app import create_app
from telepresence.auth import TokenError, mint_token, verify_token
from telepresence.config import Limits, ServerConfig


async def _client(config: ServerConfig = TEST_SERVER_CONFIG) -> TestClient:
    client = TestClient(TestServer(create_app(config, small_registry()), host="127.0.0.1"))
    await client.start_server()
    return client


async def _real_offer() -> tuple[RTCPeerConnection, dict[str, str]]:
    pc = RTCPeerConnection()
    pc.createDataChannel("expr")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, {"sdp": pc.localDescription.sdp, "type": "offer"}


@pytest.mark.asyncio
async def test_health_avatars_encoder_and_metrics() -> None:
    client = await _client()
    try:
        health = await (await client.get("/healthz")).json()
        assert health["status"] == "ok" and health["avatars"] == ["anna", "ben"]
        avatars = (await (await client.get("/api/avatars")).json())["avatars"]
        assert {a["id"] for a in avatars} == {"anna", "ben"}
        response = await client.get("/api/avatars/anna/encoder")
        encoder = await response.json()
        assert response.headers["Cache-Control"].startswith("public")
        assert encoder["format"] == "npga-expression-basis" and encoder["dim"] == 16
        missing = await client.get("/api/avatars/zed/encoder")
        assert missing.status == 404 and "unknown avatar 'zed'" in (await missing.json())["error"]
        text = await (await client.get("/metrics")).text()
        assert "telepresence_sessions_active 0" in text
        assert "telepresence_sessions_connected 0" in text
        assert 'telepresence_refusals_total{status="404"} 1' in text
        gauges = dict(line.rsplit(" ", 1) for line in text.splitlines() if " " in line)
        assert 1 <= float(gauges["telepresence_asyncio_tasks"]) < 1000
        assert 50e6 < float(gauges["telepresence_process_resident_memory_bytes"]) < 20e9
        assert float(gauges["telepresence_process_open_fds"]) >= 3
        assert (await client.get("/")).status == 200
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_every_avatar_is_rendered_once_before_the_server_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="telepresence.scheduler")
    client = await _client()  # starting it runs the app's startup, then it listens
    try:
        ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("avatar ")]
        assert [message.split()[1] for message in ready] == ["anna", "ben"], ready
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"


def _offer(**fields: object) -> bytes:
    return json.dumps({"sdp": SDP, "type": "offer", **fields}).encode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"type": "offer"}', 400, "needs 'sdp'"),
        (_offer(type="answer"), 400, "'type' must be"),
        (_offer(role="admin"), 400, "'role' must be"),
        (_offer(sdp="garbage"), 400, "malformed SDP offer"),
        (_offer(sdp="v=0\r\nm=video 9 NOPE\r\nx=\x00"), 400, "malformed SDP offer"),
        (_offer(role="sender", avatar="zed"), 404, "unknown avatar 'zed'"),
        (_offer(see_self="yes"), 400, "'see_self' must be"),
        (_offer(role="sender", framing="zoom"), 400, "'framing' must be one of 'auto'"),
        # bounded before aiortc parses it (2,000 m-lines took 4.5 s to answer)
        (_offer(sdp=SDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 3000), 413, "at most 65536"),
        (_offer(sdp=SDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 1999), 400, "2000 media sections"),
        (_offer(sdp=SDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 5), 400, "6 media sections"),
    ],
)
async def test_bad_offers_get_clear_errors(body: bytes, status: int, message: str) -> None:
    client = await _client()
    try:
        response = await client.post(
            "/api/rooms/r/offer", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == status
        assert message in (await response.json())["error"]
        assert (await client.get("/healthz")).status == 200  # still serving
        assert "telepresence_errors_total" in await (await client.get("/metrics")).text()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_bad_room_names_are_refused() -> None:
    client = await _client()
    try:
        for room in ("bad%20room!", "r1%0A"):  # a space and '!'; a trailing newline
            response = await client.post(
                f"/api/rooms/{room}/offer",
                data=_offer(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status == 400 and "room names" in (await response.json())["error"]
    finally:
        await client.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_tokens_scope_room_role_and_expiry() -> None:
    client = await _client(replace(TEST_SERVER_CONFIG, secret="s3cret"))
    peers = []
    try:
        cases = [
            (None, 401, "needs a token"),
            ("garbage", 403, "malformed token"),
            (mint_token("other", "r", "viewer", 60), 403, "bad token signature"),
            (mint_token("s3cret", "elsewhere", "viewer", 60), 403, "another room"),
            (mint_token("s3cret", "r", "sender", 60), 403, "does not grant the viewer role"),
            (mint_token("s3cret", "r", "viewer", 1, now=time.time() - 10), 403, "token expired"),
        ]
        for token, status, message in cases:
            pc, offer = await _real_offer()
            peers.append(pc)
            response = await client.post(
                "/api/rooms/r/offer", json={**offer, "role": "viewer", "token": token}
            )
            assert response.status == status, token
            assert message in (await response.json())["error"]
        pc, offer = await _real_offer()
        peers.append(pc)
        good = mint_token("s3cret", "r", "viewer", 60)
        response = await client.post("/api/rooms/r/offer", json={**offer, "token": good})
        assert response.status == 200
        assert (await response.json())["type"] == "answer"
    finally:
        for pc in peers:
            await pc.close()
        await client.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_full_room_and_server_limits() -> None:
    limits = Limits(max_participants_per_room=2, max_rooms=2, max_sessions=3)
    client = await _client(replace(TEST_SERVER_CONFIG, limits=limits))
    peers = []

    async def join(room: str) -> tuple[int, dict[str, str]]:
        pc, offer = await _real_offer()
        peers.append(pc)
        response = await client.post(f"/api/rooms/{room}/offer", json=offer)
        return response.status, await response.json()

    try:
        assert (await join("a"))[0] == 200
        assert (await join("a"))[0] == 200
        status, body = await join("a")
        assert status == 429 and "room 'a' is full" in body["error"]
        assert (await join("b"))[0] == 200
        status, body = await join("c")
        assert status == 429 and "limit of" in body["error"]
    finally:
        for pc in peers:
            await pc.close()
        await client.close()


def _signed(secret: str, claims_json: str) -> str:
    """A token with any body, properly signed (what a holder of the secret could mint)."""
    body = base64.urlsafe_b64encode(claims_json.encode()).rstrip(b"=").decode()
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_tokens_have_one_spelling_a_finite_expiry_and_are_checked_before_parsing() -> None:
    good = mint_token("k", "r", "viewer", 60)
    body, signature = good.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]  # an unused bit
    for forged in (good + "==", f"{body}.{flipped}"):  # the same signature, spelled otherwise
        with pytest.raises(TokenError, match="malformed token"):
            verify_token("k", forged, "r", "viewer")
    with pytest.raises(TokenError, match="bad token signature"):  # the body spelled otherwise
        verify_token("k", f"{body}=.{signature}", "r", "viewer")
    for expiry in ("Infinity", "NaN", "1e999"):
        claims = f'{{"exp": {expiry}, "role": "viewer", "room": "r"}}'
        with pytest.raises(TokenError, match="malformed token"):
            verify_token("k", _signed("k", claims), "r", "viewer")
    deep = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad token signature"):  # never parsed
        verify_token("k", f"{deep}.{signature}", "r", "viewer")
    with pytest.raises(ValueError, match="secret is empty"):
        mint_token("", "r", "viewer", 60)
    with pytest.raises(ValueError, match="finite"):
        mint_token("k", "r", "viewer", float("inf"))


def test_token_round_trip() -> None:
    token = mint_token("k", "room", "sender", 30)
    verify_token("k", token, "room", "sender")
    with pytest.raises(TokenError, match="expired"):
        verify_token("k", token, "room", "sender", now=time.time() + 60)
    with pytest.raises(ValueError, match="role must be"):
        mint_token("k", "room", "boss", 30)


@pytest.mark.asyncio
async def test_hostile_requests_get_4xx_never_500() -> None:
    """Each of these raised inside a handler (a 500 and a traceback in the log)."""
    client = await _client()
    nested = b'{"sdp": ' + b"[" * 50_000 + b"]" * 50_000 + b', "type": "offer"}'
    pc, real = await _real_offer()
    await pc.close()
    bundle = real["sdp"].replace("a=group:BUNDLE ", "a=group:BUNDLE nosuchmid ", 1)
    cases = [
        ("POST", "/api/rooms/r/offer", nested, {"Content-Type": "application/json"}),
        ("POST", "/api/rooms/r/offer", _offer(),
         {"Content-Type": "application/json; charset=x-nope"}),
        ("POST", "/api/rooms/r/offer", _offer(),
         {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ("POST", "/api/rooms/r/offer", json.dumps({**real, "sdp": bundle}).encode(),
         {"Content-Type": "application/json"}),
        ("GET", "/static/app%00.js", None, {}),
        ("GET", "/static/" + "a" * 300 + ".js", None, {}),
    ]  # fmt: skip
    try:
        for method, path, body, headers in cases:
            # a fresh connection each: the server drops one whose body could not be decoded
            headers = {**headers, "Connection": "close"}
            response = await client.request(method, path, data=body, headers=headers)
            assert 400 <= response.status < 500, (path[:60], headers, response.status)
            assert "error" in await response.json(content_type=None)
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_refusals_are_logged_one_line_each_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await _client()
    try:
        with caplog.at_level(logging.INFO, logger="telepresence.refused"):
            for _ in range(40):  # a burst far over 5 lines a second
                response = await client.post(
                    "/api/rooms/r/offer", data=b"[1]", headers={"Content-Type": "application/json"}
                )
                assert response.status == 400
            await asyncio.sleep(1.0)
            assert (await client.get("/static/nosuchfile.js")).status == 404
    finally:
        await client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "telepresence.refused"]
    assert 3 <= len(lines) <= 12, lines  # the burst is limited...
    assert lines[0].startswith("refused POST /api/rooms/r/offer from 127.0.0.1: 400 offer must be")
    assert "more not logged" in lines[-1] and "404" in lines[-1]  # ...and says what it left out
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks
