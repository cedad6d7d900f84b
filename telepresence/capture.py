"""A frame source read on a thread of its own, so that a camera that stalls or vanishes is
noticed and reported instead of freezing the sender (:func:`telepresence.sources.tracked_frames`).

A camera is live: only its newest frame matters, so older ones are dropped, and when it stops
delivering it is reopened every ``reopen_seconds`` until it comes back. A file is read frame by
frame and simply ends.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from npga.tracking.sources import Frame, FrameSource, SourceError


@dataclass(frozen=True)
class SourceLost:
    """A live source failed; it is being reopened. ``message`` says so in one line."""

    message: str


class SourceEnded:
    """The source has no more frames (a file that played to its end)."""


class FrameCapture:
    """Reads ``open_source()``'s frames on a thread; :meth:`next` hands them out.

    ``live`` (a camera): keep only the newest frame, and reopen the source after it fails. The
    thread stops at :meth:`close`, which waits for it (a read that never returns is given
    ``close_timeout`` seconds and then left to the daemon thread).
    """

    def __init__(
        self,
        open_source: Callable[[], FrameSource],
        *,
        live: bool,
        reopen_seconds: float = 2.0,
        close_timeout: float = 2.0,
    ) -> None:
        self._open = open_source
        self.live = live
        self.reopen_seconds = reopen_seconds
        self.close_timeout = close_timeout
        self._items: queue.Queue[Frame | SourceLost | SourceError | SourceEnded] = queue.Queue(
            maxsize=1 if live else 4
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.description = ""

    def start(self) -> None:
        source = self._open()  # the first open fails loudly
        self.description = source.description
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="capture", daemon=True
        )
        self._thread.start()

    def next(self, timeout: float) -> Frame | SourceLost | SourceError | SourceEnded | None:
        """The next item, or None when nothing came within ``timeout`` seconds (a stall)."""
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.close_timeout)

    def _put(self, item: Frame | SourceLost | SourceError | SourceEnded) -> bool:
        """Queue ``item`` (live: replacing a frame not yet taken); False once stopping."""
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.live and isinstance(item, Frame):
                    # a live source: the newest frame replaces the one not yet taken
                    with contextlib.suppress(queue.Empty):
                        self._items.get_nowait()
        return False

    def _run(self, source: FrameSource) -> None:
        while not self._stop.is_set():
            try:
                for frame in source.frames():
                    if not self._put(frame):
                        return
            except SourceError as error:
                if not self.live:
                    self._put(error)
                    return
                self._put(
                    SourceLost(
                        f"{error}; the avatar holds its last pose (reopening every "
                        f"{self.reopen_seconds:g} s)"
                    )
                )
                reopened = self._reopen()
                if reopened is None:
                    return
                source = reopened
                continue
            self._put(SourceEnded())
            return

    def _reopen(self) -> FrameSource | None:
        """Try to open the source again every ``reopen_seconds`` until it opens or we stop."""
        while not self._stop.wait(self.reopen_seconds):
            try:
                return self._open()
            except SourceError:
                continue
        return None
