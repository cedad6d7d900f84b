"""Connections that never finish a request are closed; bodies that never arrive are refused.

A real server on loopback with short limits, raw sockets as the clients: half-open connections
and slowly dripped headers (slowloris), an offer whose body stops, and a clip upload that
stalls. The server keeps answering everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest

from server_fixtures import TEST_SERVER_CONFIG, running_server, url
from telepresence.jobs import JobLimits

SHORT = replace(TEST_SERVER_CONFIG.limits, idle_connection_seconds=1.0, request_body_seconds=1.0)


async def _healthz_ms(http: aiohttp.ClientSession, base: str) -> float:
    started = time.monotonic()
    async with http.get(f"{base}/healthz") as response:
        assert response.status == 200
    return (time.monotonic() - started) * 1e3


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    return True


@pytest.mark.asyncio
async def test_half_open_and_slow_header_connections_are_closed() -> None:
    async with running_server(limits=SHORT) as server, aiohttp.ClientSession() as http:
        host, port = server.host, server.port
        assert port is not None
        clients = [await asyncio.open_connection(host, port) for _ in range(60)]
        for k, (_, writer) in enumerate(clients):
            if k % 2:  # half send the start of a request and never finish it
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                await writer.drain()
        assert await _healthz_ms(http, url(server)) < 500  # others are served meanwhile
        closed = await asyncio.gather(*(_closed_by_server(r, 5.0) for r, _ in clients))
        for _, writer in clients:
            writer.close()
        assert all(closed), f"{closed.count(False)} of {len(closed)} connections still open"


@pytest.mark.asyncio
async def test_an_offer_body_that_stops_gets_408() -> None:
    async with running_server(limits=SHORT) as server:
        assert server.port is not None
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"POST /api/rooms/r/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"sdp": "'
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status = await reader.readline()
            answer = await reader.read(4096)
        writer.close()
        assert status.startswith(b"HTTP/1.1 408"), status
        assert b"did not arrive in time" in answer


@pytest.mark.asyncio
async def test_an_upload_that_stalls_is_refused_and_nothing_stays(tmp_path) -> None:
    limits = replace(JobLimits(), upload_idle_seconds=1.0)
    async with running_server(avatar_store=tmp_path, job_limits=limits) as server:
        assert server.port is not None
        reader, writer = await asyncio.open_connection(server.host, server.port)
        boundary = b"xyz"
        head = (
            b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nMe\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="video"; filename="me.mp4"\r\n'
            b"Content-Type: video/mp4\r\n\r\n" + b"\x00" * 5000
        )
        writer.write(
            b"POST /api/avatars HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
            b"Content-Length: 10000000\r\n\r\n" + head
        )
        await writer.drain()
        async with asyncio.timeout(25):
            status = await reader.readline()
            answer = await reader.read(4096)
        writer.close()
        assert status.startswith(b"HTTP/1.1 408"), status
        assert b"the upload stalled" in answer
        jobs = tmp_path / "jobs"
        assert not jobs.exists() or not any(jobs.iterdir())  # nothing half-uploaded stays


@pytest.mark.asyncio
async def test_connections_over_the_cap_are_closed_at_once_and_counted() -> None:
    from telepresence.app import METRICS

    capped = replace(TEST_SERVER_CONFIG.limits, max_connections=20, idle_connection_seconds=30)
    async with running_server(limits=capped) as server, aiohttp.ClientSession() as http:
        host, port = server.host, server.port
        assert port is not None
        held = [await asyncio.open_connection(host, port) for _ in range(20)]
        await asyncio.sleep(0.2)  # accepted by the server's loop
        reader, writer = await asyncio.open_connection(host, port)
        assert await _closed_by_server(reader, 2.0)  # the 21st: closed, nothing parsed
        writer.close()
        metrics = server.app[METRICS]  # type: ignore[index]
        assert metrics.counter("refusals_total", status="connection_cap") >= 1
        for _, held_writer in held[:5]:
            held_writer.close()
        await asyncio.sleep(0.2)
        assert await _healthz_ms(http, url(server)) < 500  # room again: served
        for _, held_writer in held[5:]:
            held_writer.close()
