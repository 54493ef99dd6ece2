"""The live branch: joins customers and agents over signaling to the queue, calls and evidence.

Entry points (REST, WebSocket) call in here; the functional core (session state
machine, routing) decides; the adapters (database, bus) carry it out.
"""

from __future__ import annotations

import logging
from typing import Any

from signaling.bus import LocalBus
from signaling.protocol import ProtocolError, server_message
from signaling.registry import AttachError, Connection, Registry
from vbranch.auth import AuthError, JoinClaims, StaffClaims
from vbranch.db.models import CustomerSession
from vbranch.db.repositories import Accounts, Sessions
from vbranch.domain.session_state import FINAL, SessionState
from vbranch.runtime import Runtime
from vbranch.sessions import SessionService

log = logging.getLogger(__name__)


def customer_party(session_id: str) -> str:
    return f"customer:{session_id}"


def staff_party(account_id: int) -> str:
    return f"staff:{account_id}"


class Coordinator:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sessions = SessionService(rt)
        self.registry = Registry(rt.clock, rt.settings.resume_window_s, self.party_gone)
        self.bus = LocalBus(self.registry)
        self._waiting: dict[str, CustomerSession] = {}

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        async with self.rt.db.session() as db:
            for sess in await Sessions(db).in_states([SessionState.QUEUED, SessionState.OFFERED]):
                self._waiting[sess.id] = sess

    async def stop(self) -> None:
        await self.registry.close()

    # -- entry points from REST -----------------------------------------
    async def session_created(self, sess: CustomerSession) -> None:
        self._waiting[sess.id] = sess
        await self._publish_positions(sess.service_code)

    async def queue_stats(self) -> dict[str, Any]:
        by_service: dict[str, dict[str, Any]] = {}
        now = self.rt.clock.now()
        for sess in self._waiting.values():
            entry = by_service.setdefault(sess.service_code, {"waiting": 0, "longest_wait_s": 0.0})
            entry["waiting"] += 1
            entry["longest_wait_s"] = max(entry["longest_wait_s"], round(now - sess.created_at, 1))
        return {"services": by_service}

    async def account_changed(self, account_id: int) -> None:
        async with self.rt.db.session() as db:
            account = await Accounts(db).get(account_id)
        if account is not None and not account.active:
            conn = self.registry.connection(staff_party(account_id))
            self.registry.forget(staff_party(account_id))
            if conn:
                await conn.transport.close(1008, "account disabled")

    async def services_changed(self) -> None:
        pass

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
        # decoding reports expired vs malformed precisely
        self.rt.tokens.decode_staff(token)
        raise AuthError("invalid_token", "the token is not valid")  # pragma: no cover

    async def handle(self, conn: Connection, msg: Any) -> None:
        named = getattr(msg, "session_id", None)
        if conn.role == "customer" and named is not None and named != conn.identity.session_id:
            raise ProtocolError("forbidden", "a join token is good for its own session only", msg.id)
        method = getattr(self, "on_" + msg.type.replace(".", "_"), None)
        if method is None:
            raise ProtocolError("unsupported", f"{msg.type} is not available yet", msg.id)
        await method(conn, msg)

    async def disconnected(self, conn: Connection) -> None:
        self.registry.detach(conn)

    async def party_gone(self, party: str) -> None:
        """A party's resume window passed without it coming back."""
        kind, _, ident = party.partition(":")
        if kind == "customer":
            sess = self._waiting.pop(ident, None)
            if sess is not None:
                await self.sessions.move(ident, SessionState.ABANDONED, "customer",
                                         {"reason": "disconnected"}, end_reason="customer_disconnected")
                await self._publish_positions(sess.service_code)

    # -- messages -------------------------------------------------------
    async def on_ping(self, conn: Connection, msg: Any) -> None:
        await conn.send(server_message("pong", msg.id, at=self.rt.clock.now()))

    async def on_hello(self, conn: Connection, msg: Any) -> None:
        if conn.party is not None:
            raise ProtocolError("already_greeted", "hello was already received on this connection", msg.id)
        if conn.role == "customer":
            await self._customer_hello(conn, msg)
        else:
            await self._staff_hello(conn, msg)

    async def _customer_hello(self, conn: Connection, msg: Any) -> None:
        claims: JoinClaims = conn.identity
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(claims.session_id)
        if sess is None:
            raise ProtocolError("not_found", "this session does not exist", msg.id)
        if sess.state in FINAL:
            raise ProtocolError("session_closed", f"this session has ended ({sess.state})", msg.id)
        resume_token = self._attach(conn, customer_party(sess.id), msg)
        await conn.send(server_message("welcome", msg.id, session_id=sess.id, state=sess.state,
                                       resume_token=resume_token, service=sess.service_code,
                                       ice_servers=self._ice_servers()))
        if sess.id in self._waiting:
            await conn.send(self._queue_update(sess.id))

    async def _staff_hello(self, conn: Connection, msg: Any) -> None:
        claims: StaffClaims = conn.identity
        async with self.rt.db.session() as db:
            account = await Accounts(db).get(claims.account_id)
            skills = await Accounts(db).skills(claims.account_id)
        resume_token = self._attach(conn, staff_party(claims.account_id), msg)
        status = self.registry.attrs(conn.party).setdefault("status", "away")
        await conn.send(server_message(
            "welcome", msg.id, resume_token=resume_token, status=status, ice_servers=self._ice_servers(),
            agent={"id": claims.account_id, "username": claims.username, "role": str(claims.role),
                   "display_name": account.display_name if account else claims.username, "skills": skills}))

    def _attach(self, conn: Connection, party: str, msg: Any) -> str:
        try:
            token, _resumed = self.registry.attach(party, conn, msg.resume_token)
        except AttachError as exc:
            raise ProtocolError(exc.code, exc.message, msg.id) from None
        return token

    async def on_consent(self, conn: Connection, msg: Any) -> None:
        session_id = conn.identity.session_id
        consent = {"recording": msg.recording, "face": msg.face,
                   "location": msg.location.model_dump(exclude_none=True) if msg.location else None,
                   "at": self.rt.clock.now()}
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(session_id)
            sess.consent = consent
            db.add(sess)
            await db.commit()
        await self.sessions.record(session_id, "consent", "customer", consent)
        await conn.send(server_message("consent.recorded", msg.id, consent=consent))

    async def on_leave(self, conn: Connection, msg: Any) -> None:
        session_id = conn.identity.session_id
        sess = self._waiting.pop(session_id, None)
        self.registry.forget(customer_party(session_id))
        if sess is not None:
            await self.sessions.move(session_id, SessionState.ABANDONED, "customer", {"reason": "left"},
                                     end_reason="customer_left")
            await conn.send(server_message("session.ended", msg.id, reason="customer_left"))
            await self._publish_positions(sess.service_code)
        await conn.transport.close(1000, "left")

    async def on_agent_status(self, conn: Connection, msg: Any) -> None:
        self.registry.attrs(conn.party)["status"] = msg.status
        await conn.send(server_message("agent.status", msg.id, status=msg.status))

    # -- queue positions ---------------------------------------------------
    def _order(self, service: str) -> list[str]:
        waiting = [s for s in self._waiting.values() if s.service_code == service]
        waiting.sort(key=lambda s: (-s.priority, s.created_at, s.id))
        return [s.id for s in waiting]

    def _queue_update(self, session_id: str) -> dict[str, Any]:
        sess = self._waiting[session_id]
        position = self._order(sess.service_code).index(session_id) + 1
        return server_message("queue.update", position=position, estimated_wait_s=position * 180)

    async def _publish_positions(self, service: str) -> None:
        for session_id in self._order(service):
            await self.bus.publish(customer_party(session_id), self._queue_update(session_id))

    def _ice_servers(self) -> list[dict[str, Any]]:
        return [s.model_dump(exclude_none=True) for s in self.rt.settings.ice_servers]
