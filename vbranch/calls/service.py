"""The calls capability: a connected call's life, from the agent taking it to its completion.

The rules are the pure state machine in vbranch.domain.call; this service keeps
one ``Call`` per live call in memory (rebuilt from the database for a call that
was running before a restart) and carries out its events: the session's state
and timeline (through SessionService and the evidence journal), the parties'
messages (bus), the queue (the desk's engine) and the media (CallMedia).
Requests that break a rule raise domain errors; each entry point maps them.

Bootstrap wires the desk's hooks here: a call has connected (``call_started``),
its agent is gone for good (``agent_lost``), its wrap-up is over
(``wrapup_over``).
"""

from __future__ import annotations

from typing import Any

from signaling.bus import MessageBus
from signaling.protocol import server_message
from signaling.registry import Registry, customer_party, staff_party
from vbranch.calls.media import CallMedia
from vbranch.db.models import Manifest
from vbranch.db.repositories import Catalog, Sessions, Timeline
from vbranch.domain.call import Call, CallEnded, StepMarked
from vbranch.domain.checklist import Checklist
from vbranch.domain.errors import Conflict, Forbidden, Invalid, NotFound
from vbranch.domain.routing_model import AgentState
from vbranch.domain.session_state import SessionState
from vbranch.evidence.manifests import SealFacts, seal_session
from vbranch.queue.desk import QueueDesk
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime


