"""The asyncio runner end to end, with the real worker pool."""

from __future__ import annotations

import asyncio
import json
import random

import av
import numpy as np
import pytest

from vbranch.clock import FakeClock
from vbranch.facecheck import (
    ChallengeOutcome,
    FaceCheckConfig,
    FaceCheckSession,
    FrameAnalysis,
    LivenessConfig,
    run_face_check,
)
from vbranch.facecheck.testing import PuppetCamera, face_frame

FAST = FaceCheckConfig(challenge_timeout_s=1.5, identity_extra_s=2.0, frame_timeout_s=1.0)


async def still(frame, fps: float = 15.0, seconds: float = 30.0, closed: list | None = None):
    """A static video: the same frame over and over."""
    try:
        for _ in range(int(fps * seconds)):
            yield frame
            await asyncio.sleep(1 / fps)
    finally:
        if closed is not None:
            closed.append(True)


class Challenges:
    def __init__(self):
        self.sent: list[tuple[str, float]] = []

    async def __call__(self, action: str, timeout_s: float) -> None:
        self.sent.append((action, timeout_s))


async def test_still_image_matches_but_fails_liveness(pool, astro_frame_bgr, astro_ref):
    send = Challenges()
    closed: list = []
    clock = FakeClock()
    session = FaceCheckSession(
        pool, astro_ref, still(astro_frame_bgr, closed=closed), send, clock=clock, config=FAST, rng=random.Random(1)
    )
    result = await session.run()

    assert result.match is True
    assert result.distance is not None and result.distance < result.threshold == 0.5
    assert result.frames_used >= FAST.identity_min_frames
    assert result.multiple_faces_seen is False
    assert result.liveness.passed is False
    assert [c.reason for c in result.liveness.challenges] == ["static", "static"]
    assert "liveness_failed" in result.reasons and "static_image" in result.reasons
    assert "mismatch" not in result.reasons and "timeout" not in result.reasons
    assert not result.passed
    # the challenges went out one after the other, as wire strings, with their timeout
    assert [a for a, _ in send.sent] == [c.action for c in result.liveness.challenges]
    assert all(t == FAST.challenge_timeout_s for _, t in send.sent)
    assert len({a for a, _ in send.sent}) == 2
    assert result.started_at == result.finished_at == clock.now()
    assert closed == [True]  # the frame source was closed when the check ended
    assert session._latest is None  # no frame kept
    json.dumps(result.to_dict())


async def test_a_live_face_doing_the_challenges_passes(pool, puppet, astro_ref):
    cam = PuppetCamera(puppet, fps=15, jitter=1.5, react_after_s=0.7)
    done: list[ChallengeOutcome] = []

    async def on_done(outcome):
        done.append(outcome)

    result = await run_face_check(
        pool, astro_ref, cam.frames(), cam.send_challenge,
        config=FaceCheckConfig(challenge_timeout_s=4.0), rng=random.Random(5), on_challenge_done=on_done,
    )
    assert result.liveness.passed, result.liveness
    assert result.match and result.passed and result.reasons == []
    assert [c.action for c in done] == [a for a, _ in cam.sent]
    assert all(c.reason == "detected" for c in result.liveness.challenges)


@pytest.mark.parametrize("actions", [("turn_left", "turn_right"), ("blink", "open_mouth")])
async def test_fixed_sequences_pass(pool, puppet, astro_ref, actions):
    cam = PuppetCamera(puppet, fps=15, jitter=1.5, react_after_s=0.7)
    result = await run_face_check(
        pool, astro_ref, cam.frames(), cam.send_challenge, config=FaceCheckConfig(challenge_timeout_s=4.0), actions=actions
    )
    assert [c.action for c in result.liveness.challenges] == list(actions)
    assert result.passed, result


async def test_doing_something_else_fails(pool, puppet, astro_ref):
    wrong = {"blink": "open_mouth", "open_mouth": "blink", "turn_left": "turn_right", "turn_right": "turn_left"}
    cam = PuppetCamera(puppet, fps=15, jitter=1.5, react_after_s=0.7, perform=lambda action: wrong[action])
    result = await run_face_check(
        pool, astro_ref, cam.frames(), cam.send_challenge, config=FAST, actions=("turn_left", "blink")
    )
    assert result.match
    assert not result.liveness.passed
    assert [c.reason for c in result.liveness.challenges] == ["wrong_direction", "no_action"]
    assert result.reasons == ["liveness_failed"]


async def test_another_person_is_a_mismatch(pool, hopper, astro_ref):
    frame = face_frame(hopper, (137, 377, 353, 161), face_fraction=0.35)
    result = await run_face_check(pool, astro_ref, still(frame), Challenges(), config=FAST)
    assert result.match is False
    assert result.distance > 0.5
    assert "mismatch" in result.reasons and "liveness_failed" in result.reasons


