"""Track a multi-view capture into the avatar's expression space and head poses.

This is what ``npga train`` does when a capture has no ``codes.npz``:

1. Face Mesh on every camera image (static-image mode: the views are independent).
2. Head pose per timestep: the landmarks seen by two or more cameras are triangulated (linear
   DLT, each view weighted by how squarely it sees the face) into world metres, and the
   tracker's neutral template is fitted to them by weighted Procrustes (rigid landmarks
   weighted), exactly as the live tracker fits it in the image. The avatar's canonical frame is
   therefore the template frame, scaled to metres.
3. Expression: the triangulated landmarks with each timestep's own pose removed (canonical,
   face units); the neutral is the robust mean of the training frames (NeutralCalibrator); the
   PCA basis is fitted on the training timesteps only; every timestep is projected on it.
4. The live path: the *front* camera also goes through the monocular canonicalisation a live
   sender uses and is projected on the same basis (``monocular_codes``), and a linear map from
   those codes to the multi-view ones is fitted on the training timesteps (``calibration``).
   The bundle folds it into the encoder senders fetch, and ``npga eval --codes monocular``
   drives the held-out timesteps the way a webcam would.

Why multi-view codes: one view flattens depth and mixes expressions. On the seed-0 synthetic
capture a linear read-out of the rig's parameters from the codes has held-out R² 0.11 (pucker)
and -1.26 (a smile) from the front camera, 0.42 and 0.24 from the triangulation; the recipe's
`npga` scores 29.2 dB on the held-out timesteps (fitted poses) with multi-view codes, 27.5 dB with
the front camera's (docs/benchmarks.md, "Training").

The result is saved next to the avatar (``tracking.npz`` + ``basis.json``) and reused on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from npga.cameras import Cameras
from npga.tracking.expression import (
    ExpressionBasis,
    NeutralCalibrator,
    canonicalize,
    fit_code_calibration,
)
from npga.tracking.facemesh import FaceMeshTracker
from npga.tracking.procrustes import Similarity, rotation_to_quat_wxyz, weighted_procrustes
from npga.tracking.template import FaceTemplate

TRACKING_FILE = "tracking.npz"  # as tracked (what training starts from; reused on resume)
REFINED_TRACKING_FILE = "tracking_refined.npz"  # with the learnt pose corrections (npga eval)
FITTED_TRACKING_FILE = "tracking_fitted.npz"  # held-out poses fitted by npga eval --fit-poses
BASIS_FILE = "basis.json"
MIN_VIEWS = 2  # cameras that must see a face for a timestep's pose to be triangulated
FORWARD = np.array([0.0, 0.0, -1.0])  # the template face looks along canonical -z
VIEW_WEIGHT_FLOOR = 1e-3  # a view behind the face still counts, barely
# Relative: above what float32 storage leaves of a basis, far below what tracking again gives.
BASIS_TOLERANCE = 1e-4

ImageSource = Callable[[int, str], np.ndarray]  # (timestep, camera) -> [H, W, 3] uint8


@dataclass(frozen=True)
class CaptureTracking:
    """Codes and head poses of the usable timesteps of a capture (canonical -> world)."""

    timesteps: np.ndarray  # [T] int64
    codes: np.ndarray  # [T, E] float32, from the multi-view landmarks (what training uses)
    monocular_codes: np.ndarray  # [T, E] float32, the front camera's on the same basis
    calibration: np.ndarray  # [E, E] float32: codes ~ monocular_codes @ calibration.T
    rotation_wxyz: np.ndarray  # [T, 4] float32
    translation: np.ndarray  # [T, 3] float32, metres
    neutral_landmarks: np.ndarray  # [L, 3] the person's neutral, canonical frame, metres
    face_unit_metres: float  # metres per template face unit (outer-eye-corner distance)
    neutral_timestep: int  # the training timestep closest to the neutral expression
    basis: ExpressionBasis
    detection_rate: float  # of the front camera, over all timesteps

    def index(self, timestep: int) -> int:
        found = np.flatnonzero(self.timesteps == timestep)
        if found.size == 0:
            raise KeyError(f"timestep {timestep} has no tracked face")
        return int(found[0])

    def check_drives(self, landmark_basis: np.ndarray, template_landmarks: np.ndarray) -> None:
        """Raise ValueError unless these codes are in the expression space of an avatar whose
        prior is ``landmark_basis`` [E, L, 3] on ``template_landmarks`` [L, 3] (metres both).

        A PCA basis is defined only up to the signs (and, for close variances, the mixing) of its
        components, so tracking a capture again need not give the same basis (measured: the demo
        avatar's and a later re-track's differ in the sign of two components), and the codes of
        another tracking drive other expressions.
        """
        ours = self.basis.landmark_basis() * self.face_unit_metres
        if ours.shape != landmark_basis.shape:
            raise ValueError(
                f"its expression basis is {list(ours.shape)}, "
                f"the avatar's {list(landmark_basis.shape)}"
            )
        difference = float(np.linalg.norm(ours - landmark_basis) / np.linalg.norm(landmark_basis))
        if difference > BASIS_TOLERANCE:
            raise ValueError(
                f"its expression basis is not the avatar's (relative difference {difference:.3g}): "
                "its codes would drive other expressions; use the avatar's own training run"
            )
        shift = float(np.abs(self.neutral_landmarks - template_landmarks).max())
        if shift > BASIS_TOLERANCE * self.face_unit_metres:
            raise ValueError(
                f"its neutral landmarks are {shift * 1000:.2f} mm off the avatar's template; "
                "use the avatar's own training run"
            )

    def save(self, directory: Path, filename: str = TRACKING_FILE) -> None:
        np.savez(
            directory / filename,
            timesteps=self.timesteps,
            codes=self.codes,
            monocular_codes=self.monocular_codes,
            calibration=self.calibration,
            rotation_wxyz=self.rotation_wxyz,
            translation=self.translation,
            neutral_landmarks=self.neutral_landmarks,
            face_unit_metres=np.float64(self.face_unit_metres),
            neutral_timestep=np.int64(self.neutral_timestep),
            detection_rate=np.float64(self.detection_rate),
        )
        self.basis.save(directory / BASIS_FILE)

    @classmethod
    def load(cls, directory: Path, filename: str = TRACKING_FILE) -> CaptureTracking:
        path = directory / filename
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            return cls(
                timesteps=arrays["timesteps"],
                codes=arrays["codes"],
                monocular_codes=arrays["monocular_codes"],
                calibration=arrays["calibration"],
                rotation_wxyz=arrays["rotation_wxyz"],
                translation=arrays["translation"],
                neutral_landmarks=arrays["neutral_landmarks"],
                face_unit_metres=float(arrays["face_unit_metres"]),
                neutral_timestep=int(arrays["neutral_timestep"]),
                basis=ExpressionBasis.load(directory / BASIS_FILE),
                detection_rate=float(arrays["detection_rate"]),
            )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: unreadable capture tracking ({error})") from None

    def live_codes(self) -> np.ndarray:
        """[T, E]: the codes a live sender on the front camera produces (calibrated)."""
        return (self.monocular_codes @ self.calibration.T).astype(np.float32)


def triangulate(
    points2d: np.ndarray,  # [V, L, 2] pixels
    projections: np.ndarray,  # [V, 3, 4] K [R | t] of the V views
    weights: np.ndarray | None = None,  # [V, L] >= 0, how much each view is trusted per point
) -> np.ndarray:
    """Weighted linear (DLT) triangulation of L points seen in V >= 2 views: [L, 3] world."""
    x, y = points2d[..., 0:1], points2d[..., 1:2]  # [V, L, 1]
    rows_x = x * projections[:, None, 2] - projections[:, None, 0]  # [V, L, 4]
    rows_y = y * projections[:, None, 2] - projections[:, None, 1]
    if weights is not None:
        rows_x = rows_x * weights[..., None]
        rows_y = rows_y * weights[..., None]
    system = np.concatenate((rows_x, rows_y), axis=0).transpose(1, 0, 2)  # [L, 2V, 4]
    _, _, vt = np.linalg.svd(system)
    homogeneous = vt[:, -1]  # [L, 4]
    return homogeneous[:, :3] / homogeneous[:, 3:4]


def view_weights(
    world: np.ndarray,  # [L, 3] a first estimate of the landmarks, world
    rotation: np.ndarray,  # [3, 3] canonical -> world rotation fitted to them
    centres: np.ndarray,  # [V, 3] camera centres, world
) -> np.ndarray:
    """How much to trust each view's landmarks, [V]: the squared cosine between the face's
    forward axis and the direction to the camera (a floor of 1e-3 keeps every view).

    Face Mesh pulls the landmarks of a turned face towards a frontal layout, so a view that
    sees the face from the side biases the triangulated head towards that view's frontal pose.
    On the seed-0 synthetic capture (8 views, +-45 degrees), trusting every view alike (each
    landmark weighted only by whether it faces the view) recovered 75 % of the rig's yaw and
    83 % of its pitch; these weights cut the head poses' error from 2.58 to 1.70 mm on the
    training timesteps and from 3.70 to 2.66 mm on the held-out ones, and on a 4-view capture
    from 2.92 to 2.52 and 6.33 to 6.22 mm. Harder choices (dropping views beyond 45 degrees)
    did a little better with 8 views and much worse with 4 (docs/benchmarks.md, "Training").
    """
    to_camera = centres - world.mean(axis=0)
    to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True)
    facing = to_camera @ (rotation @ FORWARD)  # [V] cosines
    return np.clip(facing, VIEW_WEIGHT_FLOOR, 1.0) ** 2


def triangulate_face(
    points2d: np.ndarray,  # [V, L, 2] pixels
    projections: np.ndarray,  # [V, 3, 4]
    centres: np.ndarray,  # [V, 3] camera centres, world
    template: FaceTemplate,
) -> np.ndarray:
    """World landmarks [L, 3] from V views, each view weighted by how squarely it sees the face.

    A first pass with every view gives the head's orientation; the second weights the views by
    it (:func:`view_weights`).
    """
    first = triangulate(points2d, projections)
    pose = weighted_procrustes(template.points, first, template.weights)
    weights = view_weights(first, pose.rotation, centres)  # [V]
    return triangulate(points2d, projections, np.repeat(weights[:, None], first.shape[0], axis=1))


def projection_matrices(cameras: Cameras) -> np.ndarray:
    """K [R | t] of every camera, [C, 3, 4] float64."""
    w2c = cameras.world_to_cam.detach().cpu().double().numpy()
    k = cameras.intrinsics.detach().cpu().double().numpy()
    return k @ w2c[:, :3, :]


def detect_landmarks(
    images: ImageSource,
    timesteps: list[int],
    camera_names: list[str],
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Face Mesh on every (timestep, camera): landmarks [T, C, L, 3] pixels and found [T, C]."""
    num_landmarks = 478
    landmarks = np.zeros((len(timesteps), len(camera_names), num_landmarks, 3))
    found = np.zeros((len(timesteps), len(camera_names)), dtype=bool)
    with FaceMeshTracker(static_images=True) as facemesh:
        for ti, timestep in enumerate(timesteps):
            for ci, camera in enumerate(camera_names):
                face = facemesh.process(images(timestep, camera))
                if face is not None:
                    landmarks[ti, ci] = face.points
                    found[ti, ci] = True
            if progress is not None:
                progress(1)
    return landmarks, found


