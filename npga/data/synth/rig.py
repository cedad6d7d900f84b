"""Procedural animation of the synthetic head: smooth random expression and head-pose curves
(deterministic for a seed), posing into world space and per-vertex shading.

Timestep t is at t / FPS seconds: ``--frames 1800`` is a minute of performance."""

from __future__ import annotations

import math

import numpy as np
import torch

from npga.data.synth.head import PARAMETERS, HeadModel, pose_head
from npga.geometry import axis_angle_to_quat, quat_multiply, quat_to_rotmat

FPS = 30.0  # timesteps per second of the synthetic performance
HEAD_MOTIONS = ("rig", "wide")
KEY_SPACING = 8  # frames between random key values
LIGHT = (-0.35, -0.55, -0.75)  # towards the light (normalised where used)
AMBIENT, DIFFUSE = 0.62, 0.45


def _curve(rng: np.random.Generator, frames: int, active: float) -> np.ndarray:
    """[frames] in [0, 1]: smooth interpolation of random keys, 0 with probability 1-active,
    else in [0.4, 1] (clear extremes)."""
    keys = np.where(
        rng.random(frames // KEY_SPACING + 2) < active,
        rng.uniform(0.4, 1.0, frames // KEY_SPACING + 2),
        0.0,
    )
    position = np.arange(frames) / KEY_SPACING
    index = position.astype(int)
    t = position - index
    t = t * t * (3 - 2 * t)
    return keys[index] * (1 - t) + keys[index + 1] * t


def _blinks(rng: np.random.Generator, frames: int) -> np.ndarray:
    """[frames]: blinks of ~5 frames every ~12-30 frames."""
    curve = np.zeros(frames)
    start = int(rng.integers(2, 10))
    while start < frames:
        for offset, value in enumerate((0.5, 1.0, 1.0, 0.6, 0.2)):
            if start + offset < frames:
                curve[start + offset] = value
        start += int(rng.integers(12, 30))
    return curve


def _wide_pose(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A wide head motion, a function of time (frames at FPS; a shorter clip is a prefix of a
    longer one): yaw within ±35° (a 29° sweep of period 8 s starting at one side, so a 3 s clip
    already turns ~50°, plus 6° of period 3.3 s), pitch within ±15° (12° of period 5 s plus 3°
    of period 1.7 s), roll within ±4° (6.5 s), translation within ±8 mm. The periods do not
    share a short multiple, so poses and expressions keep combining differently.
    -> rotation wxyz [T, 4] (yaw about y, then pitch about x, then roll about z, applied
    roll first), translation [T, 3] metres."""
    rng = np.random.default_rng([seed, 1])  # its own stream: independent of ``frames``
    seconds = np.arange(frames) / FPS
    side = 1.0 if rng.random() < 0.5 else -1.0
    phases = rng.uniform(0, 2 * math.pi, 7)
    turn = 2 * math.pi * seconds
    degrees = math.pi / 180
    yaw = -side * 29 * degrees * np.cos(turn / 8.0) + 6 * degrees * np.sin(turn / 3.3 + phases[0])
    pitch = 12 * degrees * np.sin(turn / 5.0 + phases[1]) + 3 * degrees * np.sin(
        turn / 1.7 + phases[2]
    )
    roll = 4 * degrees * np.sin(turn / 6.5 + phases[3])
    about = np.eye(3)
    rotation = torch.from_numpy(np.array([1.0, 0.0, 0.0, 0.0])).expand(frames, 4)
    for axis, angle in ((1, yaw), (0, pitch), (2, roll)):  # R = R_yaw R_pitch R_roll
        step = axis_angle_to_quat(torch.from_numpy(angle[:, None] * about[axis]))
        rotation = quat_multiply(rotation, step)
    periods = np.array([3.7, 4.3, 5.9])
    translation = 0.008 * np.sin(turn[:, None] / periods + phases[4:])
    return rotation.numpy(), translation


def animate(
    frames: int, seed: int, head_motion: str = "rig"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> rig parameters [T, P] (PARAMETERS order), head rotation wxyz [T, 4], translation
    [T, 3] (metres). ``head_motion``: "rig" (±18° yaw, ±10° pitch, ±5° roll) or "wide"
    (:func:`_wide_pose`); the expressions are the same for a seed either way."""
    if head_motion not in HEAD_MOTIONS:
        raise ValueError(f"unknown head motion {head_motion!r} (known: {', '.join(HEAD_MOTIONS)})")
    rng = np.random.default_rng(seed)
    curves = {"jaw_open": _curve(rng, frames, 0.5), "pucker": _curve(rng, frames, 0.25)}
    for name, active in (("smile", 0.45), ("brow", 0.35)):
        both = _curve(rng, frames, active)
        one = _curve(rng, frames, 0.3)
        side = rng.random(frames // KEY_SPACING + 2) < 0.5  # which side an asymmetry favours
        favour = np.repeat(side, KEY_SPACING)[:frames]
        curves[f"{name}_l"] = np.clip(both + one * favour, 0, 1)
        curves[f"{name}_r"] = np.clip(both + one * ~favour, 0, 1)
    blink = _blinks(rng, frames)
    wink = _curve(rng, frames, 0.1) * (rng.random() < 0.5)
    curves["blink_l"] = np.clip(blink + wink, 0, 1)
    curves["blink_r"] = blink
    curves["pucker"] = curves["pucker"] * (1 - curves["smile_l"]) * (1 - curves["smile_r"])
    params = np.stack([curves[name] for name in PARAMETERS], axis=1)
    if head_motion == "wide":
        rotation, translation = _wide_pose(seed, frames)
        return (
            params.astype(np.float32),
            rotation.astype(np.float32),
            translation.astype(np.float32),
        )
    # Head pose: yaw, pitch, roll as sums of slow sinusoids with random phases.
    time = np.arange(frames)[:, None]
    amplitude = np.radians([10.0, 18.0, 5.0])  # pitch (x), yaw (y), roll (z)
    periods = rng.uniform(45, 90, 3)
    phases = rng.uniform(0, 2 * math.pi, 3)
    angles = amplitude * np.sin(2 * math.pi * time / periods + phases)  # [T, 3]
    rotation = axis_angle_to_quat(torch.from_numpy(angles)).numpy()
    translation = 0.008 * np.sin(2 * math.pi * time / rng.uniform(60, 120, 3) + phases[::-1])
    return params.astype(np.float32), rotation.astype(np.float32), translation.astype(np.float32)


def world_vertices(
    head: HeadModel, params: np.ndarray, rotation_wxyz: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """params [P], rotation_wxyz [4], translation [3] -> world vertices [V, 3]."""
    rotation = quat_to_rotmat(torch.from_numpy(rotation_wxyz).double()).numpy()
    return pose_head(head, params) @ rotation.T + translation


def vertex_shading(vertices: np.ndarray, triangles: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """vertices [V, 3], triangles [F, 3], groups [V] (coincident vertices share a normal)
    -> [V] Lambert + ambient, normals facing outwards."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)  # [F, 3], area-weighted
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, groups[triangles[:, k]], face_normals)
    normals = normals[groups]
    outwards = vertices - vertices.mean(axis=0)
    normals *= np.where((normals * outwards).sum(axis=1) < 0, -1.0, 1.0)[:, None]
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    return AMBIENT + DIFFUSE * np.clip(normals @ light, 0.0, 1.0)


def vertex_light(head: HeadModel, vertices: np.ndarray, params: np.ndarray) -> np.ndarray:
    """vertices [V, 3] posed, params [P] -> [V] light factor: Lambert + ambient, times the
    expression's shading (folds, wrinkles)."""
    base = vertex_shading(vertices, head.triangles, head.normal_group)
    return base * (1.0 + params[1:] @ head.shading)
