"""Receiver-side measurements: frames per seat, stamped seqs -> end-to-end latency, recording."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from npga.video import VideoWriter
from telepresence.stamp import read_seq


@dataclass
class FrameProbe:
    """The client's ``on_frame``: counts, latency from stamped frames, optional recording."""

    record_path: Path | None = None
    record_fps: float = 30.0
    seat: int = 0  # the seat measured and recorded (a sender's: the one showing its own avatar)
    keep_unsent: bool = False  # record decode times of seqs it was not told were sent
    sent_at: dict[int, float] = field(default_factory=dict)  # seq -> time.time() at capture
    latencies_ms: list[float] = field(default_factory=list)
    decoded_at: dict[int, float] = field(default_factory=dict)  # seq -> first decode time
    frames: int = 0
    distinct_seqs: set[int] = field(default_factory=set)
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    _writer: VideoWriter | None = None
    _worker: ThreadPoolExecutor | None = None

    def sent(self, seq: int, timestamp: float) -> None:
        self.sent_at[seq] = timestamp
        if len(self.sent_at) > 4096:  # keep the last ~2 minutes at 30 fps
            for old in sorted(self.sent_at)[:1024]:
                del self.sent_at[old]

    def __call__(self, seat: int, frame: av.VideoFrame) -> None:
        if seat != self.seat:
            return
        now = time.time()
        self.frames += 1
        self.first_frame_at = self.first_frame_at or now
        self.last_frame_at = now
        luma = frame.to_ndarray(format="gray")
        seq = read_seq(luma)
        if seq is not None and seq not in self.distinct_seqs:
            self.distinct_seqs.add(seq)
            if seq in self.sent_at:
                self.latencies_ms.append((now - self.sent_at[seq]) * 1e3)
                self.decoded_at[seq] = now
            elif self.keep_unsent:  # the sender is in another process: matched afterwards
                self.decoded_at[seq] = now
        if self.record_path is not None:
            self._record(frame.to_ndarray(format="rgb24"))

    def _record(self, rgb: np.ndarray) -> None:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record")
        if self._writer is None:
            assert self.record_path is not None
            self._writer = VideoWriter(
                self.record_path, rgb.shape[1], rgb.shape[0], self.record_fps
            )
        self._worker.submit(self._writer.write, rgb)  # encoding stays off the event loop

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()

    def frame_times(self) -> list[tuple[int, float, float]]:
        """(seq, capture time, first decode time) of each stamped frame seen, time.time()."""
        return [(seq, self.sent_at[seq], t) for seq, t in self.decoded_at.items()
                if seq in self.sent_at]  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Counts and rates; latency only where frames carried seq stamps (``stamp_frames``)."""
        span = (self.last_frame_at or 0) - (self.first_frame_at or 0)
        latencies = np.asarray(self.latencies_ms)
        report: dict[str, Any] = {
            "seat": self.seat,
            "frames_received": self.frames,
            "fps_received": round(self.frames / span, 2) if span > 0 else 0.0,
        }
        if self.distinct_seqs:  # only stamped frames (ServerConfig.stamp_frames) say which
            report["distinct_avatar_frames"] = len(self.distinct_seqs)
        if latencies.size:
            report["e2e_latency_ms_p50"] = round(float(np.percentile(latencies, 50)), 1)
            report["e2e_latency_ms_p95"] = round(float(np.percentile(latencies, 95)), 1)
        return report
