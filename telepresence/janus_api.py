"""A client of the Janus WebRTC server's HTTP API: sessions, plugin handles, events.

Janus (Debian's ``janus``, docs/deployment.md) is the SFU that fans avatar streams out to
viewers. Requests are POSTed to ``URL`` (create a session), ``URL/SESSION`` (attach a plugin
handle) and ``URL/SESSION/HANDLE`` (a plugin message). A plugin answers a synchronous request
(create a room, list participants) at once; an asynchronous one (join, publish, start) gets an
``ack`` and its answer arrives later on the session's long poll (``GET URL/SESSION``), matched
by its transaction. Every request carries a signed token (:func:`signed_token`): the Janus
servers this project deploys run with ``token_auth`` and the secret the receivers hold.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
POLL_EVENTS = 10  # events per long poll
EVENTS_KEPT = 64  # unsolicited events a handle keeps
POLL_TIMEOUT_S = 40.0  # Janus answers an idle long poll after 30 s with a keepalive
REQUEST_TIMEOUT_S = 10.0
GONE = (458, 459)  # no such session / no such handle: Janus restarted or timed us out


class JanusError(RuntimeError):
    """Janus refused a request, or could not be reached; one line."""


class JanusGone(JanusError):
    """The session is gone (Janus stopped, restarted or expired it): start a new one."""


def signed_token(secret: str, ttl_s: float, plugins: tuple[str, ...] = (VIDEOROOM,)) -> str:
    """A token Janus's ``token_auth_secret`` verifies: ``EXPIRY,janus,PLUGINS:SIGNATURE`` with
    the signature base64(HMAC-SHA1(secret, "EXPIRY,janus,PLUGINS")). It is good for
    ``ttl_s`` seconds and the listed plugins only."""
    data = ",".join([str(int(time.time() + ttl_s)), "janus", *plugins])
    signature = hmac.new(secret.encode(), data.encode(), hashlib.sha1).digest()
    return f"{data}:{base64.b64encode(signature).decode()}"


@dataclass(frozen=True)
class PluginEvent:
    """An event of a plugin handle: its ``plugindata.data`` and the SDP it carries, if any."""

    data: dict[str, Any]
    jsep: dict[str, Any] | None = None


class JanusHandle:
    """One plugin handle of a session (one per publisher and per subscriber)."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.id = handle_id
        # events that answer no request (the newest EVENTS_KEPT)
        self.events: asyncio.Queue[PluginEvent] = asyncio.Queue(EVENTS_KEPT)
        self.hung_up = asyncio.Event()  # Janus closed this handle's PeerConnection

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request: its answer, or JanusError with the plugin's reason."""
        reply = await self.session.post(f"/{self.id}", {"janus": "message", "body": body})
        return _plugin_answer(reply.get("plugindata", {}).get("data", {}))

    async def message(
        self,
        body: dict[str, Any],
        jsep: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> PluginEvent:
        """An asynchronous plugin request (join, publish, start): the event that answers it."""
        transaction, answer = self.session.expect()
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            await self.session.post(f"/{self.id}", request)
            async with asyncio.timeout(timeout):
                event = await answer
        except TimeoutError:
            raise JanusError(f"Janus did not answer {body.get('request')!r} in time") from None
        finally:
            self.session.forget(transaction)
        _plugin_answer(event.data)
        return event

    async def detach(self) -> None:
        with contextlib.suppress(JanusError):
            await self.session.post(f"/{self.id}", {"janus": "detach"})
        self.session.handles.pop(self.id, None)


def _plugin_answer(data: dict[str, Any]) -> dict[str, Any]:
    if "error_code" in data:
        raise JanusError(f"Janus: {data.get('error', 'error')} ({data['error_code']})")
    return data


class JanusSession:
    """A Janus session over HTTP: requests, the long poll that delivers events, and ``gone``,
    set when the session ends (Janus went away): its owner then starts a new one."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: Callable[[], str]) -> None:
        self.url = url.rstrip("/")
        self.http = http
        self.token = token
        self.id: int | None = None
        self.handles: dict[int, JanusHandle] = {}
        self.gone = asyncio.Event()
        self._transactions = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[PluginEvent]] = {}
        self._poll: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, token: Callable[[], str]) -> JanusSession:
        """A new session at ``url`` (Janus's HTTP API, e.g. http://127.0.0.1:8088/janus)."""
        session = cls(aiohttp.ClientSession(), url, token)
        try:
            reply = await session.post("", {"janus": "create"}, in_session=False)
            session.id = int(reply["data"]["id"])
        except (KeyError, TypeError, ValueError):
            await session.http.close()
            raise JanusError(f"{url} did not answer like Janus: is it a Janus server?") from None
        except BaseException:
            await session.http.close()
            raise
        session._poll = asyncio.create_task(session._long_poll())
        return session

    def expect(self) -> tuple[str, asyncio.Future[PluginEvent]]:
        transaction = f"t{next(self._transactions)}"
        answer = self._waiting[transaction] = asyncio.get_running_loop().create_future()
        return transaction, answer

    def forget(self, transaction: str) -> None:
        self._waiting.pop(transaction, None)

    async def attach(self, plugin: str = VIDEOROOM) -> JanusHandle:
        reply = await self.post("", {"janus": "attach", "plugin": plugin})
        handle_id = int(reply["data"]["id"])
        handle = self.handles[handle_id] = JanusHandle(self, handle_id)
        return handle

    async def post(self, path: str, body: dict[str, Any], in_session: bool = True) -> Any:
        """POST ``body`` to the session's URL + ``path``; the reply, or JanusError."""
        if in_session and self.gone.is_set():
            raise JanusGone("the Janus session has ended")
        body = {"transaction": f"t{next(self._transactions)}", **body, "token": self.token()}
        url = self.url + (f"/{self.id}" if in_session else "") + path
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                async with self.http.post(url, json=body) as response:
                    reply = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            # one failed request is not a lost session: the long poll says when it is
            raise JanusError(f"cannot reach Janus at {self.url}: {error or 'timed out'}") from None
        return self._checked(reply)

    def _checked(self, reply: Any) -> Any:
        if not isinstance(reply, dict):
            raise JanusError(f"{self.url} did not answer like Janus: is it a Janus server?")
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            code = error.get("code")
            if code in GONE:
                self.gone.set()
                raise JanusGone(f"Janus: {error.get('reason')} ({code})")
            raise JanusError(f"Janus: {error.get('reason', 'error')} ({code})")
        return reply

    async def _long_poll(self) -> None:
        try:
            while True:
                query = {"maxev": str(POLL_EVENTS), "token": self.token()}
                async with asyncio.timeout(POLL_TIMEOUT_S):
                    async with self.http.get(f"{self.url}/{self.id}", params=query) as response:
                        reply = await response.json(content_type=None)
                for event in reply if isinstance(reply, list) else [reply]:
                    self._dispatch(self._checked(event))
        except (
            Exception
        ) as error:  # whatever ends the poll (Janus gone, a bad reply) ends the session
            log.info("Janus session %s ended: %s", self.id, error or type(error).__name__)
        finally:
            self.gone.set()
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(JanusGone("the Janus session has ended"))

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        handle = self.handles.get(int(event.get("sender", 0)))
        if kind == "hangup" and handle is not None:
            handle.hung_up.set()
        if kind != "event":
            return  # keepalive, webrtcup, media, slowlink: nothing to answer
        found = PluginEvent(event.get("plugindata", {}).get("data", {}), event.get("jsep"))
        answer = self._waiting.get(str(event.get("transaction")))
        if answer is not None and not answer.done():
            answer.set_result(found)
        elif handle is not None:  # room notifications nobody may read: keep the newest
            if handle.events.full():
                handle.events.get_nowait()
            handle.events.put_nowait(found)

    async def close(self) -> None:
        """Destroy the session (if Janus is still there) and stop the long poll."""
        if not self.gone.is_set():
            with contextlib.suppress(JanusError):
                await self.post("", {"janus": "destroy"})
        self.gone.set()
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        await self.http.close()