def _displacements(canonical: np.ndarray, train_rows: list[int]) -> np.ndarray:
    """Canonical landmarks [T, L, 3] minus the neutral calibrated on the training rows."""
    calibrator = NeutralCalibrator(frames=len(train_rows))
    for row in train_rows:
        calibrator.add(canonical[row])
    return canonical - calibrator.neutral()


def fit_expression_space(
    canonical: np.ndarray,  # [T, L, 3] landmarks with head pose removed, face units
    train_rows: list[int],
    expression_dim: int,
    template: FaceTemplate,
) -> tuple[ExpressionBasis, np.ndarray]:
    """The PCA basis of the training rows' displacements from their robust neutral, and the
    codes [T, E] float32 of every row on it."""
    displacements = _displacements(canonical, train_rows)
    basis = ExpressionBasis.fit(displacements[train_rows], expression_dim, template)
    return basis, basis.encode(displacements).astype(np.float32)


@dataclass(frozen=True)
class _Triangulated:
    """The timesteps whose head the rig triangulates, with the front camera's view of it."""

    rows: list[int]  # indices into the tracked timesteps
    similarities: list[Similarity]  # template (face units) -> world (metres)
    canonical: np.ndarray  # [R, L, 3] triangulated landmarks, pose removed, face units
    monocular: np.ndarray  # [R, L, 3] the front camera's, canonicalised as a live sender does


