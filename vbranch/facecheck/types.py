"""Value types of the face check: plain dataclasses, safe to pickle to and from workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Action(str, Enum):
    """Liveness challenges.  Directions are the *customer's own* left and right.

    The server never mirrors the camera image (browsers send it unmirrored; only
    their local preview is mirrored), so a customer turning to their own left
    moves their nose toward the right-hand side of the received image.  Clients
    that send a mirrored image must say so (``FaceCheckConfig.mirrored``).
    """

    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"


ACTIONS: tuple[Action, ...] = tuple(Action)


class ReferencePhotoError(ValueError):
    """The reference photo cannot be used.  ``code`` is one of CODES."""

    CODES = ("unreadable", "no_face", "multiple_faces", "face_too_small")

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown reference photo error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):  # keep code and message across the process boundary
        return (type(self), (self.code, self.message))


class FaceEngineUnavailable(RuntimeError):
    """face_recognition / dlib / the bundled models could not be loaded."""


@dataclass(frozen=True)
class ReferenceFace:
    """The face found in a reference photo."""

    encoding: np.ndarray  # 128 float64
    box: tuple[int, int, int, int]  # top, right, bottom, left in the photo's pixels
    image_size: tuple[int, int]  # width, height of the (orientation-corrected) photo
    score: float  # HOG detection score

    @property
    def face_px(self) -> int:
        top, right, bottom, left = self.box
        return min(right - left, bottom - top)

    def encoding_list(self) -> list[float]:
        return [float(x) for x in self.encoding]


@dataclass(frozen=True)
class FrameAnalysis:
    """What a worker found in one live frame.  No pixels: landmarks and encoding only."""

    faces: int  # faces counted in the frame (0, 1, 2, ...)
    box: tuple[int, int, int, int] | None  # largest face: top, right, bottom, left (frame px)
    score: float | None
    landmarks: np.ndarray | None  # (68, 2) float32, frame px, largest face
    encoding: np.ndarray | None  # 128 float64 when asked for and the face is near frontal
    frame_size: tuple[int, int]  # width, height of the frame the worker saw
    elapsed_ms: float = 0.0  # worker CPU time for this frame

    @property
    def has_face(self) -> bool:
        return self.landmarks is not None


@dataclass(frozen=True)
class LandmarkSample:
    """One point of a liveness time series: a timestamp and the face's landmarks (or None)."""

    t: float
    landmarks: np.ndarray | None
    faces: int = 1


@dataclass
class ChallengeOutcome:
    action: str
    passed: bool
    reason: str  # "detected", or why not: no_action, static, no_face, wrong_direction, no_frames
    timeout_s: float = 0.0
    samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "passed": self.passed, "reason": self.reason}


@dataclass
class LivenessResult:
    passed: bool
    challenges: list[ChallengeOutcome] = field(default_factory=list)
    motion: float = 0.0  # largest non-rigid landmark motion seen (interocular units)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "challenges": [c.to_dict() for c in self.challenges]}


@dataclass
class FaceCheckResult:
    """Outcome of one face check.  ``to_dict()`` gives the JSON the agent and the
    FaceCheck row need (match, distance, threshold, liveness, reasons ...).

    ``reasons`` (empty when all is well), in this order when several apply:

    - ``no_face``: no frame showed a face, so no identity decision;
    - ``insufficient_frames``: faces seen, but fewer than identity_min_frames
      single, near-frontal faces could be encoded;
    - ``mismatch``: enough frames, and the majority was beyond the threshold;
    - ``multiple_faces``: at least one sampled frame showed more than one face
      (those frames are left out of the identity vote);
    - ``liveness_failed``: at least one challenge was not performed (see each
      challenge's reason: no_action, static, wrong_direction, no_face, no_frames);
    - ``static_image``: besides, the landmarks hardly moved at all over the
      whole check: a photo or a frozen video;
    - ``timeout``: the video stalled (no frame for frame_timeout_s) or ended
      before the check was complete;
    - ``engine_error``: a worker failed; the check was cut short.
    """

    match: bool
    distance: float | None  # median distance over the identity frames used
    threshold: float
    frames_used: int  # identity frames that took part in the vote
    multiple_faces_seen: bool
    liveness: LivenessResult
    reasons: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    frames_sampled: int = 0  # frames analysed by the workers (identity + liveness)

    @property
    def passed(self) -> bool:
        """Identity matched, liveness passed and nothing else was wrong."""
        return self.match and self.liveness.passed and not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "distance": None if self.distance is None else round(float(self.distance), 4),
            "threshold": self.threshold,
            "frames_used": self.frames_used,
            "multiple_faces_seen": self.multiple_faces_seen,
            "liveness": self.liveness.to_dict(),
            "reasons": list(self.reasons),
            "passed": self.passed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class LivenessConfig:
    """Thresholds of the liveness judge (see liveness.py for what each measures)."""

    baseline_samples: int = 3  # first face samples of a window form its baseline
    min_samples: int = 4  # face samples needed in a window to judge it
    blink_ratio: float = 0.6  # eyelid gap must fall to this fraction of the baseline
    mouth_open_delta: float = 0.2  # inner-lip gap must grow by this (interocular units)
    mouth_open_ratio: float = 0.25  # ... and the inner-lip MAR must reach this
    turn_delta: float = 0.25  # yaw index must move this far (see geometry.yaw_index)
    static_motion: float = 0.012  # below this non-rigid motion the video counts as static
    mirrored: bool = False  # the client sends a mirrored image (swaps left and right)


@dataclass(frozen=True)
class FaceCheckConfig:
    """Everything the runner can be tuned with; defaults fit 640x480 at 15 fps."""

    threshold: float = 0.5  # euclidean distance; stricter than face_recognition's 0.6
    challenges: int = 2
    challenge_timeout_s: float = 5.0
    liveness_fps: float = 6.0  # frames sampled per second in turn / mouth windows
    blink_fps: float = 10.0  # blinks are short: sample faster in blink windows
    identity_fps: float = 2.0  # at most this many frames a second are also encoded
    identity_frames: int = 5  # stop encoding once this many usable frames are in
    identity_min_frames: int = 3  # fewer usable frames than this: no decision (match false)
    identity_extra_s: float = 3.0  # after the challenges, time allowed to collect missing frames
    frame_width: int = 480  # frames are downscaled to this width before going to a worker
    detect_width: int = 320  # the worker detects faces at this width (HOG, no upsampling)
    frame_timeout_s: float = 3.0  # no frame for this long: the stream is considered stalled
    max_encode_yaw: float = 0.3  # only near-frontal faces are encoded for identity
    extra_face_min_score: float = 0.5  # a second face counts only with this HOG score
    liveness: LivenessConfig = field(default_factory=LivenessConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
