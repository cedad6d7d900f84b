"""Code recordings: ``.npz`` files of expression frames, replayable by ``npga render``.

Arrays (T frames), the fields of ``npga.codes.ExpressionFrame``: ``codes`` [T, E] float32,
``rotation_wxyz`` [T, 4] float32 (head rotation relative to neutral), ``translation`` [T, 3]
float32 (face units, relative to neutral), ``gaze`` [T, 4] float32 (radians), ``face_present``
[T] bool, ``timestamps`` [T] float64 (seconds). Loading validates shapes, dtypes and finiteness;
no pickles.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# One face unit (the outer-eye-corner distance, npga.tracking.template) on an adult, in metres.
FACE_UNIT_METRES = 0.09
ARRAYS = ("codes", "rotation_wxyz", "translation", "gaze", "face_present", "timestamps")


class RecordingError(ValueError):
    """A code recording that cannot be used; the message names the file and the array."""


@dataclass(frozen=True)
class CodeRecording:
    codes: np.ndarray  # [T, E] float32
    rotation_wxyz: np.ndarray  # [T, 4] float32
    translation: np.ndarray  # [T, 3] float32 face units
    timestamps: np.ndarray  # [T] float64 seconds, non-decreasing
    gaze: np.ndarray  # [T, 4] float32 radians
    face_present: np.ndarray  # [T] bool

    def __post_init__(self) -> None:
        t = self.codes.shape[0] if self.codes.ndim == 2 else -1
        shapes = {
            "codes": (t, self.codes.shape[-1]),
            "rotation_wxyz": (t, 4),
            "translation": (t, 3),
            "timestamps": (t,),
            "gaze": (t, 4),
            "face_present": (t,),
        }
        if t == 0:
            raise ValueError("the recording holds no frames")
        for name, shape in shapes.items():
            array = getattr(self, name)
            if t < 1 or array.shape != shape:
                raise ValueError(
                    f"array '{name}' has shape {list(array.shape)}, expected {list(shape)}"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"array '{name}' contains NaN or Inf")
        if np.any(np.diff(self.timestamps) < 0):
            raise ValueError("array 'timestamps' goes backwards")

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def expression_dim(self) -> int:
        return int(self.codes.shape[1])

    def fps(self) -> float:
        """Mean frame rate from the timestamps (30 when there is a single frame)."""
        span = float(self.timestamps[-1] - self.timestamps[0])
        return (self.num_frames - 1) / span if span > 0 else 30.0

    def translation_metres(self) -> np.ndarray:
        """Translations [T, 3] in metres for an avatar (a nominal adult face unit)."""
        return self.translation * FACE_UNIT_METRES

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, **{name: getattr(self, name) for name in ARRAYS})


def load_recording(path: str | Path) -> CodeRecording:
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in ARRAYS if name not in data.files]
            if missing:
                raise RecordingError(f"{where}: missing array '{missing[0]}'")
            arrays = {name: data[name] for name in ARRAYS}
    except FileNotFoundError:
        raise RecordingError(f"{where}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, RecordingError):
            raise
        raise RecordingError(f"{where}: not a readable .npz code recording ({error})") from None
    try:
        if arrays["face_present"].dtype != np.bool_:
            raise RecordingError(f"{where}: array 'face_present' must be bool")
        return CodeRecording(
            codes=arrays["codes"].astype(np.float32, casting="same_kind"),
            rotation_wxyz=arrays["rotation_wxyz"].astype(np.float32, casting="same_kind"),
            translation=arrays["translation"].astype(np.float32, casting="same_kind"),
            timestamps=arrays["timestamps"].astype(np.float64, casting="same_kind"),
            gaze=arrays["gaze"].astype(np.float32, casting="same_kind"),
            face_present=arrays["face_present"],
        )
    except (ValueError, TypeError) as error:
        if isinstance(error, RecordingError):
            raise
        raise RecordingError(f"{where}: {error}") from None


def synthetic_recording(
    expression_dim: int, seconds: float, fps: float = 30.0, seed: int = 0
) -> CodeRecording:
    """Smoothly varying codes and a gently nodding/turning head (for demos and tests)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * fps)) / fps
    frequencies = rng.uniform(0.2, 1.2, expression_dim)
    phases = rng.uniform(0, 2 * math.pi, expression_dim)
    amplitude = 1.5 / np.sqrt(np.arange(1, expression_dim + 1))
    codes = amplitude * np.sin(2 * math.pi * frequencies * t[:, None] + phases)
    yaw = 0.35 * np.sin(2 * math.pi * 0.15 * t)
    pitch = 0.12 * np.sin(2 * math.pi * 0.23 * t + 1.0)
    # rotation about y (yaw) then x (pitch), as wxyz quaternions
    qy = np.stack((np.cos(yaw / 2), 0 * t, np.sin(yaw / 2), 0 * t), axis=1)
    qx = np.stack((np.cos(pitch / 2), np.sin(pitch / 2), 0 * t, 0 * t), axis=1)
    rotation = np.stack(
        (
            qy[:, 0] * qx[:, 0],
            qy[:, 0] * qx[:, 1],
            qy[:, 2] * qx[:, 0],
            -qy[:, 2] * qx[:, 1],
        ),
        axis=1,
    )
    translation = np.stack(
        (0.1 * np.sin(2 * math.pi * 0.1 * t), 0 * t, 0 * t), axis=1
    )  # face units
    return CodeRecording(
        codes=codes.astype(np.float32),
        rotation_wxyz=rotation.astype(np.float32),
        translation=translation.astype(np.float32),
        timestamps=t.astype(np.float64),
        gaze=np.zeros((len(t), 4), dtype=np.float32),
        face_present=np.ones(len(t), dtype=bool),
    )
