"""The data channels' message-size limit, enforced while SCTP reassembles a message.

aiortc (1.16) reassembles every fragment of a data-channel message before the channel's
``message`` handler can look at its size, and ``InboundStream.pop_messages`` rescans the
fragments held for every one that arrives: CPU grows with the square of the message's size
(measured: 0.8 s for 2 MiB, 20.6 s for 16 MiB), whatever ``a=max-message-size`` the server
advertises. ``limit_message_size`` bounds the bytes an association may hold unreassembled to that
advertised size; a peer that goes over it has its fragment dropped and ``on_oversize`` called
(the server then closes the peer).

It wraps one association's DATA-chunk handler, the only place the fragments pass through; the
wrapped names are checked when the guard is applied, so an aiortc that renames them fails the
tests (tests/test_hostile_channels.py) instead of leaving the server unguarded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCSctpTransport

_HANDLER = "_receive_data_chunk"
_WINDOW = "_advertised_rwnd"  # aiortc lowers it by every byte it holds for reassembly


def advertised_max_message_size() -> int:
    """The ``a=max-message-size`` aiortc puts in the server's answers."""
    return int(RTCSctpTransport.getCapabilities().maxMessageSize)


def limit_message_size(
    sctp: RTCSctpTransport, on_oversize: Callable[[int], None], limit: int | None = None
) -> None:
    """Drop fragments beyond ``limit`` bytes held for reassembly (default: the advertised
    max-message-size) and call ``on_oversize(bytes held)`` once."""
    limit = advertised_max_message_size() if limit is None else limit
    receive: Callable[[Any], Awaitable[None]] = getattr(sctp, _HANDLER)
    empty = int(getattr(sctp, _WINDOW))  # nothing received yet: the whole window is free
    tripped = False

    async def bounded(chunk: Any) -> None:
        nonlocal tripped
        held = empty - int(getattr(sctp, _WINDOW)) + len(chunk.user_data)
        if held > limit:
            if not tripped:
                tripped = True
                on_oversize(held)
            return
        await receive(chunk)

    setattr(sctp, _HANDLER, bounded)
