"""The liveness judge on synthetic landmark series built from a real detected face."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vbranch.facecheck import (
    ACTIONS,
    Action,
    LandmarkSample,
    LivenessConfig,
    draw_challenges,
    judge_challenge,
    judge_liveness,
)
from vbranch.facecheck import geometry as g
from vbranch.facecheck.testing import posed_landmarks

from .helpers import action_series, affine_about, photo_series


# ----------------------------------------------------------------- geometry
def test_real_landmarks_look_like_a_face(astro_landmarks):
    lm = astro_landmarks
    assert 0.2 < g.eye_aspect_ratio(lm) < 0.45
    assert abs(g.yaw_index(lm)) < 0.15  # frontal
    assert lm[16, 0] > lm[0, 0]  # point 16 on the image's right


def test_measures_ignore_affine_moves_of_a_photo(astro_landmarks):
    lm = astro_landmarks
    unit = g.interocular(lm)
    moved = affine_about(lm, angle_deg=15, scale=0.8, sx=0.7, sy=0.6, shear=0.15, tx=40, ty=-25)
    assert g.nonrigid_residual(moved, lm) < 1e-6
    assert g.yaw_index(moved) == pytest.approx(g.yaw_index(lm), abs=1e-6)
    aligned = g.align_to(moved, lm)
    assert g.eye_opening(aligned, unit) == pytest.approx(g.eye_opening(lm, unit), rel=1e-6)
    assert g.mouth_opening(aligned, unit) == pytest.approx(g.mouth_opening(lm, unit), rel=1e-6)
    # whereas the plain eye aspect ratio drops when a photo is tilted back: the classic blink fake
    tilted = affine_about(lm, sy=0.6)
    assert g.eye_aspect_ratio(tilted) < 0.75 * g.eye_aspect_ratio(lm)
    assert g.eye_opening(g.align_to(tilted, lm), unit) == pytest.approx(g.eye_opening(lm, unit), rel=1e-6)


def test_posed_landmarks_move_the_right_parts(astro_landmarks):
    lm = astro_landmarks
    unit = g.interocular(lm)
    assert g.eye_opening(posed_landmarks(lm, "blink"), unit) < 0.3 * g.eye_opening(lm, unit)
    assert g.mouth_opening(posed_landmarks(lm, "open_mouth"), unit) > g.mouth_opening(lm, unit) + 0.3
    assert g.yaw_index(posed_landmarks(lm, "turn_left")) > g.yaw_index(lm) + 0.3
    assert g.yaw_index(posed_landmarks(lm, "turn_right")) < g.yaw_index(lm) - 0.3


# ----------------------------------------------------------------- single challenges
@pytest.mark.parametrize("action", [a.value for a in ACTIONS])
def test_each_action_is_detected(action, astro_landmarks):
    samples = action_series(astro_landmarks, action, noise_px=0.5)
    out = judge_challenge(action, samples)
    assert out.passed, out
    assert out.reason == "detected"
    assert out.to_dict() == {"action": action, "passed": True, "reason": "detected"}


@pytest.mark.parametrize("action", [a.value for a in ACTIONS])
def test_no_action_fails(action, astro_landmarks):
    samples = action_series(astro_landmarks, None, noise_px=0.5)
    out = judge_challenge(action, samples)
    assert not out.passed
    assert out.reason in {"no_action", "static"}


@pytest.mark.parametrize("action", [a.value for a in ACTIONS])
def test_identical_frames_are_static(action, astro_landmarks):
    samples = action_series(astro_landmarks, None)
    out = judge_challenge(action, samples)
    assert (out.passed, out.reason) == (False, "static")
    assert out.metrics["motion"] == 0.0


@pytest.mark.parametrize("action", [a.value for a in ACTIONS])
def test_a_photo_moved_tilted_and_turned_fails(action, astro_landmarks):
    out = judge_challenge(action, photo_series(astro_landmarks))
    assert (out.passed, out.reason) == (False, "static")


@pytest.mark.parametrize("action", [a.value for a in ACTIONS])
def test_the_wrong_action_does_not_pass(action, astro_landmarks):
    others = {
        "blink": "open_mouth",
        "open_mouth": "blink",
        "turn_left": "blink",
        "turn_right": "open_mouth",
    }
    out = judge_challenge(action, action_series(astro_landmarks, others[action], noise_px=0.5))
    assert not out.passed
    assert out.reason == "no_action"


def test_turn_direction_is_the_customers_own(astro_landmarks):
    # the customer's own left moves the nose toward the image's right
    left = action_series(astro_landmarks, "turn_left", noise_px=0.5)
    assert judge_challenge("turn_left", left).passed
    out = judge_challenge("turn_right", left)
    assert (out.passed, out.reason) == (False, "wrong_direction")
    # a client that mirrors its image swaps the directions
    mirrored = LivenessConfig(mirrored=True)
    assert judge_challenge("turn_right", left, mirrored).passed
    assert not judge_challenge("turn_left", left, mirrored).passed


def test_small_motions_are_not_enough(astro_landmarks):
    for action in ACTIONS:
        samples = action_series(astro_landmarks, action.value, amount=0.25, noise_px=0.5)
        assert not judge_challenge(action, samples).passed, action


def test_coming_back_from_a_turn_is_not_the_opposite_turn(astro_landmarks):
    lm = astro_landmarks
    turned = posed_landmarks(lm, "turn_left")
    # the window starts with the head still turned left, then it comes back to the middle
    samples = [LandmarkSample(t=i / 6, landmarks=turned if i < 5 else lm) for i in range(12)]
    assert not judge_challenge("turn_right", samples, neutral=lm).passed
    # without the neutral pose the return alone would have looked like a turn to the right
    assert judge_challenge("turn_right", samples).passed


def test_missing_faces_and_frames():
    out = judge_challenge("blink", [])
    assert (out.passed, out.reason) == (False, "no_frames")
    out = judge_challenge("blink", [LandmarkSample(t=i, landmarks=None, faces=0) for i in range(10)])
    assert (out.passed, out.reason) == (False, "no_face")


def test_frames_without_a_face_are_skipped(astro_landmarks):
    samples = action_series(astro_landmarks, "open_mouth", n=16, start=7, noise_px=0.5)
    holes = [LandmarkSample(s.t, None, 0) if i % 3 == 1 else s for i, s in enumerate(samples)]
    assert judge_challenge("open_mouth", holes).passed


# ----------------------------------------------------------------- sequences
def test_sequence_with_blink_turn_and_open_mouth_passes(astro_landmarks):
    lm = astro_landmarks
    windows = [
        ("blink", action_series(lm, "blink", noise_px=0.5, seed=1)),
        ("turn_left", action_series(lm, "turn_left", noise_px=0.5, seed=2)),
        ("open_mouth", action_series(lm, "open_mouth", noise_px=0.5, seed=3)),
    ]
    result = judge_liveness(windows)
    assert result.passed
    assert [c.passed for c in result.challenges] == [True, True, True]
    assert result.motion > LivenessConfig().static_motion


def test_sequence_without_the_actions_fails(astro_landmarks):
    lm = astro_landmarks
    windows = [
        ("blink", action_series(lm, None, noise_px=0.5, seed=1)),
        ("turn_left", action_series(lm, "turn_right", noise_px=0.5, seed=2)),  # the other way
        ("open_mouth", action_series(lm, None, noise_px=0.5, seed=3)),
    ]
    result = judge_liveness(windows)
    assert not result.passed
    assert [c.passed for c in result.challenges] == [False, False, False]
    assert result.challenges[1].reason == "wrong_direction"


def test_one_missed_action_fails_the_sequence(astro_landmarks):
    lm = astro_landmarks
    result = judge_liveness([("blink", action_series(lm, "blink")), ("open_mouth", action_series(lm, None, noise_px=0.5))])
    assert not result.passed
    assert [c.passed for c in result.challenges] == [True, False]


# ----------------------------------------------------------------- challenge draw
def test_draw_challenges_is_random_but_injectable():
    a = draw_challenges(2, random.Random(7))
    assert a == draw_challenges(2, random.Random(7))
    assert len(set(a)) == 2 and set(a) <= set(ACTIONS)
    seen = {tuple(draw_challenges(2, random.Random(seed))) for seed in range(200)}
    assert len(seen) == 12  # every ordered pair of distinct actions turns up
    assert all(isinstance(x, Action) for x in draw_challenges())  # OS randomness by default
    with pytest.raises(ValueError):
        draw_challenges(5)


def test_action_values_are_the_wire_names():
    assert [a.value for a in ACTIONS] == ["blink", "turn_left", "turn_right", "open_mouth"]
    assert Action("turn_left") is Action.TURN_LEFT
    assert np.isclose(LivenessConfig().turn_delta, 0.25)
