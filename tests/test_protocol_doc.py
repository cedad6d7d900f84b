"""The ctrl messages are defined once, in docs/protocol.md: the server's dispatch, the web
client's code and GET /api/config all say the same."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from server_fixtures import running_server, url
from telepresence.peers import CTRL_REPLIES, CTRL_REQUESTS, ROOM_NAME

ROOT = Path(__file__).resolve().parent.parent
TYPE = re.compile(r'\{"type": "(\w+)"')


def _documented() -> tuple[set[str], set[str]]:
    """(client -> server, server -> client) types of the ctrl table in docs/protocol.md."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text.split("### `ctrl` channel", 1)[1].split("\n\n", 2)[1]
    requests, replies = set(), set()
    for row in table.splitlines()[2:]:
        cells = row.split(" | ")
        requests |= set(TYPE.findall(cells[0]))
        replies |= set(TYPE.findall(" | ".join(cells[1:])))
    return requests, replies


def test_the_server_handles_exactly_the_documented_ctrl_messages() -> None:
    requests, replies = _documented()
    assert requests == set(CTRL_REQUESTS)
    assert replies == set(CTRL_REPLIES)
    source = (ROOT / "telepresence" / "peers.py").read_text()
    dispatch = source.split("def _on_ctrl(", 1)[1].split("\n    def ", 1)[0]
    handled = set(re.findall(r'kind == "(\w+)"', dispatch))
    assert handled == requests  # each request type has its branch in the dispatch


def test_the_web_client_sends_and_reads_only_documented_ctrl_messages() -> None:
    requests, replies = _documented()
    source = "\n".join(path.read_text() for path in (ROOT / "web_client" / "src").glob("*.js"))
    sent = set(re.findall(r'(?:sendCtrl|request)\(\{ type: "(\w+)"', source))
    read = set(re.findall(r'(?:message|reply)\.type === "(\w+)"', source))
    assert sent and sent <= requests, sent - requests
    assert read and read <= replies, read - replies
    assert "config.video_seats" in source and 'await api("/api/config")' in source


@pytest.mark.asyncio
async def test_the_config_the_web_client_reads_is_the_servers() -> None:
    async with (
        running_server() as server,
        aiohttp.ClientSession() as http,
        http.get(f"{url(server)}/api/config") as response,
    ):
        config = await response.json()
    assert config["ctrl_requests"] == list(CTRL_REQUESTS)
    assert config["ctrl_replies"] == list(CTRL_REPLIES)
    assert config["room_name_pattern"] == ROOM_NAME.pattern
    assert config["video_seats"] == 4 and config["max_message_bytes"] == 1024
    assert config["avatar_creation"] is None  # no --avatar-dir
