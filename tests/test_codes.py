"""The expression frame wire format: exact round trips and no crash on any bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npga.codes import (
    HEADER_SIZE,
    ExpressionFrame,
    FrameFlags,
    decode_frame,
    encode_frame,
    frame_size,
)

finite16 = st.floats(min_value=-60000, max_value=60000, allow_nan=False, width=16)
finite32 = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@st.composite
def frames(draw):
    dim = draw(st.integers(1, 64))
    quat = np.array(draw(st.lists(finite32, min_size=4, max_size=4)), dtype=np.float32)
    if np.linalg.norm(quat) < 1e-3:
        quat = np.array([1, 0, 0, 0], dtype=np.float32)
    return ExpressionFrame(
        seq=draw(st.integers(0, 2**32 - 1)),
        timestamp=draw(st.floats(allow_nan=False, allow_infinity=False)),
        rotation_wxyz=quat,
        translation=np.array(draw(st.lists(finite32, min_size=3, max_size=3)), dtype=np.float32),
        gaze=np.array(draw(st.lists(finite16, min_size=4, max_size=4)), dtype=np.float32),
        code=np.array(draw(st.lists(finite16, min_size=dim, max_size=dim)), dtype=np.float32),
        flags=FrameFlags(draw(st.integers(0, 7))),
    )


@given(frames())
def test_round_trip_is_exact_to_float16(frame: ExpressionFrame) -> None:
    data = encode_frame(frame)
    assert len(data) == frame_size(frame.code_dim)
    decoded = decode_frame(data, expected_dim=frame.code_dim)
    assert decoded.seq == frame.seq and decoded.timestamp == frame.timestamp
    assert decoded.flags == frame.flags
    np.testing.assert_array_equal(decoded.rotation_wxyz, frame.rotation_wxyz)
    np.testing.assert_array_equal(decoded.translation, frame.translation)
    np.testing.assert_array_equal(decoded.gaze, frame.gaze.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(decoded.code, frame.code.astype(np.float16).astype(np.float32))


@settings(max_examples=500)
@given(st.binary(max_size=400), st.one_of(st.none(), st.integers(1, 64)))
def test_arbitrary_bytes_raise_value_error_only(data: bytes, expected: int | None) -> None:
    try:
        decode_frame(data, expected_dim=expected)
    except ValueError as error:
        assert "\n" not in str(error)


@given(frames(), st.data())
def test_truncations_and_wrong_versions_are_refused(frame: ExpressionFrame, draw) -> None:
    data = encode_frame(frame)
    cut = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(ValueError):
        decode_frame(data[:cut])
    version = draw.draw(st.integers(0, 255).filter(lambda v: v != 1))
    with pytest.raises(ValueError, match="unsupported expression frame version"):
        decode_frame(bytes([version]) + data[1:])


def test_frame_size_for_e48_is_at_most_160_bytes() -> None:
    assert HEADER_SIZE == 52
    assert frame_size(48) == 148 <= 160


def test_specific_errors_name_the_problem() -> None:
    frame = ExpressionFrame(1, 0.0, np.array([1.0, 0, 0, 0]), np.zeros(3), np.zeros(4), np.ones(48))
    data = encode_frame(frame)
    with pytest.raises(ValueError, match="does not match the avatar's 32"):
        decode_frame(data, expected_dim=32)
    nan_quat = data[:16] + struct.pack("<f", float("nan")) + data[20:]
    with pytest.raises(ValueError, match="rotation_wxyz contains NaN"):
        decode_frame(nan_quat)
    nan_code = data[:HEADER_SIZE] + np.full(48, np.nan, dtype="<f2").tobytes()
    with pytest.raises(ValueError, match="code contains NaN"):
        decode_frame(nan_code)
    with pytest.raises(ValueError, match="unknown flag bits"):
        decode_frame(data[:1] + bytes([0x80]) + data[2:])
    with pytest.raises(ValueError, match="out of float16 range"):
        encode_frame(
            ExpressionFrame(
                1, 0.0, np.array([1.0, 0, 0, 0]), np.zeros(3), np.zeros(4), np.full(4, 1e6)
            )
        )
