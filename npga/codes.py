"""ExpressionFrame and its binary wire format (docs/protocol.md describes it byte by byte).

Little-endian, version 1::

    offset size type      field
    0      1    u8        version (1)
    1      1    u8        flags (bit 0 face present, bit 1 calibrating, bit 2 calibrated;
                          bits 3-7 reserved, must be 0)
    2      2    u16       E, code dims
    4      4    u32       seq (wraps)
    8      8    f64       capture timestamp, seconds (sender clock)
    16     16   f32 x4    head rotation relative to neutral, quaternion w, x, y, z
    32     12   f32 x3    head translation relative to neutral, face units
    44     8    f16 x4    gaze radians: right yaw, right pitch, left yaw, left pitch
    52     2E   f16 x E   expression code

52 + 2E bytes: 148 for E = 48.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

import numpy as np

WIRE_VERSION = 1
HEADER = struct.Struct("<BBHId4f3f4e")
HEADER_SIZE = HEADER.size  # 52
FLOAT16_MAX = 65504.0
MAX_CODE_DIM = 256


class FrameFlags(IntFlag):
    FACE_PRESENT = 1
    CALIBRATING = 2
    CALIBRATED = 4


KNOWN_FLAGS = int(FrameFlags.FACE_PRESENT | FrameFlags.CALIBRATING | FrameFlags.CALIBRATED)


@dataclass(frozen=True)
class ExpressionFrame:
    """One sender frame: head pose, gaze and expression code."""

    seq: int  # u32
    timestamp: float  # seconds, sender clock
    rotation_wxyz: np.ndarray  # [4] unit quaternion
    translation: np.ndarray  # [3] face units
    gaze: np.ndarray  # [4] radians
    code: np.ndarray  # [E]
    flags: FrameFlags = FrameFlags.FACE_PRESENT | FrameFlags.CALIBRATED

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 0xFFFFFFFF:
            raise ValueError(f"seq must fit in u32, got {self.seq}")
        shapes = {"rotation_wxyz": (4,), "translation": (3,), "gaze": (4,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must have shape {list(shape)}")
        if np.ndim(self.code) != 1 or not 1 <= len(self.code) <= MAX_CODE_DIM:
            raise ValueError(f"code must be a vector of 1..{MAX_CODE_DIM} values")
        for name in ("rotation_wxyz", "translation", "gaze", "code"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} contains NaN or Inf")
        if not np.isfinite(self.timestamp):
            raise ValueError("timestamp is not finite")
        if np.linalg.norm(self.rotation_wxyz) < 1e-6:
            raise ValueError("rotation quaternion has zero length")
        if int(self.flags) & ~KNOWN_FLAGS:
            raise ValueError(f"unknown flag bits {int(self.flags):#04x}")

    @property
    def code_dim(self) -> int:
        return len(self.code)


def frame_size(code_dim: int) -> int:
    return HEADER_SIZE + 2 * code_dim


def encode_frame(frame: ExpressionFrame) -> bytes:
    """The wire bytes of ``frame``; ValueError if a code or gaze value overflows float16."""
    for name in ("code", "gaze"):
        if np.abs(getattr(frame, name)).max() > FLOAT16_MAX:
            raise ValueError(f"{name} value out of float16 range (|x| > {FLOAT16_MAX})")
    header = HEADER.pack(
        WIRE_VERSION,
        int(frame.flags),
        frame.code_dim,
        frame.seq,
        frame.timestamp,
        *np.asarray(frame.rotation_wxyz, dtype=np.float64),
        *np.asarray(frame.translation, dtype=np.float64),
        *np.asarray(frame.gaze, dtype=np.float64),
    )
    return header + np.asarray(frame.code, dtype="<f2").tobytes()


def decode_frame(data: bytes, expected_dim: int | None = None) -> ExpressionFrame:
    """Parse wire bytes; any malformed input raises ValueError with a one-line reason."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expression frame must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise ValueError(f"expression frame too short: {len(data)} bytes < {HEADER_SIZE}")
    version = data[0]
    if version != WIRE_VERSION:
        raise ValueError(
            f"unsupported expression frame version {version} (expected {WIRE_VERSION})"
        )
    _, flags, dim, seq, timestamp, *rest = HEADER.unpack_from(data)
    if dim < 1 or dim > MAX_CODE_DIM:
        raise ValueError(f"code dimension {dim} out of range 1..{MAX_CODE_DIM}")
    if expected_dim is not None and dim != expected_dim:
        raise ValueError(f"code dimension {dim} does not match the avatar's {expected_dim}")
    if len(data) != frame_size(dim):
        raise ValueError(
            f"expression frame is {len(data)} bytes, expected {frame_size(dim)} for E={dim}"
        )
    if flags & ~KNOWN_FLAGS:
        raise ValueError(f"unknown flag bits {flags:#04x}")
    code = np.frombuffer(data, dtype="<f2", offset=HEADER_SIZE).astype(np.float32)
    return ExpressionFrame(
        seq=seq,
        timestamp=timestamp,
        rotation_wxyz=np.array(rest[0:4], dtype=np.float32),
        translation=np.array(rest[4:7], dtype=np.float32),
        gaze=np.array(rest[7:11], dtype=np.float32),
        code=code,
        flags=FrameFlags(flags),
    )