async def test_av_video_frames_are_accepted(pool, astro_frame_bgr, astro_ref):
    frame = av.VideoFrame.from_ndarray(astro_frame_bgr, format="bgr24").reformat(format="yuv420p")
    result = await run_face_check(pool, astro_ref, still(frame), Challenges(), config=FAST)
    assert result.match and result.frames_used >= 3


async def test_no_face_in_the_video(pool, astro_ref):
    blank = np.full((480, 640, 3), 120, np.uint8)
    result = await run_face_check(pool, astro_ref, still(blank), Challenges(), config=FAST)
    assert result.match is False and result.distance is None and result.frames_used == 0
    assert "no_face" in result.reasons and "liveness_failed" in result.reasons
    assert [c.reason for c in result.liveness.challenges] == ["no_face", "no_face"]


async def test_two_people_in_the_video(pool, astro, hopper, astro_ref):
    left = face_frame(astro, (83, 267, 171, 179), size=(320, 480), face_fraction=0.6)
    right = face_frame(hopper, (137, 377, 353, 161), size=(320, 480), face_fraction=0.6)
    frame = np.hstack([left, right])
    result = await run_face_check(pool, astro_ref, still(frame), Challenges(), config=FAST)
    assert result.multiple_faces_seen
    assert "multiple_faces" in result.reasons
    assert not result.passed


async def test_video_that_ends_early(pool, astro_frame_bgr, astro_ref):
    async def three_frames():
        for _ in range(3):
            yield astro_frame_bgr
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await run_face_check(pool, astro_ref, three_frames(), Challenges(), config=FAST)
    assert loop.time() - t0 < 2 * FAST.challenge_timeout_s  # does not sit out the timeouts
    assert "timeout" in result.reasons
    assert not result.liveness.passed
    assert result.liveness.challenges[-1].reason == "no_frames"


async def test_video_that_stalls(pool, astro_frame_bgr, astro_ref):
    closed: list = []

    async def stalls():
        try:
            yield astro_frame_bgr
            yield astro_frame_bgr
            await asyncio.sleep(3600)
        finally:
            closed.append(True)

    result = await run_face_check(
        pool, astro_ref, stalls(), Challenges(), config=FaceCheckConfig(challenge_timeout_s=5.0, frame_timeout_s=0.5)
    )
    assert "timeout" in result.reasons
    assert closed == [True]


async def test_engine_failure_is_reported(astro_frame_bgr, astro_ref):
    class Broken:
        async def analyse_frame(self, frame, *, want_encoding=False, config=None) -> FrameAnalysis:
            raise RuntimeError("worker gone")

    result = await run_face_check(Broken(), astro_ref, still(astro_frame_bgr), Challenges(), config=FAST)
    assert "engine_error" in result.reasons
    assert not result.match and not result.liveness.passed
    assert [c.reason for c in result.liveness.challenges][-1] in {"not_run", "no_frames"}


async def test_frames_reach_the_worker_downscaled(astro_frame_bgr, astro_ref):
    seen: list[tuple[int, ...]] = []

    class Recorder:
        async def analyse_frame(self, frame, *, want_encoding=False, config=None) -> FrameAnalysis:
            seen.append(frame.shape)
            return FrameAnalysis(0, None, None, None, None, (frame.shape[1], frame.shape[0]))

    big = np.zeros((720, 1280, 3), np.uint8)
    cfg = FaceCheckConfig(challenge_timeout_s=0.5, identity_extra_s=0.2, frame_width=480)
    await run_face_check(Recorder(), astro_ref, still(big), Challenges(), config=cfg, actions=["blink"])
    assert seen and set(seen) == {(270, 480, 3)}


async def test_reference_must_be_an_encoding(pool, astro_frame_bgr):
    with pytest.raises(ValueError):
        FaceCheckSession(pool, [0.0] * 10, still(astro_frame_bgr), Challenges())


async def test_pool_validates_reference_photos(pool, astro):
    from vbranch.facecheck import ReferencePhotoError
    from vbranch.facecheck.testing import encode_jpeg

    ref = await pool.analyse_reference(encode_jpeg(astro))
    assert ref.encoding.shape == (128,)
    with pytest.raises(ReferencePhotoError) as info:
        await pool.analyse_reference(b"garbage bytes, not a photo")
    assert info.value.code == "unreadable"


def test_liveness_config_reaches_the_judge():
    cfg = FaceCheckConfig(liveness=LivenessConfig(mirrored=True))
    assert cfg.to_dict()["liveness"]["mirrored"] is True
