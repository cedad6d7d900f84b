"""Media through a real TURN relay (Debian's coturn on loopback) with server-minted credentials."""

from __future__ import annotations

import gc
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCIceServer

from server_fixtures import running_server, url
from telepresence.app import PEERS
from telepresence.sender import ClientError, TelepresenceClient
from telepresence.turn import stun_answers, turn_address, turn_credentials
from test_server_media import FrameLog, _stream

TURN_SECRET = "turn-test-secret"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def coturn(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn's turnserver is not installed (.ci/run installs Debian's coturn)")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log",
            f"--log-file={tmp_path / 'turn.log'}", "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1", "--allow-loopback-peers", "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}", "--realm=npga.test",
            "--min-port=49200", "--max-port=49400",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    try:
        assert process.poll() is None, "turnserver exited at start"
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _relay_only_candidates(sdp: str) -> bool:
    types = [line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if " typ " in line]
    return bool(types) and set(types) == {"relay"}


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
# aioice leaves one TURN client socket to the garbage collector after a relayed session closes
# (its transport is not closed on teardown); that is aioice's, not a leak of this project.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_media_and_data_flow_through_the_turn_relay(coturn: str) -> None:
    async with running_server(turn_urls=(coturn,), turn_secret=TURN_SECRET) as server:
        frames = FrameLog()
        client = TelepresenceClient(
            url(server), "r", "sender", seats=1, on_frame=frames, ice_from_server=True,
            relay_only=True,
        )  # fmt: skip
        try:
            await client.connect()
            await client.wait_channels()
            assert _relay_only_candidates(client.pc.localDescription.sdp)
            assert server.app is not None and server.app[PEERS].turn.reachable == (coturn,)
            assert client.ice_servers[-1].username.endswith(":r-sender-127.0.0.1")
            await _stream(client, np.ones(16), 1, 1.5)
            stats = client.stats
        finally:
            await client.close()
    gc.collect()  # let aioice's orphaned socket be collected here, under this test's filter
    assert stats.frames_received.get(0, 0) > 15  # video came back through the relay
    assert (frames.latest[0] < 200).mean() > 0.1
    assert not stats.ctrl_errors


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
async def test_wrong_turn_credentials_are_refused(coturn: str) -> None:
    async with running_server(turn_urls=(coturn,), turn_secret=TURN_SECRET) as server:
        client = TelepresenceClient(url(server), "r", "viewer", seats=1, relay_only=True)
        username, _ = turn_credentials(TURN_SECRET, "intruder", 600)
        client.ice_servers = [RTCIceServer(urls=coturn, username=username, credential="wrong")]
        client.pc = client._new_peer_connection()
        try:
            with pytest.raises(ClientError, match="no WebRTC connection"):
                await client.connect(timeout=6)
            assert not _relay_only_candidates(client.pc.localDescription.sdp)
        finally:
            await client.close()
    gc.collect()


def test_credentials_follow_the_turn_rest_scheme() -> None:
    import base64
    import hashlib
    import hmac

    username, password = turn_credentials("s", "alice", 60, now=1000.0)
    assert username == "1060:alice"
    expected = base64.b64encode(hmac.new(b"s", b"1060:alice", hashlib.sha1).digest()).decode()
    assert password == expected


@pytest.mark.asyncio
async def test_the_turn_probe_tells_a_live_server_from_a_dead_one(coturn: str) -> None:
    assert await stun_answers(coturn)
    dead = f"turn:127.0.0.1:{_free_port()}?transport=udp"
    assert not await stun_answers(dead)
    assert not await stun_answers("turn:127.0.0.1:9?transport=tcp")


@pytest.mark.asyncio
@pytest.mark.usefixtures("loopback_ice")
async def test_an_unreachable_turn_server_does_not_delay_offers() -> None:
    """aioice waits ~5 s for a TURN server that does not answer, on every offer: the server's
    own peers skip it (clients are still told about it)."""
    dead = f"turn:127.0.0.1:{_free_port()}?transport=udp"
    async with running_server(turn_urls=(dead,), turn_secret=TURN_SECRET) as server:
        assert server.app is not None and server.app[PEERS].turn.reachable == ()
        client = TelepresenceClient(url(server), "r", "viewer", seats=1)
        try:
            started = time.monotonic()
            await client.connect()
            answered = time.monotonic() - started
        finally:
            await client.close()
    print(f"offer answered in {answered:.2f} s with the TURN server down (5.2 s before)")


def test_turn_urls_name_their_host_port_and_transport() -> None:
    assert turn_address("turn:relay.example:3479?transport=tcp") == ("relay.example", 3479, "tcp")
    assert turn_address("turn:10.0.0.1") == ("10.0.0.1", 3478, "udp")
    assert turn_address("turns:relay.example") == ("relay.example", 5349, "tcp")
    assert turn_address("turn:[::1]:3478?transport=udp") == ("::1", 3478, "udp")
