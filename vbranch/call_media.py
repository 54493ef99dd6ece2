"""A call's media and face check: WebRTC negotiation through the media hub, recordings, face checks.

The coordinator decides who may do what; this module carries it out against
the media hub (vbranch/media) and the face-check worker pool (vbranch/facecheck).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from recordings.storage import LocalDirStorage
from signaling.bus import MessageBus
from signaling.registry import customer_party, staff_party
from signaling.protocol import ProtocolError, server_message
from vbranch.db.models import FaceCheck, Recording
from vbranch.db.repositories import Sessions
from vbranch.facecheck import FaceCheckSession, ReferencePhotoError
from vbranch.media.hub import MediaError, MediaHub
from vbranch.runtime import Runtime
from vbranch.sessions import SessionService

log = logging.getLogger(__name__)


class CallMedia:
    def __init__(self, rt: Runtime, bus: MessageBus, sessions: SessionService) -> None:
        self.rt = rt
        self.bus = bus
        self.sessions = sessions
        self.hub = MediaHub(LocalDirStorage(rt.settings.resolved_recordings_dir), rt.clock,
                            [s.model_dump(exclude_none=True) for s in rt.settings.ice_servers],
                            mode=rt.settings.media_mode, on_event=self._media_event)
        self._checks: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._checks.values()):
            task.cancel()
        await self.hub.close()

    # -- negotiation -----------------------------------------------------
    async def offer(self, session_id: str, party: str, sdp: str, ref: Any) -> dict[str, Any]:
        try:
            answer = await self.hub.handle_offer(session_id, party, sdp)
        except (MediaError, ValueError) as exc:
            raise ProtocolError("invalid_sdp", f"the SDP offer was refused: {exc}"[:300], ref) from None
        return server_message("rtc.answer", ref, session_id=session_id, sdp=answer)

    async def ice(self, session_id: str, party: str, candidate: dict[str, Any] | None, ref: Any) -> None:
        try:
            await self.hub.add_ice(session_id, party, candidate)
        except (MediaError, ValueError) as exc:
            raise ProtocolError("invalid_candidate", f"the ICE candidate was refused: {exc}"[:300], ref) from None

    def _media_event(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.sessions.record(session_id, kind, "media", data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- end of a call ---------------------------------------------------
    async def end(self, session_id: str) -> list[Recording]:
        """Stop any face check, finalise both recordings and store them."""
        check = self._checks.pop(session_id, None)
        if check:
            check.cancel()
        if session_id not in self.hub.sessions():
            return []
        results = await self.hub.end_session(session_id)
        rows = []
        async with self.rt.db.session() as db:
            for r in results:
                row = Recording(session_id=session_id, party=r.party, storage_key=r.storage_key,
                                container=r.container, video_codec=r.video_codec, audio_codec=r.audio_codec,
                                started_at=r.started_at, duration_s=r.duration_s, size_bytes=r.size_bytes,
                                sha256=r.sha256, finalised_at=r.finalised_at or self.rt.clock.now())
                db.add(row)
                rows.append(row)
            await db.commit()
        for row in rows:
            await self.sessions.record(session_id, "recording.finalised", "media", {
                "party": row.party, "sha256": row.sha256, "duration_s": row.duration_s,
                "size_bytes": row.size_bytes, "video_codec": row.video_codec, "audio_codec": row.audio_codec})
        return rows

    # -- face check --------------------------------------------------------
    async def start_face_check(self, session_id: str, agent_id: int, ref: Any) -> None:
        if session_id in self._checks:
            raise ProtocolError("facecheck_running", "a face check is already running for this session", ref)
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(session_id)
            photo = await Sessions(db).reference_photo(session_id)
        if not (sess.consent or {}).get("face"):
            raise ProtocolError("consent_required", "the customer has not consented to face processing", ref)
        if photo is None:
            raise ProtocolError("no_reference_photo", "this session has no reference photo to compare with", ref)
        if session_id not in self.hub.sessions() or not self.hub.stats(session_id).get("customer", {}).get("connected"):
            raise ProtocolError("no_customer_video", "the customer's video is not connected yet", ref)
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
        summary = {"match": row.match, "distance": row.distance, "threshold": row.threshold,
                   "liveness": row.liveness, "reasons": row.reasons}
        await self.sessions.record(session_id, "facecheck.result", "system", summary)
        await self.bus.publish(agent, server_message("facecheck.result", session_id=session_id, **summary))
        await self.bus.publish(customer_party(session_id), server_message(
            "facecheck.done", passed=row.match and bool(row.liveness.get("passed"))))
