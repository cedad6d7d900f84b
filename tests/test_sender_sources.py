"""Where a Python sender's frames come from: live tracking of a video, recordings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from npga.codes import FrameFlags
from npga.recording import synthetic_recording
from npga.tracking import ExpressionBasis
from npga.tracking.bench import synth_face_video
from npga.tracking.sources import Frame, FrameSource, SourceError, open_source
from npga.video import VideoWriter
from server_fixtures import small_registry
from telepresence.sources import STALL_SECONDS, SendOptions, recording_frames, tracked_frames


@pytest.mark.asyncio
async def test_tracking_a_video_yields_expression_frames_for_the_avatar(tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    with VideoWriter(video, 640, 480, 30) as writer:
        for rgb in synth_face_video(45):
            writer.write(rgb)
    basis = ExpressionBasis.from_json(json.loads(small_registry().get("anna").encoder_json))
    frames = [
        f
        async for f in tracked_frames(
            lambda: open_source(str(video)), basis, SendOptions(), live=False, on_event=print
        )
    ]
    assert len(frames) == 45
    assert [f.seq for f in frames] == list(range(1, 46))
    assert all(f.code_dim == 16 for f in frames)
    assert frames[0].flags & FrameFlags.CALIBRATING  # the first second calibrates the neutral
    last = frames[-1]
    assert last.flags & FrameFlags.FACE_PRESENT and last.flags & FrameFlags.CALIBRATED
    assert np.linalg.norm(last.rotation_wxyz[1:]) > 0.01  # the head in the video turns


@pytest.mark.asyncio
async def test_a_recording_replays_at_its_pace_and_stops() -> None:
    recording = synthetic_recording(8, seconds=0.5, fps=30)
    frames = [f async for f in recording_frames(recording, SendOptions())]
    assert len(frames) == 15
    np.testing.assert_array_equal(frames[3].code, recording.codes[3])


class Camera(FrameSource):
    """A camera as the sender sees one: frames at 30 fps in real time, which can stall for a
    while at ``stall_at`` or fail (unplugged) at ``fail_at``."""

    def __init__(
        self, video: list[np.ndarray], stall_at: int | None = None, fail_at: int | None = None
    ) -> None:
        super().__init__("camera 7", None)
        self.video, self.stall_at, self.fail_at = video, stall_at, fail_at

    def frames(self):
        start = time.monotonic()
        for i, rgb in enumerate(self.video):
            if i == self.fail_at:
                raise SourceError(f"camera 7: stopped delivering frames after {i}")
            if i == self.stall_at:
                time.sleep(2.5 * STALL_SECONDS)
            time.sleep(max(0.0, start + i / 30 - time.monotonic()))
            yield Frame(rgb, time.monotonic() - start)


def _basis() -> ExpressionBasis:
    return ExpressionBasis.from_json(json.loads(small_registry().get("anna").encoder_json))


@pytest.mark.asyncio
async def test_a_stalled_camera_is_reported_and_the_avatar_holds_its_pose() -> None:
    video = synth_face_video(70)
    events: list[str] = []
    frames = [
        f
        async for f in tracked_frames(
            lambda: Camera(video, stall_at=50), _basis(), SendOptions(), live=True,
            on_event=events.append,
        )
    ]  # fmt: skip
    held = [i for i, f in enumerate(frames) if not f.flags & FrameFlags.FACE_PRESENT]
    assert held and held[0] == 50 and len(held) >= 2  # sent again while nothing came
    for i in held:
        np.testing.assert_array_equal(frames[i].rotation_wxyz, frames[49].rotation_wxyz)
        np.testing.assert_array_equal(frames[i].code, frames[49].code)
    assert frames[-1].flags & FrameFlags.FACE_PRESENT  # and tracking goes on afterwards
    assert events == [
        f"camera 7: no frame for {STALL_SECONDS:g} s; the avatar holds its last pose",
        "camera 7: frames again",
    ]


@pytest.mark.asyncio
async def test_an_unplugged_camera_is_reopened() -> None:
    video = synth_face_video(60)
    opened: list[Camera] = []

    def open_camera() -> Camera:
        opened.append(Camera(video, fail_at=40 if not opened else None))
        return opened[-1]

    events: list[str] = []
    frames = [
        f
        async for f in tracked_frames(
            open_camera, _basis(), SendOptions(), live=True, on_event=events.append
        )
    ]
    assert len(opened) == 2
    assert events[0] == (
        "camera 7: stopped delivering frames after 40; the avatar holds its last pose "
        "(reopening every 2 s)"
    )
    assert events[-1] == "camera 7: frames again"
    held = [f for f in frames if not f.flags & FrameFlags.FACE_PRESENT and f.seq > 40]
    assert held and all(np.array_equal(f.rotation_wxyz, held[0].rotation_wxyz) for f in held)
    assert len(frames) - len(held) == 100  # every frame of both openings was tracked and sent
