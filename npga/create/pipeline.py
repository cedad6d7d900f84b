"""``npga create``: one ordinary video of a person -> their avatar bundle, in resumable stages.

The run directory (``WORK``) keeps every stage's result, so ``--resume`` continues where an
interrupted run stopped:

==========================  ==========================================================
``settings.json``           the video and the options (a resumed run must match them)
``observations.npz``        1. every frame decoded and observed (faces, sharpness, cuts)
``selection.json``          2. the person kept, the frames chosen, the virtual camera
``capture/``                3. the one-camera capture (frames, head masks, splits)
``train/tracking.npz``      4. codes and head poses from the live sender's pipeline
``train/checkpoint/``       5. training (visual-hull start from well-spread head poses)
``OUT/``                    6. evaluation, ``report.json``, previews and the bundle
==========================  ==========================================================

The avatar bundle is assembled in a temporary directory next to ``OUT`` and moved into place
last, so ``OUT`` never holds a half-written avatar.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from npga.create.camera import CropCamera, crop_camera
from npga.create.capture import write_capture
from npga.create.observe import ClipObservations, observe_clip
from npga.create.people import PersonChoice, choose_person
from npga.create.preview import write_previews
from npga.create.select import FrameSelection, select_frames
from npga.create.tracking import track_monocular
from npga.data import CaptureDataset
from npga.eval.evaluate import evaluate
from npga.eval.pose_fit import fit_poses
from npga.tracking.capture import (
    BASIS_FILE,
    FITTED_TRACKING_FILE,
    REFINED_TRACKING_FILE,
    TRACKING_FILE,
    CaptureTracking,
)
from npga.tracking.sources import SourceError, VideoFileSource
from npga.tracking.template import FaceTemplate, load_default_template
from npga.train import DensifyStrategy, TrainConfig, Trainer
from npga.train.checkpoint import has_checkpoint

SETTINGS_FILE = "settings.json"
OBSERVATIONS_FILE = "observations.npz"
SELECTION_FILE = "selection.json"
REPORT_FILE = "report.json"
START_FILE = "held_out_at_start.json"  # in the training run: the untrained avatar's figures
BUNDLE_FILES = ("avatar.safetensors", "avatar.json", REFINED_TRACKING_FILE, BASIS_FILE)
MIN_SECONDS = 3.0  # a clip shorter than this cannot show the head from enough sides
MIN_FACE_FRAMES = 45  # frames of the kept person that pass the checks
# Training also checkpoints this often (wall time): a run killed outright (out of memory, a
# server that could not stop it in time) loses at most this much of its training.
CHECKPOINT_SECONDS = 60.0


class CreateError(ValueError):
    """A video that cannot become an avatar, or a run that cannot continue; one line."""


@dataclass(frozen=True)
class Quality:
    """What ``--quality`` sets."""

    train_frames: int  # frames chosen for training (coverage of turns and expressions)
    test_frames: int  # held-out frames evaluated
    iterations: int
    initial_gaussians: int
    max_gaussians: int
    fit_pose_steps: int  # photometric pose fit of each held-out frame before evaluation


QUALITIES = {
    "fast": Quality(80, 8, 800, 8_000, 15_000, 30),
    "standard": Quality(240, 16, 3_000, 15_000, 30_000, 50),
    "best": Quality(480, 24, 8_000, 20_000, 60_000, 100),
}


@dataclass(frozen=True)
class CreateConfig:
    quality: str = "standard"
    resolution: int = 256  # side of the square virtual camera's images
    fov_degrees: float = 60.0  # assumed horizontal field of view of the video
    expression_dim: int = 32
    hull_frames: int = 16  # head poses whose masks carve the initial hull
    seed: int = 0
    # Overrides of the quality's settings (None: the quality's).
    iterations: int | None = None
    train_frames: int | None = None
    test_frames: int | None = None
    fit_pose_steps: int | None = None

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}")

    @property
    def preset(self) -> Quality:
        q = QUALITIES[self.quality]
        return replace(
            q,
            iterations=self.iterations or q.iterations,
            train_frames=self.train_frames or q.train_frames,
            test_frames=self.test_frames or q.test_frames,
            fit_pose_steps=self.fit_pose_steps or q.fit_pose_steps,
        )

    def train_config(self) -> TrainConfig:
        q = self.preset
        return TrainConfig(
            iterations=q.iterations,
            resolution=self.resolution,
            initial_gaussians=q.initial_gaussians,
            expression_dim=self.expression_dim,
            hull_frames=self.hull_frames,
            seed=self.seed,
            densify=DensifyStrategy(
                refine_stop=int(q.iterations * 0.6), max_gaussians=q.max_gaussians
            ),
        )


class Progress(Protocol):
    """How a run reports: a bar per stage, and lines of what it found."""

    def stage(self, name: str, total: int | None) -> Callable[[int, str], None]:
        """Start a stage; the callable sets (completed, info)."""
        ...

    def say(self, text: str) -> None: ...


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, since: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - since, 1)


def _video_identity(video: Path) -> dict[str, Any]:
    stat = video.stat()
    return {"video": str(video.resolve()), "bytes": stat.st_size, "mtime": int(stat.st_mtime)}


def _prepare_work(video: Path, work: Path, config: CreateConfig, resume: bool) -> StageTimes:
    settings = {**_video_identity(video), "config": asdict(config)}
    path = work / SETTINGS_FILE
    if resume:
        if not path.is_file():
            raise CreateError(f"{work}: no run to resume (no {SETTINGS_FILE})")
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in settings} != settings:
            raise CreateError(
                f"{work}: was started with another video or other options; "
                "resume with the same ones or use another --work"
            )
        return StageTimes(saved.get("stage_seconds", {}))
    if work.exists() and any(work.iterdir()):
        raise CreateError(
            f"{work}: holds a run already; continue it with --resume, or remove it or choose "
            "another --work"
        )
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))
    return StageTimes()


def _save_times(work: Path, times: StageTimes) -> None:
    path = work / SETTINGS_FILE
    settings = json.loads(path.read_text())
    settings["stage_seconds"] = times.seconds
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings, indent=1))
    os.replace(tmp, path)


def _open_video(video: Path) -> VideoFileSource:
    try:
        return VideoFileSource(video)
    except SourceError as error:
        raise CreateError(str(error)) from None


def _observe(
    video: Path, source: VideoFileSource, work: Path, resume: bool, progress: Progress
) -> ClipObservations:
    update = progress.stage("1/6 decoding, Face Mesh", source.length)
    try:
        clip = observe_clip(source, work / OBSERVATIONS_FILE, resume, lambda n: update(n, "frames"))
    except SourceError as error:
        raise CreateError(str(error)) from None
    duration = clip.frames / clip.fps
    update(clip.frames, f"{clip.frames} frames, {duration:.1f} s at {clip.fps:.3g} fps")
    if duration < MIN_SECONDS:
        raise CreateError(
            f"{video}: the clip is {duration:.1f} s long; at least {MIN_SECONDS:.0f} s are needed "
            "(record ~60 s: turn the head left, right, up and down, and make expressions)"
        )
    if clip.face_frame.size == 0:
        raise CreateError(f"{video}: no face found in any of its {clip.frames} frames")
    return clip


@dataclass(frozen=True)
class Selection:
    person: PersonChoice
    frames: FrameSelection
    camera: CropCamera

    def to_json(self) -> dict[str, Any]:
        return {
            "people_seen": self.person.people_seen,
            "frames_per_person": self.person.frames_per_person,
            "shots": self.person.shots,
            "frames": asdict(self.frames),
            "camera": asdict(self.camera),
        }


def _select(
    video: Path,
    clip: ClipObservations,
    work: Path,
    config: CreateConfig,
    template: FaceTemplate,
    progress: Progress,
) -> Selection:
    update = progress.stage("2/6 person, frames, camera", 1)
    person = choose_person(clip, template)
    q = config.preset
    frames = select_frames(clip, person, template, q.train_frames, q.test_frames)
    if frames.usable_frames < MIN_FACE_FRAMES or len(frames.train_frames) < config.expression_dim:
        raise CreateError(
            f"{video}: only {frames.usable_frames} frames show the face sharp and whole "
            f"({frames.dropped_blurred} blurred, {frames.dropped_cut_off} cut off by the border); "
            f"at least {max(MIN_FACE_FRAMES, config.expression_dim + 1)} are needed"
        )
    shown = frames.train_frames + frames.test_frames
    faces = clip.face_points[person.face_of_frame[shown]]
    camera = crop_camera(faces, clip.width, clip.height, config.resolution, config.fov_degrees)
    selection = Selection(person, frames, camera)
    tmp = work / (SELECTION_FILE + ".tmp")
    tmp.write_text(json.dumps(selection.to_json(), indent=1))
    os.replace(tmp, work / SELECTION_FILE)
    update(1, f"{len(frames.train_frames)} training + {len(frames.test_frames)} held-out frames")
    others = person.frames_per_person[1:]
    if others:
        progress.say(
            f"{person.people_seen} people seen; kept the one in {person.frames_per_person[0]} "
            f"frames, dropped {sum(others)} frames of the other" + ("s" if len(others) > 1 else "")
        )
    progress.say(
        f"{person.shots} shot(s); {frames.usable_frames} usable frames of the kept person "
        f"(dropped {frames.dropped_blurred} blurred, {frames.dropped_cut_off} cut off)"
    )
    return selection


def _landmarks_in_crop(
    clip: ClipObservations, selection: Selection, frames: list[int]
) -> dict[int, np.ndarray]:
    faces = selection.person.face_of_frame
    return {f: selection.camera.to_crop(clip.face_points[faces[f]]) for f in frames}


def _train(
    config: CreateConfig,
    dataset: CaptureDataset,
    tracking: CaptureTracking,
    run: Path,
    device: torch.device,
    progress: Progress,
) -> Trainer:
    resume = has_checkpoint(run)
    try:
        trainer = Trainer(
            config.train_config(), dataset, tracking, run, device=device, resume=resume
        )
    except ValueError as error:
        raise CreateError(str(error)) from None
    start_file = run / START_FILE
    if not start_file.is_file():  # the untrained avatar's held-out figures, for the report
        start = evaluate(trainer.avatar.eval(), dataset, tracking, "test")
        start_file.write_text(json.dumps(_headline(start["self_reenactment"])))
        trainer.avatar.train()
    total = trainer.config.iterations
    update = progress.stage("5/6 training", total)
    started, first = time.perf_counter(), trainer.step
    update(trainer.step, "resumed" if resume else "")

    def show(stats: Any) -> None:
        if stats.step % 10 and stats.step != total:
            return
        rate = (stats.step - first) / max(time.perf_counter() - started, 1e-9)
        update(stats.step, f"PSNR {stats.psnr:5.2f}  N {stats.num_gaussians}  {rate:.1f} it/s")

    try:
        trainer.run(show, checkpoint_seconds=CHECKPOINT_SECONDS)
    except KeyboardInterrupt:
        raise CreateError(
            f"interrupted at training step {trainer.step}; continue with --resume"
        ) from None
    trainer.save_checkpoint()
    return trainer


def _headline(split: dict[str, Any]) -> dict[str, Any]:
    """A split's image metrics without the per-camera breakdown (one camera here)."""
    return {k: v for k, v in split.items() if k != "per_camera"}


