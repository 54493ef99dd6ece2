"""Identity: distances between 128-d encodings and the vote over frames (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5


def face_distance(reference, encoding) -> float:
    """Euclidean distance between two face encodings (0 same image, ~0.6 library cut-off)."""
    a = np.asarray(reference, dtype=np.float64).reshape(-1)
    b = np.asarray(encoding, dtype=np.float64).reshape(-1)
    if a.shape != (128,) or b.shape != (128,):
        raise ValueError("face encodings have 128 values")
    return float(np.linalg.norm(a - b))


@dataclass(frozen=True)
class IdentityVote:
    match: bool
    distance: float | None  # median over the frames used
    frames_used: int
    frames_accepted: int  # frames whose distance was within the threshold
    decided: bool  # enough frames to decide at all


def vote_identity(distances: Sequence[float], threshold: float = DEFAULT_THRESHOLD, min_frames: int = 3) -> IdentityVote:
    """Match when a strict majority of at least ``min_frames`` frames is within the threshold."""
    d = [float(x) for x in distances]
    n = len(d)
    accepted = sum(1 for x in d if x <= threshold)
    median = float(np.median(d)) if d else None
    decided = n >= max(1, min_frames)
    return IdentityVote(
        match=decided and accepted * 2 > n,
        distance=median,
        frames_used=n,
        frames_accepted=accepted,
        decided=decided,
    )
