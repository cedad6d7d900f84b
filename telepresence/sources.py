"""Where a Python sender's expression frames come from: a recording, synthetic codes, or live
tracking of a camera or video file (tracking runs in a worker thread, off the event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from npga.codes import ExpressionFrame
from npga.recording import CodeRecording, synthetic_recording
from npga.tracking import ExpressionBasis, ExpressionTracker
from npga.tracking.sources import open_source


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
    spec: str, basis: ExpressionBasis, options: SendOptions
) -> AsyncIterator[ExpressionFrame]:
    """Track a camera index or a video file live; frames without a face keep the last state."""
    source = open_source(spec)
    tracker = ExpressionTracker(basis.template, basis)
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    seq = 0
    frames = source.frames()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="track") as worker:

        def step() -> tuple[ExpressionFrame, float] | None:
            item = next(frames, None)
            if item is None:
                return None
            state = tracker.process(item.rgb, item.timestamp)
            return state.to_expression_frame(seq + 1, time.time()), item.timestamp

        try:
            while options.seconds is None or time.monotonic() - start < options.seconds:
                result = await loop.run_in_executor(worker, step)
                if result is None:
                    return
                frame, media_time = result
                seq += 1
                delay = start + media_time - time.monotonic()  # a file plays in real time
                if delay > 0 and not spec.isdigit():
                    await asyncio.sleep(delay)
                yield frame
        finally:
            tracker.close()