def _triangulate_all(
    landmarks: np.ndarray,  # [T, C, L, 3] pixels
    found: np.ndarray,  # [T, C] bool
    cameras: Cameras,
    front_index: int,
    template: FaceTemplate,
) -> _Triangulated:
    projections = projection_matrices(cameras)
    centres = cameras.centers().detach().cpu().double().numpy()  # [C, 3]
    rows, similarities, canonical, monocular = [], [], [], []
    for ti in range(landmarks.shape[0]):
        views = np.flatnonzero(found[ti])
        if views.size < MIN_VIEWS or not found[ti, front_index]:
            continue
        world = triangulate_face(
            landmarks[ti, views, :, :2], projections[views], centres[views], template
        )
        similarity = weighted_procrustes(template.points, world, template.weights)
        similarities.append(similarity)
        canonical.append(similarity.invert(world))
        monocular.append(canonicalize(landmarks[ti, front_index], template)[1])
        rows.append(ti)
    num_landmarks = template.points.shape[0]
    empty = np.zeros((0, num_landmarks, 3))
    return _Triangulated(
        rows,
        similarities,
        np.stack(canonical) if canonical else empty,
        np.stack(monocular) if monocular else empty,
    )


def rig_to_avatar_scale(
    seen: _Triangulated, avatar_landmarks: np.ndarray, template: FaceTemplate
) -> float:
    """The factor that takes a rig's metres to an avatar's: per timestep, the scale of the
    weighted similarity (the template's weights: the rigid landmarks count) that maps the face
    the rig triangulated (in its metres, pose removed) onto the avatar's neutral landmarks
    ``avatar_landmarks`` [L, 3] (metres); the median over timesteps.

    Comparing whole faces at one estimator keeps expressions out of it; a ratio of two
    one-frame measures (an eye-corner distance against a median Procrustes scale) does not: it
    put one synthetic subject's captures 2.6 % apart."""
    factors = [
        weighted_procrustes(shape * similarity.scale, avatar_landmarks, template.weights).scale
        for shape, similarity in zip(seen.canonical, seen.similarities, strict=True)
    ]
    return float(np.median(factors))


