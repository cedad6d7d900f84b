"""Where a Python sender's frames come from: live tracking of a video, recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npga.codes import FrameFlags
from npga.recording import synthetic_recording
from npga.tracking import ExpressionBasis
from npga.tracking.bench import synth_face_video
from npga.video import VideoWriter
from server_fixtures import small_registry
from telepresence.sources import SendOptions, recording_frames, tracked_frames


@pytest.mark.asyncio
async def test_tracking_a_video_yields_expression_frames_for_the_avatar(tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    with VideoWriter(video, 640, 480, 30) as writer:
        for rgb in synth_face_video(45):
            writer.write(rgb)
    basis = ExpressionBasis.from_json(json.loads(small_registry().get("anna").encoder_json))
    frames = [f async for f in tracked_frames(str(video), basis, SendOptions())]
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
