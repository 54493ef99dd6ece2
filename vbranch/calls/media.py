"""A call's media and face check: WebRTC negotiation through the media hub, recordings, face checks.

The coordinator decides who may do what; this module carries it out against
the media hub (vbranch/media) and the face-check worker pool (vbranch/facecheck).

Media health is evidence: each party's media state goes on the timeline and,
as ``media.state``, to both parties as it changes; when the call ends the
recordings are checked against the call (vbranch.domain.media_coverage) and a
session they do not cover carries ``evidence_issues`` (``evidence_incomplete``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recordings.playback import ensure_playable, needs_copy
from recordings.writer import probe
from signaling.bus import MessageBus
from signaling.protocol import server_message
from signaling.registry import customer_party, staff_party
from vbranch.db.models import FaceCheck, Recording
from vbranch.db.repositories import Sessions, Timeline
from vbranch.domain.errors import Conflict, Invalid
from vbranch.domain.media_coverage import (
    CoverageRules,
    PartyMedia,
    RecordingSpan,
    coverage_issues,
)
from vbranch.domain.session_state import SessionState
from vbranch.facecheck import FaceCheckSession, ReferencePhotoError
from vbranch.media.hub import MediaError, MediaHub, RestartUnavailable
from vbranch.media.recorder import RecordingResult
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaEnded:
    """What a call's end stored, and the face checks this process ran for it."""

    recordings: list[Recording]
    face_checks: list[FaceCheck]
    whole_call: bool  # this process ran the call from its start: these are all its segments and checks