def _rotations(similarities: list[Similarity]) -> np.ndarray:
    return np.stack([rotation_to_quat_wxyz(s.rotation) for s in similarities]).astype(np.float32)


def track_capture(
    landmarks: np.ndarray,  # [T, C, L, 3] pixels (Face Mesh x, y, relative z)
    found: np.ndarray,  # [T, C] bool
    timesteps: list[int],
    train_timesteps: list[int],
    cameras: Cameras,  # the C cameras, at the resolution the landmarks were detected in
    front_index: int,
    template: FaceTemplate,
    expression_dim: int,
) -> CaptureTracking:
    """Poses and codes from triangulated landmarks, the live path's calibration from the front
    camera (see the module doc)."""
    seen = _triangulate_all(landmarks, found, cameras, front_index, template)
    train_set = set(train_timesteps)
    train_rows = [i for i, ti in enumerate(seen.rows) if timesteps[ti] in train_set]
    if len(train_rows) < expression_dim:
        raise ValueError(
            f"only {len(train_rows)} training timesteps have a face seen by the front camera and "
            f"{MIN_VIEWS - 1} other camera(s); a {expression_dim}-dim basis needs {expression_dim}"
        )
    basis, codes = fit_expression_space(seen.canonical, train_rows, expression_dim, template)
    monocular_codes = basis.encode(_displacements(seen.monocular, train_rows))
    calibration = fit_code_calibration(monocular_codes[train_rows], codes[train_rows])
    face_unit = float(np.median([s.scale for s in seen.similarities]))
    neutral_row = train_rows[int(np.argmin(np.linalg.norm(codes[train_rows], axis=1)))]
    return CaptureTracking(
        timesteps=np.asarray([timesteps[ti] for ti in seen.rows], dtype=np.int64),
        codes=codes,
        monocular_codes=monocular_codes.astype(np.float32),
        calibration=calibration.astype(np.float32),
        rotation_wxyz=_rotations(seen.similarities),
        translation=np.stack([s.translation for s in seen.similarities]).astype(np.float32),
        neutral_landmarks=(seen.canonical[neutral_row] * face_unit).astype(np.float32),
        face_unit_metres=face_unit,
        neutral_timestep=int(timesteps[seen.rows[neutral_row]]),
        basis=basis,
        detection_rate=float(found[:, front_index].mean()),
    )


