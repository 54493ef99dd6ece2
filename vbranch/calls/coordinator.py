"""The WebSocket entry point's handler: each client message to the service that does it.

Messages come in from the WebSocket endpoint (signaling/endpoint.py); the queue
(vbranch.queue: the desk and its routing engine), the calls capability
(vbranch.calls.service) and the call media carry them out. Their domain errors
become typed ``error`` messages here, and every staff action is audited.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from signaling.protocol import ProtocolError, server_message
from signaling.registry import AttachError, Connection, Registry, customer_party, staff_party
from vbranch.auth import AuthError, JoinClaims, StaffClaims
from vbranch.calls.media import CallMedia
from vbranch.calls.service import CallService
from vbranch.db.repositories import Accounts, Sessions
from vbranch.domain.errors import DomainError
from vbranch.domain.routing_model import AgentState, RoutingError
from vbranch.domain.session_state import FINAL, WAITING, SessionState
from vbranch.queue.desk import QueueDesk
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime

log = logging.getLogger(__name__)

WATCHER_ROLES = ("supervisor", "admin")


def ack(msg: Any, **fields: Any) -> dict[str, Any] | None:
    """The reply to a command whose effects are pushed separately (only when the client sent an id)."""
    return server_message("ack", msg.id, **{"for": msg.type, **fields}) if msg.id is not None else None


def watchers(registry: Registry) -> list[str]:
    """The connected staff who watch the wallboard (the queue desk sends them its updates)."""
    return [c.party for c in registry.connected("staff:") if c.role in WATCHER_ROLES and c.party]


class Coordinator:
    """Built and wired in vbranch.bootstrap: the registry's ``on_gone`` is :meth:`party_gone`."""

    def __init__(self, rt: Runtime, sessions: SessionService, registry: Registry, desk: QueueDesk,
                 media: CallMedia, calls: CallService) -> None:
        self.rt = rt
        self.calls = calls
        self.sessions = sessions
        self.registry = registry
        self.desk = desk
        self.media = media
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        await self.desk.start()
        await self.media.recover()  # recordings a crash left without rows are stored as segments
        # the parties connected or in their resume window before a restart get it (back)
        await self.registry.restore()
        await self.calls.finish_ended_calls()  # calls that had ended: their lost end-of-call work is redone
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="expiry-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.desk.stop()
        await self.media.close()
        await self.registry.close()

    # -- entry points from REST -----------------------------------------
    async def settled(self, session_id: str) -> None:
        """Wait for a session's end-of-call work (recordings stored, evidence sealed, completion)."""
        await self.desk.settled(session_id)

    async def queue_stats(self) -> dict[str, Any]:
        return await self.desk.stats()

    async def account_changed(self, account_id: int) -> None:
        async with self.rt.db.session() as db:
            account = await Accounts(db).get(account_id)
        if account is None:
            return
        if not account.active:
            conn = self.registry.connection(staff_party(account_id))
            await self.registry.forget(staff_party(account_id))
            await self._agent_gone(account_id)
            if conn:
                await conn.close(1008, "account disabled")
            return
        await self.desk.update_agent_skills(account_id)  # a logged-in agent's new skills apply at once

    async def services_changed(self) -> None:
        self.calls.services_changed()
        await self.desk.reload_services()

    # -- signaling handler ----------------------------------------------
    async def authenticate(self, token: str) -> tuple[str, Any]:
        kind = self.rt.tokens.peek_type(token) if token else None
        if kind == "join":
            return "customer", self.rt.tokens.decode_join(token)
        if kind == "staff":
            claims = self.rt.tokens.decode_staff(token)
            async with self.rt.db.session() as db:
                account = await Accounts(db).get(claims.account_id)
            if account is None or not account.active or account.role != claims.role:
                raise AuthError("invalid_token", "the account behind this token is no longer active")
            return str(claims.role), claims
        if not token:
            raise AuthError("unauthenticated", "connect with ?token=<join or staff token>")
        self.rt.tokens.decode_staff(token)  # raises the precise reason (malformed, foreign key, expired)
        raise AuthError("invalid_token", "the token is not valid")

    async def handle(self, conn: Connection, msg: Any) -> None:
        named = getattr(msg, "session_id", None)
        if conn.role == "customer" and named is not None and named != conn.identity.session_id:
            raise ProtocolError("forbidden", "a join token is good for its own session only", msg.id)
        method = getattr(self, "on_" + msg.type.replace(".", "_"), None)
        if method is None:
            raise ProtocolError("unsupported", f"{msg.type} is not handled by this server", msg.id)
        try:
            reply = await method(conn, msg)
        except (RoutingError, DomainError) as exc:  # the services' errors, as typed WebSocket errors
            raise ProtocolError(exc.code, exc.message, msg.id, getattr(exc, "details", None)) from None
        if reply is not None:
            await conn.send(reply)

    async def disconnected(self, conn: Connection) -> None:
        await self.registry.detach(conn)
        if conn.role == "customer" and conn.party and self.registry.connection(conn.party) is None:
            # a waiting customer whose socket dropped keeps its place through the resume window,
            # but no agent is offered a customer who is not there
            await self.desk.customer_away(conn.identity.session_id)
        if conn.role == "agent" and conn.party and self.registry.connection(conn.party) is None:
            # an absent agent gets no offers: one under way is revoked at once; a call in
            # progress is kept through the resume window
            agent_id = str(conn.identity.account_id)
            view = self.desk.engine.agent(agent_id)
            if view is not None and view.state in (AgentState.OFFERED, AgentState.AVAILABLE):
                await self.desk.run(lambda: self.desk.engine.set_agent_status(agent_id, "away"))

    async def party_gone(self, party: str) -> None:
        """A party's resume window passed without it coming back."""
        kind, _, ident = party.partition(":")
        if kind == "customer":
            await self._customer_gone(ident, "customer_disconnected")
        elif kind == "staff":
            await self._agent_gone(int(ident))

    async def _customer_gone(self, session_id: str, reason: str) -> None:
        engine = self.desk.engine
        if engine.session(session_id) is not None:  # still waiting: the visit ends here
            await self.desk.run(lambda: engine.abandon(session_id))
            await self.sessions.move(session_id, SessionState.ABANDONED, "customer", {"reason": reason},
                                     end_reason=reason)
            return
        await self.calls.customer_gone(session_id, reason)

    async def sweep_expired(self) -> list[str]:
        """End the waiting sessions whose join token expired before their customer ever said hello
        (nobody connected, no resume window): abandoned, reason join_token_expired. Their ids."""
        cutoff = self.rt.clock.now() - self.rt.settings.join_token_ttl_s
        async with self.rt.db.session() as db:
            waiting = await Sessions(db).in_states([SessionState.QUEUED, SessionState.OFFERED])
        ended = []
        for sess in waiting:
            if sess.created_at > cutoff or self.registry.holds(customer_party(sess.id)):
                continue
            if self.desk.engine.session(sess.id) is not None:
                await self.desk.run(lambda sid=sess.id: self.desk.engine.abandon(sid))
            await self.sessions.move(sess.id, SessionState.ABANDONED, "system", {"reason": "join_token_expired"},
                                     end_reason="join_token_expired")
            ended.append(sess.id)
        return ended

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rt.settings.expiry_sweep_s)
            try:
                ended = await self.sweep_expired()
                if ended:
                    log.info("ended %d waiting session(s) whose join token expired unused", len(ended))
            except Exception:  # the next sweep tries again
                log.exception("the expiry sweep failed")

    async def _agent_gone(self, account_id: int) -> None:
        if self.desk.engine.agent(str(account_id)) is not None:
            await self.desk.run(lambda: self.desk.engine.agent_logout(str(account_id)))

    # -- greetings ---------------------------------------------------------
    async def on_ping(self, conn: Connection, msg: Any) -> dict:
        return server_message("pong", msg.id, at=self.rt.clock.now())

    async def on_hello(self, conn: Connection, msg: Any) -> None:
        if conn.party is not None:
            raise ProtocolError("already_greeted", "hello was already received on this connection", msg.id)
        if conn.role == "customer":
            await self._customer_hello(conn, msg)
        else:
            await self._staff_hello(conn, msg)

    async def _customer_hello(self, conn: Connection, msg: Any) -> None:
        claims: JoinClaims = conn.identity
        sess = await self.sessions.get(claims.session_id)
        if sess is None:
            raise ProtocolError("not_found", "this session does not exist", msg.id)
        if sess.state in FINAL:
            raise ProtocolError("session_closed", f"this session has ended ({sess.state})", msg.id)
        resume_token = await self._attach(conn, customer_party(sess.id), msg)
        await conn.send(server_message("welcome", msg.id, session_id=sess.id, state=sess.state,
                                       resume_token=resume_token, service=sess.service_code,
                                       consent=sess.consent or None, ice_servers=self._ice_servers()))
        # a new place is announced by the desk; a resumed one is repeated here
        if sess.state in WAITING and not await self.desk.customer_here(sess):
            update = self.desk.position(sess.id)
            if update is not None:
                await conn.send(update)

    async def _staff_hello(self, conn: Connection, msg: Any) -> None:
        claims: StaffClaims = conn.identity
        async with self.rt.db.session() as db:
            account = await Accounts(db).get(claims.account_id)
            skills = await Accounts(db).skills(claims.account_id)
        resume_token = await self._attach(conn, staff_party(claims.account_id), msg)
        name = account.display_name if account else claims.username
        if conn.role == "agent":
            await self.desk.agent_login(claims.account_id, name)
        await conn.send(server_message(
            "welcome", msg.id, resume_token=resume_token, status=self.desk.agent_status(claims.account_id),
            ice_servers=self._ice_servers(), call=await self._call_of(claims.account_id),
            agent={"id": claims.account_id, "username": claims.username, "role": str(claims.role),
                   "display_name": name, "skills": skills}))
        if conn.role in WATCHER_ROLES:
            await conn.send(server_message("wallboard.update", **await self.desk.stats()))

    async def _call_of(self, account_id: int) -> dict[str, Any] | None:
        """The call an agent is in, as the server knows it (a console restores it from this)."""
        view = self.desk.engine.agent(str(account_id))
        if view is None or view.state != AgentState.BUSY or view.session_id is None:
            return None
        try:
            call = await self.calls.call(view.session_id)
        except DomainError:
            return None
        return {"session_id": call.session_id, "service": call.service_code, "connected_at": call.connected_at,
                "checklist": call.status()}

    async def _attach(self, conn: Connection, party: str, msg: Any) -> str:
        try:
            token, _resumed = await self.registry.attach(party, conn, msg.resume_token)
        except AttachError as exc:
            raise ProtocolError(exc.code, exc.message, msg.id) from None
        return token

    # -- customer ------------------------------------------------------------
    async def on_consent(self, conn: Connection, msg: Any) -> dict:
        session_id = conn.identity.session_id
        consent = {"recording": msg.recording, "face": msg.face,
                   "location": msg.location.model_dump(exclude_none=True) if msg.location else None,
                   "at": self.rt.clock.now()}
        await self.sessions.update(session_id, "consent", "customer", consent, {"consent": consent}, while_live=True)
        return server_message("consent.recorded", msg.id, consent=consent)

    async def on_leave(self, conn: Connection, msg: Any) -> None:
        session_id = conn.identity.session_id
        await self._customer_gone(session_id, "customer_left")
        await self.registry.forget(customer_party(session_id))
        await conn.send(server_message("session.ended", msg.id, reason="customer_left"))
        await conn.close(1000, "left")

    # -- agent ---------------------------------------------------------------
    def _agent_id(self, conn: Connection) -> str:
        return str(conn.identity.account_id)

    async def on_agent_status(self, conn: Connection, msg: Any) -> dict:
        agent_id = self._agent_id(conn)
        await self.desk.run(lambda: self.desk.engine.set_agent_status(agent_id, msg.status))
        await self._audit(conn, "agent.status", None, {"status": msg.status})
        return server_message("agent.status", msg.id, status=self.desk.agent_status(int(agent_id)))

    async def on_offer_accept(self, conn: Connection, msg: Any) -> dict | None:
        agent_id = self._agent_id(conn)
        await self.desk.run(lambda: self.desk.engine.accept(agent_id, msg.session_id))
        await self._audit(conn, "offer.accept", msg.session_id, {})
        return ack(msg, session_id=msg.session_id)

    async def on_offer_decline(self, conn: Connection, msg: Any) -> dict | None:
        agent_id = self._agent_id(conn)
        await self.desk.run(lambda: self.desk.engine.decline(agent_id, msg.session_id))
        await self._audit(conn, "offer.decline", msg.session_id, {})
        return ack(msg, session_id=msg.session_id)

    async def on_wrapup_done(self, conn: Connection, msg: Any) -> dict | None:
        agent_id = self._agent_id(conn)
        await self.desk.run(lambda: self.desk.engine.wrapup_done(agent_id))
        return ack(msg)

    async def on_checklist_mark(self, conn: Connection, msg: Any) -> dict | None:
        marked = await self.calls.mark(conn.identity.account_id, msg.session_id, msg.step, msg.note)
        await self._audit(conn, "checklist.mark", msg.session_id, {"step": msg.step})
        return ack(msg, session_id=msg.session_id, step=msg.step, checklist=marked.checklist)

    async def on_session_end(self, conn: Connection, msg: Any) -> dict | None:
        if conn.role == "supervisor":
            ended = await self.calls.override_end(conn.identity.account_id, msg.session_id, msg.override_reason,
                                                  msg.disposition, msg.notes)
            await self._audit(conn, "session.override_end", msg.session_id,
                              {"reason": ended.override_reason, "disposition": ended.disposition,
                               "missing_steps": list(ended.missing_steps),
                               "recording_issues": list(ended.recording_issues)})
        else:
            await self.calls.end(conn.identity.account_id, msg.session_id, msg.disposition, msg.notes)
            await self._audit(conn, "session.end", msg.session_id, {"disposition": msg.disposition})
        return ack(msg, session_id=msg.session_id)

    # -- media and face check ------------------------------------------------
    async def _media_party(self, conn: Connection, msg: Any) -> tuple[str, str]:
        """(session id, party) for a media message; only a live call has media."""
        if conn.role == "customer":
            try:
                call = await self.calls.call(conn.identity.session_id)
            except DomainError:
                raise ProtocolError("invalid_state", "media starts once an agent has taken the call", msg.id) from None
            return call.session_id, "customer"
        if msg.session_id is None:
            raise ProtocolError("missing_field", "missing field(s): session_id", msg.id)
        return (await self.calls.own_call(conn.identity.account_id, msg.session_id)).session_id, "agent"

    async def on_rtc_offer(self, conn: Connection, msg: Any) -> None:
        session_id, party = await self._media_party(conn, msg)
        answer, candidates = await self.media.offer(session_id, party, msg.sdp, ice_restart=msg.ice_restart)
        await conn.send(server_message("rtc.answer", msg.id, sdp=answer, session_id=session_id))
        for candidate in candidates:  # then the hub's own candidates (the last one null: no more)
            await conn.send(server_message("rtc.ice", candidate=candidate, session_id=session_id))

    async def on_rtc_ice(self, conn: Connection, msg: Any) -> dict | None:
        session_id, party = await self._media_party(conn, msg)
        candidate = msg.candidate.model_dump() if msg.candidate else None
        status = await self.media.ice(session_id, party, candidate)
        return ack(msg, status=status)

    async def on_facecheck_start(self, conn: Connection, msg: Any) -> dict | None:
        call = await self.calls.own_call(conn.identity.account_id, msg.session_id)
        await self.media.start_face_check(call.session_id, call.agent_id)
        await self._audit(conn, "facecheck.start", call.session_id, {})
        return ack(msg, session_id=call.session_id)

    # -- supervisor ------------------------------------------------------------
    async def on_agent_set_status(self, conn: Connection, msg: Any) -> dict | None:
        agent_id = str(msg.agent_id)
        if self.desk.engine.agent(agent_id) is None:
            raise ProtocolError("unknown_agent", "that agent is not logged in", msg.id)
        await self.desk.run(lambda: self.desk.engine.set_agent_status(agent_id, msg.status))
        await self._audit(conn, "supervisor.agent_status", None, {"agent_id": msg.agent_id, "status": msg.status})
        return ack(msg, agent_id=msg.agent_id, status=self.desk.agent_status(msg.agent_id))

    async def _audit(self, conn: Connection, action: str, session_id: str | None, detail: dict[str, Any]) -> None:
        """Every staff action goes to the hash-chained audit log."""
        actor = conn.identity.username if conn.role != "customer" else f"customer:{conn.identity.session_id}"
        await self.rt.journal.audit(actor, action, session_id, detail)

    def _ice_servers(self) -> list[dict[str, Any]]:
        return [s.model_dump(exclude_none=True) for s in self.rt.settings.ice_servers]