class CallService:
    def __init__(self, rt: Runtime, sessions: SessionService, registry: Registry, bus: MessageBus,
                 desk: QueueDesk, media: CallMedia) -> None:
        self.rt = rt
        self.sessions = sessions
        self.registry = registry
        self.bus = bus
        self.desk = desk
        self.media = media
        self._calls: dict[str, Call] = {}  # live calls by session id
        self._checklists: dict[str, Checklist] = {}  # by service code; a running call keeps the one it began with

    # -- the live call -------------------------------------------------------
    async def call(self, session_id: str) -> Call:
        """The live call of a session, or Conflict ``invalid_state`` when the session is not in a call."""
        call = self._calls.get(session_id)
        if call is not None:
            return call
        sess = await self.sessions.get(session_id)
        if sess is None:
            raise NotFound("not_found", "no such session")
        if sess.state != SessionState.CONNECTED or sess.agent_id is None:
            raise Conflict("invalid_state", f"the session is {sess.state}, not connected")
        # a call that was running before this process started: marks and face checks from the evidence
        async with self.rt.db.session() as db:
            marks = await Timeline(db).of_kind(session_id, "checklist.mark")
            checks = await Sessions(db).face_checks(session_id)
        call = Call(session_id, sess.agent_id, sess.service_code, await self._checklist(sess.service_code),
                    sess.connected_at or self.rt.clock.now(),
                    marked={e.data.get("step") for e in marks},
                    facecheck_passed=any(c.match and (c.liveness or {}).get("passed") for c in checks))
        return self._calls.setdefault(session_id, call)

    async def own_call(self, agent_id: int, session_id: str) -> Call:
        """The live call this agent handles, or a domain error (``not_your_session``, ``invalid_state``)."""
        try:
            call = await self.call(session_id)
        except (NotFound, Conflict):
            sess = await self.sessions.get(session_id)
            if sess is None or sess.agent_id != agent_id:
                raise Forbidden("not_your_session", "you are not handling this session") from None
            raise
        call.check_agent(agent_id)
        return call

    async def _checklist(self, service_code: str) -> Checklist:
        checklist = self._checklists.get(service_code)
        if checklist is None:
            async with self.rt.db.session() as db:
                svc = await Catalog(db).service(service_code)
            checklist = Checklist.model_validate({
                "steps": svc.checklist if svc else [],
                "require_complete_recordings": bool(svc and svc.require_complete_recordings)})
            self._checklists[service_code] = checklist
        return checklist

    def services_changed(self) -> None:
        """Checklists are read again for calls that start from now on."""
        self._checklists.clear()

    async def call_started(self, session_id: str, agent_id: int, connected_at: float) -> None:
        sess = await self.sessions.get(session_id)
        service = sess.service_code if sess else ""
        self._calls[session_id] = Call(session_id, agent_id, service, await self._checklist(service), connected_at)
        self.media.call_started(session_id, agent_id, connected_at)

    async def recording_issues(self, call: Call) -> list[dict[str, Any]]:
        return await self.media.coverage(call.session_id, call.connected_at)

    # -- requests ------------------------------------------------------------
    async def mark(self, agent_id: int, session_id: str, step: str, note: str | None) -> StepMarked:
        call = await self.own_call(agent_id, session_id)
        marked = call.mark(agent_id, step, note)
        await self.sessions.record(session_id, "checklist.mark", staff_party(agent_id), {"step": step, "note": note})
        return marked

    def face_check_finished(self, session_id: str, passed: bool) -> None:
        call = self._calls.get(session_id)
        if call is not None:
            call.face_check_finished(passed)

    async def end(self, agent_id: int, session_id: str, disposition: str | None, notes: str | None) -> CallEnded:
        call = await self.own_call(agent_id, session_id)
        ended = call.end(agent_id, disposition, notes, await self.recording_issues(call))
        await self._finish(ended, staff_party(agent_id))
        return ended

    async def override_end(self, supervisor_id: int, session_id: str, reason: str | None,
                           disposition: str | None, notes: str | None) -> CallEnded:
        if not reason:  # said before anything is looked up
            raise Invalid("missing_field", "a supervisor ending a call must give override_reason")
        call = await self.call(session_id)
        ended = call.override_end(reason, disposition, notes, await self.recording_issues(call))
        await self._finish(ended, staff_party(supervisor_id))
        return ended

    async def customer_gone(self, session_id: str, reason: str) -> None:
        """The customer hung up (``customer_left``) or did not come back (anything else)."""
        try:
            call = await self.call(session_id)
        except (Conflict, NotFound):
            return  # not in a call (any more)
        ended = call.customer_left() if reason == "customer_left" else call.party_lost(reason)
        await self._finish(ended, "customer")

    async def agent_lost(self, session_id: str, reason: str) -> None:
        """The agent did not come back within the resume window: the call is interrupted."""
        try:
            call = await self.call(session_id)
        except (Conflict, NotFound):
            return
        await self._finish(call.party_lost(reason), "system", engine_knows=True)

    async def wrapup_over(self, session_id: str) -> None:
        """The agent's wrap-up is over (or the agent is gone): the session is completed."""
        sess = await self.sessions.get(session_id)
        if sess is not None and sess.state in (SessionState.WRAP_UP, SessionState.INTERRUPTED):
            if sess.state == SessionState.INTERRUPTED:
                await self.sessions.move(session_id, SessionState.WRAP_UP, "system")
            await self.sessions.move(session_id, SessionState.COMPLETED, "system")

    async def finish_ended_calls(self) -> None:
        """At start: calls that had ended (wrap-up, or interrupted) when the server stopped lost their
        end-of-call work with the process. Each is sealed if it was not, and completed (the wrap-up's
        timer did not survive; the agent's console comes back without it), as the session's follow-up."""
        async with self.rt.db.session() as db:
            ended = await Sessions(db).in_states([SessionState.WRAP_UP, SessionState.INTERRUPTED])
            unsealed = {sess.id for sess in ended if await db.get(Manifest, sess.id) is None}
        for sess in ended:
            self.desk.follow_up(sess.id, self._finish_after_restart(sess.id, sess.id in unsealed))

    async def _finish_after_restart(self, session_id: str, unsealed: bool) -> None:
        if unsealed:
            await self.call_over(session_id)
        await self.wrapup_over(session_id)

    # -- carrying out the end of a call ---------------------------------------
    async def _finish(self, ended: CallEnded, actor: str, engine_knows: bool = False) -> None:
        session_id, agent = ended.session_id, staff_party(ended.agent_id)
        try:  # the ended call stays in memory until the move is made: a second end meanwhile is refused
            await self.sessions.move(session_id, ended.target, actor,
                                     {"reason": ended.reason, "disposition": ended.disposition},
                                     end_reason=ended.reason, disposition=ended.disposition, notes=ended.notes)
        finally:  # made, or failed (then the call is read again from the database on its next request)
            call = self._calls.pop(session_id, None)
        await self.bus.publish(customer_party(session_id), server_message("session.ended", reason=ended.reason))
        if not engine_knows:
            await self.bus.publish(agent, server_message("session.ended", session_id=session_id,
                                                         reason=ended.reason))
        # recordings and the seal, then (after the wrap-up) the session's completion, as the session's
        # follow-ups: the request does not wait for them (settled() does)
        self.desk.follow_up(session_id, self.call_over(session_id, call))
        agent_id = str(ended.agent_id)
        view = self.desk.engine.agent(agent_id)
        if not engine_knows and view is not None and view.state == AgentState.BUSY:
            await self.desk.run(lambda: self.desk.engine.end_call(agent_id, session_id))

    async def call_over(self, session_id: str, call: Call | None = None) -> None:
        """Presence and media teardown once a call has ended: recordings are finalised, the evidence sealed.

        ``call``: the ended call as this process ran it; its marks and checklist, with what the media
        stored, are the manifest's facts without a read when this process ran the whole call.
        """
        customer = self.registry.connection(customer_party(session_id))
        await self.registry.forget(customer_party(session_id))
        if customer is not None:  # after session.ended is written: nothing more is taken from it
            await customer.close(1000, "session ended")
        media = await self.media.end(session_id)
        facts = None
        sess = await self.sessions.get(session_id)
        if call is not None and media.whole_call and sess is not None:
            facts = SealFacts(session=sess, reference_photo_sha256=await self.sessions.reference_photo_sha256(session_id),
                              recordings=media.recordings, face_checks=media.face_checks,
                              marks=frozenset(call.marked), checklist=call.checklist)
        await seal_session(self.rt, self.rt.signing_key, session_id, facts)
        self.rt.metrics.manifests_sealed.labels("memory" if facts else "database").inc()