@dataclass(frozen=True)
class AvatarSpace:
    """The expression space of a trained avatar, which a capture of its subject is tracked into."""

    basis: ExpressionBasis  # the avatar's own (uncalibrated) encoder
    calibration: np.ndarray  # [E, E]: live codes = calibration @ monocular codes
    template_landmarks: np.ndarray  # [L, 3] the avatar's neutral landmarks, metres
    face_unit_metres: float  # the avatar's outer-eye-corner distance


def track_into_space(
    landmarks: np.ndarray,  # [T, C, L, 3] pixels (Face Mesh x, y, relative z)
    found: np.ndarray,  # [T, C] bool
    timesteps: list[int],
    cameras: Cameras,  # the C cameras, at the resolution the landmarks were detected in
    front_index: int,
    template: FaceTemplate,
    space: AvatarSpace,
) -> tuple[CaptureTracking, float]:
    """A capture the avatar never saw, tracked into its expression space: poses triangulated as
    :func:`track_capture` does; codes on the avatar's basis, never a new basis. Both the
    multi-view codes and the front camera's monocular ones are displacements from this
    capture's robust neutral, the rule that defined code zero when the avatar was trained (and
    the one a live sender follows with its own neutral). The avatar's template is not code
    zero: it is the training frame nearest to it, 3.6 code units away for the bundled demo's
    run (docs/benchmarks.md "Evaluation on an unseen capture"); encoding against it shifted
    every code by that much.

    Returns the tracking, in the avatar's metres, and the factor that takes this rig's metres to
    them (:func:`rig_to_avatar_scale`): the rig's cameras must be scaled by it
    (``CaptureDataset(world_scale=...)``)."""
    seen = _triangulate_all(landmarks, found, cameras, front_index, template)
    if not seen.rows:
        raise ValueError(
            f"no timestep has a face seen by the front camera and {MIN_VIEWS - 1} other camera(s)"
        )
    every = list(range(len(seen.rows)))
    # Code zero is what the avatar's training made it: the robust neutral of the capture's own
    # frames (fit_expression_space), not the template (one frame, 3.6 code units from it).
    codes = space.basis.encode(_displacements(seen.canonical, every)).astype(np.float32)
    monocular = space.basis.encode(_displacements(seen.monocular, every)).astype(np.float32)
    factor = rig_to_avatar_scale(seen, space.template_landmarks, template)
    neutral_row = int(np.argmin(np.linalg.norm(codes, axis=1)))
    tracking = CaptureTracking(
        timesteps=np.asarray([timesteps[ti] for ti in seen.rows], dtype=np.int64),
        codes=codes,
        monocular_codes=monocular,
        calibration=space.calibration.astype(np.float32),
        rotation_wxyz=_rotations(seen.similarities),
        translation=(np.stack([s.translation for s in seen.similarities]) * factor).astype(
            np.float32
        ),
        neutral_landmarks=space.template_landmarks.astype(np.float32),
        face_unit_metres=space.face_unit_metres,
        neutral_timestep=int(timesteps[seen.rows[neutral_row]]),
        basis=space.basis,
        detection_rate=float(found[:, front_index].mean()),
    )
    return tracking, factor