class CallMedia:
    def __init__(self, rt: Runtime, bus: MessageBus, sessions: SessionService, hub: MediaHub) -> None:
        """`hub` is built in vbranch.bootstrap, which also sends its events to :meth:`media_event`."""
        self.rt = rt
        self.bus = bus
        self.sessions = sessions
        settings = rt.settings
        self.storage = rt.storage
        self.hub = hub
        self.rules = CoverageRules(max_gap_s=settings.evidence_max_gap_s,
                                   start_grace_s=settings.evidence_start_grace_s)
        self._agents: dict[str, str] = {}  # session id -> the agent's party, while the call runs
        self._started: dict[str, float] = {}  # session id -> when its call connected
        self._journaling: dict[str, set[asyncio.Task]] = {}  # media events on their way to the journal
        self._checks: dict[str, asyncio.Task] = {}
        self._face_checks: dict[str, list[FaceCheck]] = {}  # the checks of a call that started here
        self.on_face_check: Callable[[str, bool], None] | None = None  # the call hears whether it passed
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        """Shutdown: every running call's recordings are finalised and stored as segments (the calls go
        on after a restart, in new segments), then the hub stops."""
        for task in list(self._checks.values()):
            task.cancel()
        for session_id in self.hub.sessions():
            try:
                stats = self.hub.stats(session_id)
                results = await self.hub.end_session(session_id)
                await self._journaled(session_id)
                await self._store(session_id, results, stats)
            except Exception:  # the others are still stored
                log.exception("storing the recordings of %s at shutdown failed", session_id)
        await self.hub.close()
        for session_id in list(self._journaling):
            await self._journaled(session_id)

    # -- negotiation -----------------------------------------------------
    def call_started(self, session_id: str, agent_id: int, started_at: float) -> None:
        """A call has connected: its media is watched from now (a party that never connects is flagged)."""
        self._agents[session_id] = staff_party(agent_id)
        self._started[session_id] = started_at
        self._face_checks[session_id] = []
        self.hub.open_session(session_id, started_at=started_at)

    async def offer(self, session_id: str, party: str, sdp: str, *,
                    ice_restart: bool = False) -> tuple[str, list[dict[str, Any]]]:
        """The hub's answer and its own candidates; Invalid ``invalid_sdp`` for an offer it refuses,
        ``ice_restart_unavailable`` for a restart it cannot apply (the client makes a new connection)."""
        try:
            answer = await self.hub.handle_offer(session_id, party, sdp, ice_restart=ice_restart)
            return answer, self.hub.local_candidates(session_id, party)
        except RestartUnavailable as exc:
            raise Invalid("ice_restart_unavailable", f"ICE cannot be restarted: {exc}"[:300]) from None
        except (MediaError, ValueError) as exc:
            raise Invalid("invalid_sdp", f"the SDP offer was refused: {exc}"[:300]) from None

    async def ice(self, session_id: str, party: str, candidate: dict[str, Any] | None) -> str:
        """What became of a trickled candidate: added, queued, end or ignored:<why>."""
        try:
            return await self.hub.add_ice(session_id, party, candidate)
        except (MediaError, ValueError) as exc:
            raise Invalid("invalid_candidate", f"the ICE candidate was refused: {exc}"[:300]) from None

    _STATES = {"media.party_connected": "connected", "media.party_disconnected": "lost",
               "media.party_stalled": "stalled", "media.party_resumed": "connected",
               "media.party_not_connected": "not_connected"}

    def media_event(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "media.keyframe_requested":  # a metric, and a count per recording, not a timeline row
            self.rt.metrics.keyframe_requests.labels(data.get("reason", "")).inc()
            return
        # journaled in order; end() waits for these before the recordings are judged and sealed
        self._spawn(self.sessions.record(session_id, kind, "media", data), session_id)
        state = self._STATES.get(kind)
        if state is None or data.get("reason") == "ended":
            return
        # both parties see the truth about each other's media (no "connected" on a black screen)
        msg = server_message("media.state", session_id=session_id, party=data.get("party"), state=state,
                             reason=data.get("reason"), offset_s=data.get("offset_s"))
        self._spawn(self.bus.publish(customer_party(session_id), msg))
        agent = self._agents.get(session_id)
        if agent is not None:
            self._spawn(self.bus.publish(agent, msg))

    def _spawn(self, awaitable: Any, session_id: str | None = None) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if session_id is not None:
            pending = self._journaling.setdefault(session_id, set())
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _journaled(self, session_id: str) -> None:
        """Every media event of the session so far is in the journal."""
        pending = self._journaling.pop(session_id, set())
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("a media event of %s was not journaled: %r", session_id, result)

    # -- evidence of the media ---------------------------------------------
    async def coverage(self, session_id: str, started_at: float) -> list[dict[str, Any]]:
        """What the recordings miss of the call so far (a running recording counts up to now)."""
        now = self.rt.clock.now()
        stats = self.hub.stats(session_id) if session_id in self.hub.sessions() else {}
        live = {}
        for party, st in stats.items():
            rec = st.get("recording") or {}
            if rec.get("started_at") is not None:
                live[party] = [RecordingSpan(rec["started_at"], now - rec["started_at"],
                                             has_video=bool(rec.get("video_codec")))]
        # a call that began in this process has no segments stored yet (they are stored at its end)
        stored = [] if session_id in self._started else None
        return await self._judge(session_id, started_at, now, self.hub.health(session_id), live, stored)

    async def _judge(self, session_id: str, started_at: float, ended_at: float, health: dict[str, dict[str, Any]],
                     live: dict[str, list[RecordingSpan]], stored: list[Recording] | None,
                     ours: frozenset[int | None] = frozenset()) -> list[dict[str, Any]]:
        """Coverage over every segment: ``stored`` (None: read them) and ``live`` (the running recording).
        ``ours``: stored segments of this process, whose media health the hub still has."""
        if stored is None:
            async with self.rt.db.session() as db:
                stored = await Sessions(db).recordings(session_id)
        segments = stored
        spans = {party: list(v) for party, v in live.items()}
        for r in segments:
            if not r.duration_s:
                continue
            spans.setdefault(r.party, []).append(RecordingSpan(r.started_at, r.duration_s,
                                                               has_video=bool(r.video_codec)))
            if r.id not in ours:  # media flowed while an earlier process recorded it (its health went with it)
                h = health.setdefault(r.party, {"ever_connected": True, "intervals": []})
                h["ever_connected"] = True
                h["intervals"] = [[r.started_at, r.started_at + r.duration_s], *h["intervals"]]
        parties = {p: PartyMedia(ever_connected=h["ever_connected"], intervals=h["intervals"],
                                 recordings=spans.get(p, ())) for p, h in health.items()}
        return coverage_issues(started_at, ended_at, parties, self.rules)

    # -- end of a call ---------------------------------------------------
    async def end(self, session_id: str) -> MediaEnded:
        """Stop any face check, finalise both recordings, store them and judge their coverage."""
        check = self._checks.pop(session_id, None)
        if check:
            check.cancel()
            await asyncio.gather(check, return_exceptions=True)  # its row is stored before the seal
        self._agents.pop(session_id, None)
        ended_at = self.rt.clock.now()
        health = self.hub.health(session_id)
        live = session_id in self.hub.sessions()
        stats = self.hub.stats(session_id) if live else {}
        results = await self.hub.end_session(session_id) if live else []
        await self._journaled(session_id)
        started_at = self._started.pop(session_id, None)
        face_checks = self._face_checks.pop(session_id, None)
        began_here = started_at is not None  # then its only segments are the ones stored just below
        if started_at is None:  # not started by this process (e.g. before a restart): ask the database
            sess = await self.sessions.get(session_id)
            started_at = sess.connected_at if sess is not None else None
        rows = await self._store(session_id, results, stats)
        if started_at is not None:
            issues = await self._judge(session_id, started_at, ended_at, health, {}, rows if began_here else None,
                                       frozenset(r.id for r in rows))

            # the session's flag and its event commit together
            await self.sessions.update(session_id, "evidence.incomplete" if issues else "evidence.complete",
                                       "system", {"issues": issues}, {"evidence_issues": issues})
        return MediaEnded(rows, face_checks or [], whole_call=began_here and face_checks is not None)

    async def recover(self) -> list[Recording]:
        """At start, after a crash (SIGKILL, power cut): a recording of a call that the journal says was
        started but that has no row (the process died before storing it) is stored from what reached the
        disk (a crash-cut file plays up to its last flush, at most about 1 s before the crash), as its
        party's next segment, with ``recording.recovered`` on the timeline. The call goes on in new segments."""
        recovered: list[Recording] = []
        async with self.rt.db.session() as db:
            calls = await Sessions(db).in_states([SessionState.CONNECTED, SessionState.WRAP_UP,
                                                  SessionState.INTERRUPTED])
            orphans: dict[str, list[dict[str, Any]]] = {}
            for sess in calls:
                stored = {r.storage_key for r in await Sessions(db).recordings(sess.id)}
                for ev in await Timeline(db).of_kind(sess.id, "media.recording_started"):
                    if ev.data.get("storage_key") and ev.data["storage_key"] not in stored:
                        orphans.setdefault(sess.id, []).append(ev.data)
        for session_id, started in orphans.items():
            results = [r for r in await asyncio.gather(*(asyncio.to_thread(self._salvage, d) for d in started))
                       if r is not None]
            recovered += await self._store(session_id, results, {}, event="recording.recovered")
        return recovered

    def _salvage(self, started: dict[str, Any]) -> RecordingResult | None:
        """A crash-cut recording as it is on the disk (made durable and hashed), or None if nothing is."""
        key = started["storage_key"]
        if not self.storage.exists(key):
            return None
        stored = self.storage.finalize(key)
        try:
            with self.storage.open_read(key) as fh:
                found = probe(fh)
        except Exception:  # nothing playable reached the disk: still kept and sealed, with what it is
            log.warning("recovered recording %s cannot be read", key, exc_info=True)
            found = None
        return RecordingResult(
            party=started["party"], storage_key=key, container=started.get("container") or "webm",
            video_codec=found.video_codec if found else None, audio_codec=found.audio_codec if found else None,
            started_at=float(started["started_at"]), duration_s=found.duration_s if found else 0.0,
            size_bytes=stored.size_bytes, sha256=stored.sha256,
            video_frames=found.video_frames if found else 0, audio_frames=found.audio_frames if found else 0,
            finalised_at=self.rt.clock.now())

    async def _store(self, session_id: str, results: list[Any], stats: dict[str, Any],
                     event: str = "recording.finalised") -> list[Recording]:
        """Each finalised file becomes its party's next segment: its row, then its timeline event."""
        if not results:
            return []
        async with self.rt.db.session() as db:
            following: dict[str, int] = {}
            for prior in await Sessions(db).recordings(session_id):
                following[prior.party] = max(following.get(prior.party, 1), prior.segment + 1)
            rows = []
            for r in sorted(results, key=lambda r: r.started_at):
                segment = following.get(r.party, 1)
                following[r.party] = segment + 1
                rows.append(Recording(session_id=session_id, party=r.party, segment=segment,
                                      storage_key=r.storage_key, container=r.container, video_codec=r.video_codec,
                                      audio_codec=r.audio_codec, started_at=r.started_at, duration_s=r.duration_s,
                                      size_bytes=r.size_bytes, sha256=r.sha256,
                                      finalised_at=r.finalised_at or self.rt.clock.now()))
            db.add_all(rows)
            await db.commit()
        for row in rows:
            received = (stats.get(row.party) or {}).get("received", {}).get("video", {})
            await self.sessions.record(session_id, event, "media", {
                "party": row.party, "segment": row.segment, "sha256": row.sha256, "duration_s": row.duration_s,
                "size_bytes": row.size_bytes, "video_codec": row.video_codec, "audio_codec": row.audio_codec,
                "keyframe_requests": received.get("plis_sent", 0)})
        for row in rows:  # the browser's MP4 copy of an H.264 recording, made now rather than at first replay
            if needs_copy(row.container, row.video_codec):
                self._spawn(asyncio.get_running_loop().run_in_executor(None, ensure_playable, self.storage,
                                                                       row.storage_key))
        return rows

    # -- face check --------------------------------------------------------
    async def start_face_check(self, session_id: str, agent_id: int) -> None:
        if session_id in self._checks:
            raise Conflict("facecheck_running", "a face check is already running for this session")
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(session_id)
            photo = await Sessions(db).reference_photo(session_id)
        if not (sess.consent or {}).get("face"):
            raise Conflict("consent_required", "the customer has not consented to face processing")
        if photo is None:
            raise Conflict("no_reference_photo", "this session has no reference photo to compare with")
        if session_id not in self.hub.sessions() or not self.hub.stats(session_id).get("customer", {}).get("connected"):
            raise Conflict("no_customer_video", "the customer's video is not connected yet")
        task = asyncio.create_task(self._run_check(session_id, agent_id, photo.data))
        self._checks[session_id] = task
        task.add_done_callback(lambda _t: self._checks.pop(session_id, None))

    async def _run_check(self, session_id: str, agent_id: int, photo: bytes) -> None:
        agent = staff_party(agent_id)
        started = self.rt.clock.now()
        row = FaceCheck(session_id=session_id, requested_by=agent_id, started_at=started,
                        threshold=self.rt.faces.config.threshold)
        await self.sessions.record(session_id, "facecheck.started", agent, {"threshold": row.threshold})

        async def send_challenge(action: str, timeout_s: float) -> None:
            await self.bus.publish(customer_party(session_id),
                                   server_message("facecheck.challenge", action=action, timeout_s=timeout_s))
            await self.sessions.record(session_id, "facecheck.challenge", "system", {"action": action})

        try:
            reference = await self.rt.faces.analyse_reference(photo)
            frames = self.hub.tap_video(session_id, "customer", format="bgr24")
            result = await FaceCheckSession(self.rt.faces, reference, frames, send_challenge,
                                            clock=self.rt.clock, config=self.rt.faces.config).run()
            outcome = result.to_dict()
        except ReferencePhotoError as exc:
            outcome = {"match": False, "distance": None, "threshold": row.threshold,
                       "liveness": {"passed": False, "challenges": []}, "reasons": [f"reference_{exc.code}"]}
        except asyncio.CancelledError:
            outcome = {"match": False, "distance": None, "threshold": row.threshold,
                       "liveness": {"passed": False, "challenges": []}, "reasons": ["call_ended"]}
        except Exception as exc:  # a broken check is reported to the agent, never silently dropped
            log.exception("face check failed")
            outcome = {"match": False, "distance": None, "threshold": row.threshold,
                       "liveness": {"passed": False, "challenges": []}, "reasons": ["engine_error", type(exc).__name__]}
        row.finished_at = self.rt.clock.now()
        row.match = bool(outcome.get("match"))
        row.distance = outcome.get("distance")
        row.liveness = outcome.get("liveness") or {}
        row.reasons = list(outcome.get("reasons") or [])
        async with self.rt.db.session() as db:
            db.add(row)
            await db.commit()
        if session_id in self._face_checks:
            self._face_checks[session_id].append(row)
        if self.on_face_check is not None:
            self.on_face_check(session_id, row.match and bool(row.liveness.get("passed")))
        summary = {"match": row.match, "distance": row.distance, "threshold": row.threshold,
                   "liveness": row.liveness, "reasons": row.reasons}
        await self.sessions.record(session_id, "facecheck.result", "system", summary)
        await self.bus.publish(agent, server_message("facecheck.result", session_id=session_id, **summary))
        await self.bus.publish(customer_party(session_id), server_message(
            "facecheck.done", passed=row.match and bool(row.liveness.get("passed"))))