def _evaluate(
    trainer: Trainer,
    dataset: CaptureDataset,
    steps: int,
    template: FaceTemplate,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any], CaptureTracking]:
    """Held-out metrics at the tracked poses and at photometrically fitted ones (with the
    expression error)."""
    update = progress.stage("6/6 evaluation", 2)
    avatar = trainer.avatar.eval()
    tracking = trainer.refined_tracking()
    tracked = _headline(evaluate(avatar, dataset, tracking, "test")["self_reenactment"])
    update(1, "poses fitted to the held-out frames")
    fitted_tracking = fit_poses(avatar, dataset, tracking, dataset.splits.test_timesteps, steps)
    fitted = evaluate(avatar, dataset, fitted_tracking, "test", template=template)
    fitted = fitted["self_reenactment"]
    fitted.pop("per_camera")
    update(2, f"PSNR {fitted['psnr']:.2f} dB (in the mask {fitted['psnr_mask']:.2f})")
    return tracked, fitted, fitted_tracking


def _install(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` directory to ``out`` (replacing an older avatar there)."""
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def create_avatar(
    video: Path,
    out: Path,
    work: Path,
    config: CreateConfig,
    device: torch.device,
    progress: Progress,
    *,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every stage (see the module doc); returns the report written to ``OUT/report.json``."""
    started = time.perf_counter()
    if not video.is_file():
        raise CreateError(f"{video}: no such file")
    source = _open_video(video)
    new_work = not resume and not work.exists()
    times = _prepare_work(video, work, config, resume)
    template = load_default_template()
    try:  # a video found unusable leaves no run directory behind that this call made
        since = time.perf_counter()
        clip = _observe(video, source, work, resume, progress)
        times.add("decode_and_observe", since)
        _save_times(work, times)
        since = time.perf_counter()
        selection = _select(video, clip, work, config, template, progress)
    except CreateError:
        if new_work:
            shutil.rmtree(work, ignore_errors=True)
        raise
    frames = selection.frames
    shown = sorted(frames.train_frames + frames.test_frames)
    landmarks = _landmarks_in_crop(clip, selection, shown)
    times.add("select", since)

    since = time.perf_counter()
    update = progress.stage("3/6 virtual camera, head masks", len(shown))
    capture_root = work / "capture"
    write_capture(
        capture_root,
        source,
        selection.camera,
        landmarks,
        frames.train_frames,
        frames.test_frames,
        template,
        lambda n: update(n, "frames"),
    )
    update(len(shown), f"{selection.camera.resolution}x{selection.camera.resolution}")
    times.add("capture", since)
    _save_times(work, times)

    since = time.perf_counter()
    run = work / "train"
    run.mkdir(exist_ok=True)
    update = progress.stage("4/6 tracking (live pipeline)", 1)
    if (run / TRACKING_FILE).is_file():
        tracking = CaptureTracking.load(run)
    else:
        try:
            tracking = track_monocular(
                np.stack([landmarks[f] for f in shown]),
                shown,
                frames.train_frames,
                selection.camera,
                template,
                config.expression_dim,
            )
        except ValueError as error:
            raise CreateError(f"{video}: {error}") from None
        tracking.save(run)
    update(1, f"{tracking.codes.shape[1]}-dim expression basis")
    times.add("tracking", since)

    dataset = CaptureDataset(capture_root, resolution=config.resolution)
    since = time.perf_counter()
    trainer = _train(config, dataset, tracking, run, device, progress)
    times.add("training", since)
    _save_times(work, times)

    since = time.perf_counter()
    held_tracked, held_fitted, fitted_tracking = _evaluate(
        trainer, dataset, config.preset.fit_pose_steps, template, progress
    )
    times.add("evaluation", since)
    report = {
        "video": video.name,  # the name only, as in avatar.json
        "quality": config.quality,
        "device": str(device),
        "resolution": config.resolution,
        "held_out": held_fitted,
        "held_out_tracked_poses": held_tracked,
        "held_out_at_start": json.loads((run / START_FILE).read_text()),
        "held_out_poses": f"fitted to each held-out frame ({config.preset.fit_pose_steps} steps)",
        "frames_used": len(frames.train_frames),
        "frames_held_out": len(frames.test_frames),
        "frames_in_clip": clip.frames,
        "held_out_frames": frames.test_frames,  # video frame indices
        "training_frames": frames.train_frames,
        "people_seen": selection.person.people_seen,
        "frames_per_person": selection.person.frames_per_person,
        "shots": selection.person.shots,
        "dropped_blurred": frames.dropped_blurred,
        "dropped_cut_off": frames.dropped_cut_off,
        "gaussians": trainer.avatar.num_gaussians,
        "iterations": trainer.step,
        "stage_seconds": times.seconds,
        "seconds": round(sum(times.seconds.values()), 1),
        "lpips": "not computed: no LPIPS weights are available locally (never downloaded)",
    }
    summary = {
        "source": "npga create",
        "video": video.name,  # the name only: no paths of the machine it was made on
        "capture_fingerprint": dataset.fingerprint(),
        "held_out": held_fitted,
        "frames_used": len(frames.train_frames),
        "iterations": trainer.step,
        "resolution": config.resolution,
    }
    trainer.write_bundle(summary)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in BUNDLE_FILES:  # with the tracking `npga eval` reads beside a bundle
        shutil.copy2(run / name, staging / name)
    fitted_tracking.save(staging, FITTED_TRACKING_FILE)  # the held-out frames' fitted poses
    since = time.perf_counter()
    write_previews(trainer.avatar, dataset, fitted_tracking, staging)
    times.add("previews", since)
    report["stage_seconds"] = times.seconds
    report["seconds"] = round(sum(times.seconds.values()), 1)
    report["wall_seconds_this_call"] = round(time.perf_counter() - started, 1)
    (staging / REPORT_FILE).write_text(json.dumps(report, indent=1))
    _install(staging, out)
    _save_times(work, times)
    return report
