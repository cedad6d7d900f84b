"""Receivers publish through a real Janus (Debian's janus, started by the tests) and viewers
subscribe from it: video that follows the codes, two receivers in one room, refused tokens and
rogue publishers, and a Janus restart mid-call."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack

import aiohttp
import numpy as np
import pytest

from conftest import JANUS_SECRET as SECRET
from server_fixtures import running_server, url
from telepresence.config import SfuConfig
from telepresence.janus import janus_room, room_pin
from telepresence.janus_api import JanusError, JanusSession, signed_token
from telepresence.janus_local import LocalJanus
from telepresence.janus_viewer import JanusViewer
from telepresence.sender import TelepresenceClient
from test_server_media import FrameLog
from test_server_media import _stream as stream

pytestmark = pytest.mark.asyncio


def sfu(janus: LocalJanus) -> SfuConfig:
    return SfuConfig(url=janus.url, secret=SECRET)


async def until(predicate, timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def sender(stack: AsyncExitStack, server_url: str, room: str, avatar: str):
    client = TelepresenceClient(server_url, room, "sender", avatar=avatar, seats=0)
    stack.push_async_callback(client.close)
    await client.connect()
    await client.wait_channels()
    return client


async def viewer(stack: AsyncExitStack, server_url: str, room: str, seats: int = 1):
    frames = FrameLog()
    client = TelepresenceClient(server_url, room, "viewer")

    async def media() -> dict:
        found = await client.fetch_room_media()
        assert found is not None, "the receiver does not say the room's media is in Janus"
        return found

    watching = JanusViewer(media, seats=seats, on_frame=frames)
    stack.push_async_callback(watching.close)
    await watching.connect()
    return watching, frames


async def test_viewers_through_janus_see_the_avatar_follow_the_codes(janus: LocalJanus) -> None:
    async with running_server(sfu=sfu(janus)) as server, AsyncExitStack() as stack:
        anna = await sender(stack, url(server), "r1", "anna")
        seq = await stream(anna, np.zeros(16), 1, 0.5)
        viewers = [await viewer(stack, url(server), "r1") for _ in range(3)]
        seq = await stream(anna, np.zeros(16), seq, 1.5)
        neutral = [frames.latest[0].astype(float) for _, frames in viewers]
        await stream(anna, np.full(16, 3.0), seq, 1.5)
        moved = [frames.latest[0].astype(float) for _, frames in viewers]
    for before, after in zip(neutral, moved, strict=True):
        assert (before < 200).mean() > 0.1  # a head, not an empty seat
        assert np.abs(after - before).mean() > 2.0


async def test_two_receivers_publish_into_one_room(janus: LocalJanus) -> None:
    async with (
        running_server(sfu=sfu(janus)) as first,
        running_server(sfu=sfu(janus)) as second,
        AsyncExitStack() as stack,
    ):
        anna = await sender(stack, url(first), "shared", "anna")
        ben = await sender(stack, url(second), "shared", "ben")
        watching, frames = await viewer(stack, url(first), "shared", seats=2)
        await until(lambda: len(watching.feeds) == 2, what="both receivers' feeds")
        seq_a = seq_b = 1
        for _ in range(3):
            seq_a = await stream(anna, np.zeros(16), seq_a, 0.3)
            seq_b = await stream(ben, np.full(16, 2.0), seq_b, 0.3)
        await until(lambda: len(frames.latest) == 2, what="video in both seats")
        receivers = {feed["receiver"] for feed in watching.feeds}
    assert len(receivers) == 2
    a, b = (frames.latest[i].astype(float) for i in (0, 1))
    assert (a < 200).mean() > 0.1 and (b < 200).mean() > 0.1
    assert np.abs(a - b).mean() > 2.0  # two different avatars


async def test_janus_refuses_a_viewer_without_a_valid_token(janus: LocalJanus) -> None:
    for token in ("", signed_token("not-the-secret", 60), signed_token(SECRET, -10)):
        with pytest.raises(JanusError, match="Unauthorized"):
            session = await JanusSession.open(janus.url, lambda token=token: token)
            await session.close()


async def test_the_room_api_refuses_a_viewer_without_a_receiver_token(janus: LocalJanus) -> None:
    async with (
        running_server(sfu=sfu(janus), secret="server-secret") as server,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{url(server)}/api/rooms/r1/media") as response:
            assert response.status == 401
        async with http.get(f"{url(server)}/api/rooms/r1/media?token=nonsense") as response:
            assert response.status == 403
            assert "sfu" not in await response.json()


async def test_a_viewer_with_the_pin_cannot_publish(janus: LocalJanus) -> None:
    async with running_server(sfu=sfu(janus)) as server, AsyncExitStack() as stack:
        await sender(stack, url(server), "r2", "anna")
        client = TelepresenceClient(url(server), "r2", "viewer")
        deadline = time.monotonic() + 10
        while not (media := await client.fetch_room_media() or {}).get("feeds"):
            assert time.monotonic() < deadline, "the sender's feed was not published"
            await asyncio.sleep(0.1)
        assert len(media["feeds"]) == 1
        real = media["feeds"][0]
        session = await JanusSession.open(media["url"], lambda: media["token"])
        stack.push_async_callback(session.close)
        # with the pin and a token, as a publisher: with its own name, with a real feed's id
        # (squatting it), or replaying a real feed's signed display name
        participants = await (await session.attach()).request(
            {"request": "listparticipants", "room": janus_room("r2")}
        )
        display = participants["participants"][0]["display"]
        attempts = [
            {"display": json.dumps({"participant": "p9", "receiver": "x", "signature": "0"})},
            {"id": real["feed"] + 1, "display": display},
            {"id": real["feed"], "display": display},
        ]
        for attempt in attempts:
            rogue = await session.attach()
            with pytest.raises(JanusError, match="not in the allowed list"):
                await rogue.message(
                    {
                        "request": "join",
                        "ptype": "publisher",
                        "room": janus_room("r2"),
                        "pin": room_pin(SECRET, "r2"),
                        **attempt,
                    }
                )
        # the pin still subscribes (what a viewer needs)
        watcher = await session.attach()
        joined = await watcher.message(
            {
                "request": "join",
                "ptype": "subscriber",
                "room": janus_room("r2"),
                "pin": room_pin(SECRET, "r2"),
                "streams": [{"feed": real["feed"]}],
            }
        )
        listed = await client.fetch_room_media()
    assert joined.jsep is not None and joined.jsep["type"] == "offer"
    assert listed is not None and listed["feeds"] == media["feeds"]


async def test_a_janus_restart_mid_call_is_recovered(janus: LocalJanus) -> None:
    async with running_server(sfu=sfu(janus)) as server, AsyncExitStack() as stack:
        anna = await sender(stack, url(server), "r3", "anna")
        seq = await stream(anna, np.zeros(16), 1, 0.5)
        watching, _ = await viewer(stack, url(server), "r3")
        seq = await stream(anna, np.zeros(16), seq, 1.0)
        before = watching.stats.frames_received.get(0, 0)
        assert before > 5
        await asyncio.to_thread(janus.restart)
        restarted = time.monotonic()
        while watching.subscriptions < 2 or watching.stats.frames_received.get(0, 0) < before + 5:
            seq = await stream(anna, np.zeros(16), seq, 0.2)
            assert time.monotonic() - restarted < 15, "no video again within 15 s of the restart"
        recovered_s = time.monotonic() - restarted
    assert recovered_s < 10, recovered_s


async def test_a_feed_says_which_avatar_it_shows_after_a_switch(janus: LocalJanus) -> None:
    async with running_server(sfu=sfu(janus)) as server, AsyncExitStack() as stack:
        anna = await sender(stack, url(server), "r4", "anna")
        await stream(anna, np.zeros(16), 1, 0.5)
        watching = TelepresenceClient(url(server), "r4", "viewer")

        async def avatars() -> list[str]:
            media = await watching.fetch_room_media()
            return [feed["avatar"] for feed in media["feeds"]] if media else []

        assert await avatars() == ["anna"]
        anna.send_ctrl({"type": "avatar", "avatar": "ben"})
        deadline = time.monotonic() + 5
        while await avatars() != ["ben"]:
            assert time.monotonic() < deadline, await avatars()
            await asyncio.sleep(0.1)
