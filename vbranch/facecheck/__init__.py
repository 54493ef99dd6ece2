"""Face check: identity match against a reference photo plus liveness challenges.

Layers:

- pure core, no I/O and no models: ``types`` (dataclasses, errors, config),
  ``geometry`` (landmark measures), ``liveness`` (challenge draw and judge),
  ``identity`` (distance and vote);
- ``engine``: dlib/face_recognition work (detect, landmarks, encode, reference
  validation); imports face_recognition lazily, normally only in workers;
- ``pool.FaceCheckPool``: the ProcessPoolExecutor adapter (models loaded once
  per worker);
- ``runner.FaceCheckSession``: the asyncio driver of one whole check;
- ``testing``: sample photos and an animated "puppet" face for tests/benchmarks.

Importing this package does not import dlib, OpenCV or face_recognition.
"""

from __future__ import annotations

from .identity import face_distance, vote_identity
from .liveness import draw_challenges, judge_challenge, judge_liveness
from .pool import FaceCheckPool
from .runner import FaceCheckSession, run_face_check
from .types import (
    ACTIONS,
    Action,
    ChallengeOutcome,
    FaceCheckConfig,
    FaceCheckResult,
    FaceEngineUnavailable,
    FrameAnalysis,
    LandmarkSample,
    LivenessConfig,
    LivenessResult,
    ReferenceFace,
    ReferencePhotoError,
)


def analyse_reference(image_bytes: bytes, **kwargs) -> ReferenceFace:
    """Validate a reference photo and encode its face, in this process (loads the
    models on first use).  From async code prefer ``await pool.analyse_reference``.
    Raises ReferencePhotoError with code unreadable / no_face / multiple_faces /
    face_too_small."""
    from .engine import analyse_reference as _analyse

    return _analyse(image_bytes, **kwargs)


def analyse_frame(frame_bgr, **kwargs) -> FrameAnalysis:
    """engine.analyse_frame in this process (tests, tools)."""
    from .engine import analyse_frame as _analyse

    return _analyse(frame_bgr, **kwargs)


__all__ = [
    "ACTIONS",
    "Action",
    "ChallengeOutcome",
    "FaceCheckConfig",
    "FaceCheckPool",
    "FaceCheckResult",
    "FaceCheckSession",
    "FaceEngineUnavailable",
    "FrameAnalysis",
    "LandmarkSample",
    "LivenessConfig",
    "LivenessResult",
    "ReferenceFace",
    "ReferencePhotoError",
    "analyse_frame",
    "analyse_reference",
    "draw_challenges",
    "face_distance",
    "judge_challenge",
    "judge_liveness",
    "run_face_check",
    "vote_identity",
]
