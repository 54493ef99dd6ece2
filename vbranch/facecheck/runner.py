"""FaceCheckSession: drives one whole face check on the event loop.

All pixel work goes to the worker pool (pool.FaceCheckPool or anything with the
same ``analyse_frame`` coroutine); the loop itself only downscales the frame it
samples (about a millisecond) and runs the pure judges.

Frames: ``frames`` is any async iterable of numpy BGR arrays or av.VideoFrame
objects (the media hub's tap).  A reader task consumes it at whatever rate it
produces, keeping only the newest frame; the runner samples that newest frame
at ``liveness_fps`` (``blink_fps`` in a blink window), encoding at most
``identity_fps`` of them for identity.  Frames are never stored: each sampled
frame is dropped as soon as it is downscaled and sent to a worker, and only
landmarks and encodings are kept until the result is built.  When the check
ends the reader task is cancelled and, with ``close_frames``, the iterable's
``aclose()`` is awaited (an async generator's ``finally`` runs there).

Challenges: for each action the runner awaits ``send_challenge(action,
timeout_s)`` (action is the wire string, e.g. "turn_left"), then watches for up
to ``timeout_s`` seconds measured on the event loop's monotonic clock, ending
the window early as soon as the action is seen.  Exceptions from
``send_challenge`` propagate (e.g. the customer left): the check is then
abandoned, as it is when the task running ``run()`` is cancelled.

The injected ``clock`` only stamps the result and the landmark samples
(wall-clock); waiting uses the event loop's time, so tests with a FakeClock
still see real (short) timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..clock import Clock, SystemClock
from .frames import to_small_bgr
from .identity import face_distance, vote_identity
from .liveness import baseline_of, draw_challenges, judge_challenge, motion_of
from .types import (
    Action,
    ChallengeOutcome,
    FaceCheckConfig,
    FaceCheckResult,
    FrameAnalysis,
    LandmarkSample,
    LivenessResult,
    ReferenceFace,
)

log = logging.getLogger(__name__)

ChallengeSender = Callable[[str, float], Awaitable[Any]]
ChallengeDone = Callable[[ChallengeOutcome], Awaitable[Any]]


class FrameAnalyser(Protocol):
    async def analyse_frame(
        self, frame_bgr: np.ndarray, *, want_encoding: bool = False, config: FaceCheckConfig | None = None
    ) -> FrameAnalysis: ...


class _EngineError(Exception):
    pass


class FaceCheckSession:
    """One face check.  ``result = await FaceCheckSession(...).run()``.

    - ``analyser``: a FaceCheckPool (or a test double with ``analyse_frame``);
    - ``reference``: a ReferenceFace or its 128 encoding values;
    - ``frames``: async iterable of BGR numpy frames or av.VideoFrame;
    - ``send_challenge``: ``async (action: str, timeout_s: float)``;
    - ``actions``: fixed challenge sequence (default: ``config.challenges`` drawn
      at random with ``rng``, OS randomness unless a random.Random is given);
    - ``on_challenge_done``: optional ``async (ChallengeOutcome)``, e.g. to tell
      the customer's page that a step is over.
    """

    def __init__(
        self,
        analyser: FrameAnalyser,
        reference: ReferenceFace | Sequence[float] | np.ndarray,
        frames: AsyncIterable[Any],
        send_challenge: ChallengeSender,
        *,
        clock: Clock | None = None,
        config: FaceCheckConfig | None = None,
        rng: random.Random | None = None,
        actions: Sequence[Action | str] | None = None,
        on_challenge_done: ChallengeDone | None = None,
        close_frames: bool = True,
    ) -> None:
        enc = reference.encoding if isinstance(reference, ReferenceFace) else reference
        self.reference = np.asarray(enc, dtype=np.float64).reshape(-1)
        if self.reference.shape != (128,):
            raise ValueError("the reference encoding must have 128 values")
        self.analyser = analyser
        self.frames = frames
        self.send_challenge = send_challenge
        self.clock = clock or SystemClock()
        self.config = config or FaceCheckConfig()
        self.actions = (
            [Action(a) for a in actions] if actions is not None else draw_challenges(self.config.challenges, rng)
        )
        self.on_challenge_done = on_challenge_done
        self.close_frames = close_frames

        # frame slot (newest frame only)
        self._latest: Any = None
        self._seq = 0
        self._taken = 0
        self._ended = False
        self._stalled = False
        self._new = asyncio.Event()
        self._last_arrival = 0.0
        self._reader_error: BaseException | None = None
        # what is kept: numbers, never pixels
        self._distances: list[float] = []
        self._last_encoded = float("-inf")
        self._samples: list[LandmarkSample] = []
        self.frames_sampled = 0
        self.face_frames = 0
        self.multiple_face_frames = 0
        self._engine_error: str | None = None

    # ------------------------------------------------------------------ frames
    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in self.frames:
                self._latest = frame
                self._seq += 1
                self._last_arrival = loop.time()
                self._new.set()
        except Exception as exc:  # the tap broke: treat as the end of the video
            log.warning("face check frame source failed: %r", exc)
            self._reader_error = exc
        # reached when the source ended or failed, not when the check cancels the reader
        self._ended = True
        self._new.set()

    async def _next_frame(self, deadline: float) -> Any | None:
        """The newest frame not sampled yet, or None at the deadline / when the video stalls or ends."""
        loop = asyncio.get_running_loop()
        timeout = self.config.frame_timeout_s
        while True:
            if self._seq > self._taken:
                self._taken = self._seq
                frame, self._latest = self._latest, None
                return frame
            if self._ended:
                return None
            now = loop.time()
            stall_at = self._last_arrival + timeout
            until = min(deadline, stall_at)
            if now >= until:
                if now >= stall_at:
                    self._stalled = True
                return None
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), until - now)
            except asyncio.TimeoutError:
                pass

    @property
    def _video_gone(self) -> bool:
        return self._stalled or (self._ended and self._seq == self._taken)

    # ------------------------------------------------------------------ analysis
    def _identity_due(self) -> bool:
        cfg = self.config
        if len(self._distances) >= cfg.identity_frames:
            return False
        return asyncio.get_running_loop().time() - self._last_encoded >= 1.0 / cfg.identity_fps

    async def _analyse(self, frame: Any, want_encoding: bool) -> FrameAnalysis:
        cfg = self.config
        small = to_small_bgr(frame, cfg.frame_width)
        del frame
        try:
            res = await self.analyser.analyse_frame(small, want_encoding=want_encoding, config=cfg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("face check analysis failed")
            self._engine_error = f"{type(exc).__name__}: {exc}"
            raise _EngineError from exc
        self.frames_sampled += 1
        if res.has_face:
            self.face_frames += 1
        if res.faces > 1:
            self.multiple_face_frames += 1
        elif res.encoding is not None:
            self._distances.append(face_distance(self.reference, res.encoding))
            self._last_encoded = asyncio.get_running_loop().time()
        return res

    # ------------------------------------------------------------------ steps
    async def _challenge(self, action: Action, neutral: np.ndarray | None) -> tuple[ChallengeOutcome, list[LandmarkSample]]:
        cfg = self.config
        lcfg = cfg.liveness
        loop = asyncio.get_running_loop()
        timeout_s = cfg.challenge_timeout_s
        await self.send_challenge(action.value, timeout_s)
        start = loop.time()
        deadline = start + timeout_s
        fps = cfg.blink_fps if action is Action.BLINK else cfg.liveness_fps
        interval = 1.0 / fps
        samples: list[LandmarkSample] = []
        next_at = start
        outcome: ChallengeOutcome | None = None
        while True:
            now = loop.time()
            if now >= deadline:
                break
            if now < next_at:
                await asyncio.sleep(min(next_at, deadline) - now)
                continue
            frame = await self._next_frame(deadline)
            if frame is None:
                break
            taken = loop.time()
            t = self.clock.now()
            next_at = taken + interval
            res = await self._analyse(frame, self._identity_due())
            samples.append(LandmarkSample(t=t, landmarks=res.landmarks, faces=res.faces))
            if res.has_face and len(samples) > lcfg.baseline_samples:
                outcome = judge_challenge(action, samples, lcfg, neutral)
                if outcome.passed:
                    break
        if outcome is None or not outcome.passed:
            outcome = judge_challenge(action, samples, lcfg, neutral)
        outcome.timeout_s = timeout_s
        self._samples.extend(samples)
        return outcome, samples

    async def _collect_identity(self) -> None:
        """After the challenges: encode more frames until identity_min_frames are in."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.identity_extra_s
        interval = 1.0 / cfg.identity_fps
        while len(self._distances) < cfg.identity_min_frames and loop.time() < deadline and not self._video_gone:
            frame = await self._next_frame(deadline)
            if frame is None:
                break
            taken = loop.time()
            await self._analyse(frame, True)
            wait = taken + interval / 2 - loop.time()  # frames a quarter second apart at 2 fps
            if wait > 0 and len(self._distances) < cfg.identity_min_frames:
                await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))

    # ------------------------------------------------------------------ run
    async def run(self) -> FaceCheckResult:
        cfg = self.config
        loop = asyncio.get_running_loop()
        started_at = self.clock.now()
        self._last_arrival = loop.time()
        reader = asyncio.create_task(self._read(), name="facecheck-frames")
        outcomes: list[ChallengeOutcome] = []
        neutral: np.ndarray | None = None
        try:
            try:
                for action in self.actions:
                    if self._video_gone:
                        outcomes.append(ChallengeOutcome(action.value, False, "no_frames", cfg.challenge_timeout_s))
                        continue
                    outcome, samples = await self._challenge(action, neutral)
                    outcomes.append(outcome)
                    if neutral is None:
                        neutral = baseline_of(samples, cfg.liveness.baseline_samples)
                    if self.on_challenge_done is not None:
                        await self.on_challenge_done(outcome)
                await self._collect_identity()
            except _EngineError:
                pass
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass
            self._latest = None
            if self.close_frames:
                aclose = getattr(self.frames, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # pragma: no cover - a misbehaving source
                        log.debug("closing the frame source failed", exc_info=True)
        for action in self.actions[len(outcomes):]:  # not reached (engine error)
            outcomes.append(ChallengeOutcome(action.value, False, "not_run", cfg.challenge_timeout_s))
        return self._result(outcomes, started_at)

    def _result(self, outcomes: list[ChallengeOutcome], started_at: float) -> FaceCheckResult:
        cfg = self.config
        lcfg = cfg.liveness
        vote = vote_identity(self._distances, cfg.threshold, cfg.identity_min_frames)
        faces = [s for s in self._samples if s.landmarks is not None]
        motion = motion_of(faces, baseline_of(faces, lcfg.baseline_samples))
        liveness = LivenessResult(
            passed=bool(outcomes) and all(o.passed for o in outcomes),
            challenges=outcomes,
            motion=round(motion, 4),
        )
        reasons: list[str] = []
        if not vote.decided:
            reasons.append("insufficient_frames" if self.face_frames else "no_face")
        elif not vote.match:
            reasons.append("mismatch")
        if self.multiple_face_frames:
            reasons.append("multiple_faces")
        if not liveness.passed:
            reasons.append("liveness_failed")
            if len(faces) >= lcfg.min_samples and motion < lcfg.static_motion:
                reasons.append("static_image")
        if self._stalled or self._reader_error is not None or (self._ended and not liveness.passed):
            reasons.append("timeout")
        if self._engine_error is not None:
            reasons.append("engine_error")
        return FaceCheckResult(
            match=vote.match,
            distance=vote.distance,
            threshold=cfg.threshold,
            frames_used=vote.frames_used,
            multiple_faces_seen=self.multiple_face_frames > 0,
            liveness=liveness,
            reasons=reasons,
            started_at=started_at,
            finished_at=self.clock.now(),
            frames_sampled=self.frames_sampled,
        )


async def run_face_check(
    analyser: FrameAnalyser,
    reference: ReferenceFace | Sequence[float] | np.ndarray,
    frames: AsyncIterable[Any],
    send_challenge: ChallengeSender,
    **kwargs: Any,
) -> FaceCheckResult:
    """Shorthand for ``await FaceCheckSession(...).run()`` (same keyword arguments)."""
    return await FaceCheckSession(analyser, reference, frames, send_challenge, **kwargs).run()
