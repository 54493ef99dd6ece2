"""Liveness: the challenge sequence and a pure judge over landmark time series.

No I/O, no models: the judge sees only timestamped 68-point landmark sets (or
None when no face was found in a frame) for the window of one challenge.

How each action is judged, against a baseline = the per-point median of the
window's first ``baseline_samples`` face samples (taken while the customer is
still reading the prompt):

- blink: each later frame is mapped onto the baseline with an affine fit on
  points that do not move with the eyes or mouth (geometry.STABLE), then the
  mean eyelid gap is measured; it must dip to ``blink_ratio`` of the baseline's.
- open_mouth: same alignment; the mean inner-lip gap must grow by
  ``mouth_open_delta`` interocular distances and the inner-lip aspect ratio
  must reach ``mouth_open_ratio``.
- turn_left / turn_right: the yaw index (where the nose tip sits between the two
  sides of the jaw outline, geometry.yaw_index) must move ``turn_delta`` in the
  right direction.  *Left is the customer's own left.*  The server does not
  mirror the camera image, so turning to one's own left moves the nose toward
  the right-hand side of the image (toward jaw point 16): the yaw index rises.
  With ``LivenessConfig.mirrored`` the directions swap.  When a ``neutral``
  landmark set is given (the first window's baseline), the turned pose must
  also be at least half ``turn_delta`` away from it, so coming back from a
  previous turn does not count as the opposite turn.

Every measure is unchanged by an affine map of the whole face, which is all a
flat photo can do when it is moved, tilted or turned in front of the camera, so
a photo cannot fake an action.  ``motion`` (the largest non-rigid residual
after an affine fit, in interocular units) tells a photo or a frozen video
apart from a live face that merely did not act: below ``static_motion`` the
reason is "static" rather than "no_action".
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

import numpy as np

from . import geometry as g
from .types import ACTIONS, Action, ChallengeOutcome, LandmarkSample, LivenessConfig, LivenessResult

DETECTED = "detected"


def draw_challenges(n: int = 2, rng: random.Random | None = None, actions: Sequence[Action] = ACTIONS) -> list[Action]:
    """``n`` distinct actions in random order.  The default source is the OS's
    (secrets.SystemRandom), so a replayed video cannot anticipate the sequence;
    tests pass a seeded random.Random."""
    rng = rng or secrets.SystemRandom()
    pool = list(actions)
    if not 1 <= n <= len(pool):
        raise ValueError(f"between 1 and {len(pool)} challenges")
    return rng.sample(pool, n)


def baseline_of(samples: Sequence[LandmarkSample], count: int) -> np.ndarray | None:
    faces = [g.as_landmarks(s.landmarks) for s in samples if s.landmarks is not None][:count]
    if not faces:
        return None
    return g.median_landmarks(faces)


def motion_of(samples: Sequence[LandmarkSample], reference: np.ndarray | None = None) -> float:
    """Largest non-rigid landmark motion over the samples (interocular units)."""
    faces = [g.as_landmarks(s.landmarks) for s in samples if s.landmarks is not None]
    if len(faces) < 2:
        return 0.0
    ref = reference if reference is not None else faces[0]
    return max(g.nonrigid_residual(lm, ref) for lm in faces)


def _turn_sign(action: Action, mirrored: bool) -> float:
    sign = 1.0 if action is Action.TURN_LEFT else -1.0
    return -sign if mirrored else sign


def judge_challenge(
    action: Action | str,
    samples: Sequence[LandmarkSample],
    config: LivenessConfig = LivenessConfig(),
    neutral: np.ndarray | None = None,
) -> ChallengeOutcome:
    """Decide whether ``action`` happened in one challenge window.

    ``samples`` are in time order.  Returns a ChallengeOutcome whose reason is
    "detected" when passed, else one of: no_frames (nothing sampled), no_face
    (too few frames with a face), static (no action and near-zero landmark
    motion: a photo or a frozen video), wrong_direction (a turn the other way),
    no_action.
    """
    action = Action(action)
    cfg = config
    faces = [s for s in samples if s.landmarks is not None]
    out = ChallengeOutcome(action=action.value, passed=False, reason="no_frames", samples=len(samples))
    if not samples:
        return out
    if len(faces) < max(cfg.min_samples, cfg.baseline_samples + 1):
        out.reason = "no_face"
        return out

    base = baseline_of(faces, cfg.baseline_samples)
    assert base is not None
    unit = g.interocular(base)
    later = [g.as_landmarks(s.landmarks) for s in faces[cfg.baseline_samples:]]
    motion = motion_of(faces, base)
    out.metrics["motion"] = round(motion, 4)
    if unit <= 1e-6:
        out.reason = "no_face"
        return out

    passed = False
    wrong = False
    if action is Action.BLINK:
        ref = g.eye_opening(base, unit)
        values = [g.eye_opening(g.align_to(lm, base), unit) for lm in later]
        low = min(values)
        out.metrics.update(baseline=round(ref, 4), extreme=round(low, 4))
        passed = ref > 0.02 and low <= cfg.blink_ratio * ref
    elif action is Action.OPEN_MOUTH:
        ref = g.mouth_opening(base, unit)
        best = 0.0
        best_mar = 0.0
        for lm in later:
            gap = g.mouth_opening(g.align_to(lm, base), unit)
            mar = g.mouth_aspect_ratio(lm)
            if gap - ref >= cfg.mouth_open_delta and mar >= cfg.mouth_open_ratio:
                passed = True
            if gap > best:
                best, best_mar = gap, mar
        out.metrics.update(baseline=round(ref, 4), extreme=round(best, 4), mar=round(best_mar, 4))
    else:
        sign = _turn_sign(action, cfg.mirrored)
        ref = g.yaw_index(base)
        ref_neutral = g.yaw_index(g.as_landmarks(neutral)) if neutral is not None else ref
        deltas = []
        for lm in later:
            y = g.yaw_index(lm)
            d = sign * (y - ref)
            deltas.append(d)
            if d >= cfg.turn_delta and sign * (y - ref_neutral) >= cfg.turn_delta / 2:
                passed = True
        best = max(deltas)
        worst = min(deltas)
        out.metrics.update(baseline=round(ref, 4), extreme=round(best, 4), opposite=round(-worst, 4))
        wrong = not passed and -worst >= cfg.turn_delta

    if passed:
        out.passed, out.reason = True, DETECTED
    elif motion < cfg.static_motion:
        out.reason = "static"
    elif wrong:
        out.reason = "wrong_direction"
    else:
        out.reason = "no_action"
    return out


def judge_liveness(
    windows: Sequence[tuple[Action | str, Sequence[LandmarkSample]]],
    config: LivenessConfig = LivenessConfig(),
) -> LivenessResult:
    """Judge a whole sequence of challenge windows (the pure equivalent of what
    the runner does step by step).  The first window's baseline is the neutral
    pose for later turns.  Passed when every challenge passed."""
    outcomes = []
    neutral = None
    all_faces: list[LandmarkSample] = []
    for action, samples in windows:
        outcome = judge_challenge(action, samples, config, neutral)
        outcomes.append(outcome)
        if neutral is None:
            neutral = baseline_of(samples, config.baseline_samples)
        all_faces.extend(samples)
    motion = motion_of(all_faces, baseline_of(all_faces, config.baseline_samples))
    passed = bool(outcomes) and all(o.passed for o in outcomes)
    return LivenessResult(passed=passed, challenges=outcomes, motion=round(motion, 4))
