"""Rooms and participants. Senders publish an avatar; everyone sees the room's senders."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from npga.codes import ExpressionFrame
from npga.framing import Framer
from telepresence.config import Limits
from telepresence.streams import AvatarStream

SEQ_MODULUS = 2**32


class JoinRefused(Exception):
    """A join the limits do not allow; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 429) -> None:
        super().__init__(message)
        self.status = status


def seq_is_newer(seq: int, last: int | None) -> bool:
    """Serial-number arithmetic on u32: newer if ahead by less than half the range."""
    if last is None:
        return True
    ahead = (seq - last) % SEQ_MODULUS
    return 0 < ahead < SEQ_MODULUS // 2


@dataclass
class TokenBucket:
    """``rate`` messages/s with one second of burst (it starts full)."""

    rate: float
    tokens: float = -1.0  # -1: full
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        """One message: True if it is within the rate."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.rate
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Participant:
    id: str
    room: str
    role: str  # "sender" | "viewer"
    avatar_id: str | None  # what a sender publishes
    see_self: bool = False
    seats: int = 0  # video seats it receives (0: sends only, like the built-in demo sender)
    framer: Framer | None = None  # a sender's framing (npga/framing.py); used by the render worker
    latest: ExpressionFrame | None = None  # newest accepted expression frame
    latest_received: float = 0.0  # time.monotonic() of that frame
    stream: AvatarStream | None = None  # a sender's rendered avatar video (telepresence/streams.py)
    frames_accepted: int = 0
    frames_dropped: int = 0
    expr_rate: TokenBucket = field(default_factory=lambda: TokenBucket(0.0))
    ctrl_rate: TokenBucket = field(default_factory=lambda: TokenBucket(0.0))
    rate_errors_at: dict[str, float] = field(default_factory=dict)  # channel -> last said
    send_ctrl: Callable[[dict[str, Any]], None] | None = None  # set by the peer

    @property
    def publishing(self) -> bool:
        return self.role == "sender" and self.avatar_id is not None

    def accept(self, frame: ExpressionFrame) -> bool:
        """Keep ``frame`` if it is newer than what we have; stale and duplicate seqs are dropped."""
        if not seq_is_newer(frame.seq, self.latest.seq if self.latest else None):
            self.frames_dropped += 1
            return False
        self.latest = frame
        self.latest_received = time.monotonic()
        self.frames_accepted += 1
        return True


@dataclass
class Room:
    name: str
    participants: dict[str, Participant] = field(default_factory=dict)

    def publishers(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.publishing]

    def visible_to(self, viewer: Participant) -> list[Participant]:
        """The senders ``viewer`` sees: video seat i shows entry i. A sender that sees itself
        comes first (its seat 0 is its own avatar, what `telepresence send --record` records,
        however many joined before it); the others follow in join order."""
        publishers = self.publishers()
        others = [p for p in publishers if p is not viewer]
        shows_self = viewer.see_self and len(others) < len(publishers)
        return [viewer, *others] if shows_self else others

    def watched(self) -> list[Participant]:
        """The senders some participant's video seat shows, or whose stream has another
        subscriber (an SFU publisher): the only ones worth rendering."""
        shown = {p.id for q in self.participants.values() for p in self.visible_to(q)[: q.seats]}
        return [
            p
            for p in self.publishers()
            if p.id in shown or (p.stream is not None and p.stream.viewers > 0)
        ]


class RoomRegistry:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._rooms: dict[str, Room] = {}
        self._ids = itertools.count(1)

    @property
    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    def session_count(self) -> int:
        return sum(len(r.participants) for r in self._rooms.values())

    def participants(self) -> list[Participant]:
        """Everyone in every room."""
        return [p for room in self._rooms.values() for p in room.participants.values()]

    def join(self, room_name: str, role: str, avatar_id: str | None, see_self: bool) -> Participant:
        room = self._rooms.get(room_name)
        if room is None and len(self._rooms) >= self.limits.max_rooms:
            raise JoinRefused(f"server is at its limit of {self.limits.max_rooms} rooms")
        if self.session_count() >= self.limits.max_sessions:
            raise JoinRefused(f"server is at its limit of {self.limits.max_sessions} sessions")
        if room is not None and len(room.participants) >= self.limits.max_participants_per_room:
            raise JoinRefused(
                f"room {room_name!r} is full ({self.limits.max_participants_per_room} participants)"
            )
        room = self._rooms.setdefault(room_name, Room(room_name))
        participant = Participant(
            id=f"p{next(self._ids)}",
            room=room_name,
            role=role,
            avatar_id=avatar_id,
            see_self=see_self,
            expr_rate=TokenBucket(self.limits.max_messages_per_second),
            ctrl_rate=TokenBucket(self.limits.max_ctrl_per_second),
        )
        room.participants[participant.id] = participant
        self.announce(room)
        return participant

    def leave(self, participant: Participant) -> None:
        room = self._rooms.get(participant.room)
        if room is None or room.participants.pop(participant.id, None) is None:
            return
        if room.participants:
            self.announce(room)
        else:
            del self._rooms[room.name]

    def room_of(self, participant: Participant) -> Room | None:
        return self._rooms.get(participant.room)

    def watched(self) -> list[Participant]:
        """Senders whose avatar someone receives (Room.watched), in every room."""
        return [p for room in self._rooms.values() for p in room.watched()]

    def announce(self, room: Room) -> None:
        """Tell every participant which sender each of its video seats shows."""
        for participant in room.participants.values():
            if participant.send_ctrl is not None:
                seats = [
                    {"seat": i, "participant": p.id, "avatar": p.avatar_id}
                    for i, p in enumerate(room.visible_to(participant)[: self.limits.video_seats])
                ]
                participant.send_ctrl({"type": "seats", "seats": seats})
