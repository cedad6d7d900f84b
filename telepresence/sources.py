"""Where a Python sender's expression frames come from: a recording, synthetic codes, or live
tracking of a camera or video file (capture and tracking run in threads, off the event loop)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from npga.codes import ExpressionFrame, FrameFlags
from npga.recording import CodeRecording, synthetic_recording
from npga.tracking import ExpressionBasis, ExpressionTracker
from npga.tracking.sources import Frame, FrameSource, SourceError
from telepresence.capture import FrameCapture, SourceEnded, SourceLost

STALL_SECONDS = 1.0  # no frame for this long: the user is told, the avatar holds its pose


@dataclass(frozen=True)
class SendOptions:
    fps: float = 30.0
    seconds: float | None = None  # None: until the source ends (synthetic: forever)
    loop: bool = False  # replay a recording forever


async def recording_frames(
    recording: CodeRecording, options: SendOptions
) -> AsyncIterator[ExpressionFrame]:
    """Replay a recording at its own timestamps (looping if asked)."""
    start = time.monotonic()
    seq = 0
    offset = 0.0
    duration = float(recording.timestamps[-1] - recording.timestamps[0]) + 1 / options.fps
    while True:
        for i in range(recording.num_frames):
            due = start + offset + float(recording.timestamps[i] - recording.timestamps[0])
            if options.seconds is not None and due - start > options.seconds:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            seq += 1
            yield ExpressionFrame(
                seq=seq % 2**32,
                timestamp=time.time(),
                rotation_wxyz=recording.rotation_wxyz[i],
                translation=recording.translation[i],
                gaze=recording.gaze[i],
                code=recording.codes[i],
            )
        if not options.loop:
            return
        offset += duration


def synthetic_frames(dim: int, options: SendOptions) -> AsyncIterator[ExpressionFrame]:
    """Smooth synthetic codes and head motion: an avatar that moves without a webcam."""
    recording = synthetic_recording(dim, seconds=20.0, fps=options.fps)
    return recording_frames(recording, SendOptions(options.fps, options.seconds, loop=True))


async def tracked_frames(
    open_source: Callable[[], FrameSource],
    basis: ExpressionBasis,
    options: SendOptions,
    *,
    live: bool,
    on_event: Callable[[str], None],
) -> AsyncIterator[ExpressionFrame]:
    """Track a camera (``live``) or a video file; frames without the person keep the last state.

    When no frame comes for ``STALL_SECONDS`` (a camera that stalls or was unplugged) the user is
    told through ``on_event`` and the last state is sent again, flagged as having no face, so
    the avatar holds its last pose; a camera that fails is reopened until it comes back."""
    capture = FrameCapture(open_source, live=live)
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="track")
    tracker: ExpressionTracker | None = None  # built, used and closed on the worker

    def begin() -> None:
        nonlocal tracker
        capture.start()  # opening a camera can take a while: off the loop
        tracker = ExpressionTracker(basis.template, basis)

    def step() -> tuple[ExpressionFrame, float] | SourceLost | SourceError | SourceEnded | None:
        assert tracker is not None
        item = capture.next(STALL_SECONDS)
        if not isinstance(item, Frame):
            return item
        state = tracker.process(item.rgb, item.timestamp)
        return state.to_expression_frame(seq + 1, time.time()), item.timestamp

    def finish() -> None:
        capture.close()
        if tracker is not None:
            tracker.close()

    start = time.monotonic()
    seq = 0
    last: ExpressionFrame | None = None
    stalled = False
    try:
        await loop.run_in_executor(worker, begin)
        while options.seconds is None or time.monotonic() - start < options.seconds:
            result = await loop.run_in_executor(worker, step)
            if isinstance(result, SourceEnded):
                return
            if isinstance(result, SourceError):
                raise result
            if isinstance(result, SourceLost):
                on_event(result.message)
                stalled = True
                continue
            if result is None:  # nothing came: hold the last pose
                if not stalled:
                    on_event(
                        f"{capture.description}: no frame for {STALL_SECONDS:g} s; the avatar "
                        "holds its last pose"
                    )
                    stalled = True
                if last is not None:
                    seq += 1
                    yield held(last, seq)
                continue
            if stalled:
                on_event(f"{capture.description}: frames again")
                stalled = False
            frame, media_time = result
            seq += 1
            delay = start + media_time - time.monotonic()  # a file plays in real time
            if delay > 0 and not live:
                await asyncio.sleep(delay)
            last = frame
            yield frame
    finally:
        # one worker thread: this runs after any step still in flight, then nothing is left
        await loop.run_in_executor(worker, finish)
        worker.shutdown(wait=True)


def held(frame: ExpressionFrame, seq: int) -> ExpressionFrame:
    """``frame``'s pose and expression again, now, as frame ``seq``, without a face."""
    return dataclasses.replace(
        frame,
        seq=seq % 2**32,
        timestamp=time.time(),
        flags=frame.flags & ~FrameFlags.FACE_PRESENT,
    )
