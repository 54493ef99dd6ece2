"""The live queue: the routing engine driven by a timer, its decisions persisted and announced.

All engine operations go through `QueueDesk.run`, which holds one lock while it
applies the engine's events (database state, timeline, messages), so every
party sees the decisions in the order they were made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from signaling.bus import MessageBus
from signaling.registry import customer_party, staff_party
from signaling.protocol import server_message
from vbranch.db.models import CustomerSession, Service
from vbranch.db.repositories import Accounts, Catalog, Sessions
from vbranch.domain.routing import RoutingEngine
from vbranch.domain.routing_model import (
    AgentState,
    AgentStateChanged,
    CallEnded,
    Event,
    OfferMade,
    OfferRevoked,
    PositionUpdate,
    RoutingError,
    SessionConnected,
    SessionLeft,
    WaitingSession,
)
from vbranch.domain.session_state import SessionState
from vbranch.runtime import Runtime
from vbranch.sessions import SessionService

log = logging.getLogger(__name__)

POSITION_REFRESH_S = 10.0
WALLBOARD_EVERY_S = 1.0


def rules_of(svc: Service, rt: Runtime) -> dict[str, Any]:
    return {"code": svc.code, "required_skills": svc.required_skills, "escalation": svc.escalation,
            "business_hours": svc.business_hours or None, "offer_timeout_s": rt.settings.offer_timeout_s,
            "wrapup_s": rt.settings.wrapup_s}


class QueueDesk:
    def __init__(self, rt: Runtime, bus: MessageBus, sessions: SessionService,
                 watchers: Callable[[], list[str]]) -> None:
        """`watchers` lists the parties (supervisors) that get wallboard updates."""
        self.rt = rt
        self._watchers = watchers
        self.bus = bus
        self.sessions = sessions
        self.engine = RoutingEngine(rt.clock)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task | None = None
        self._names: dict[str, str] = {}  # agent id -> display name
        self._wrapping: dict[str, str] = {}  # agent id -> session in wrap-up
        self._wallboard_dirty = True
        self._joined_at: dict[str, float] = {}  # for the join-to-offer metric
        self.on_call_over: Callable[[str], Any] | None = None  # media teardown hook
        self.on_call_started: Callable[[str, int, float], Any] | None = None  # media watch hook

    async def start(self) -> None:
        async with self.rt.db.session() as db:
            for svc in await Catalog(db).services():
                self.engine.add_service(rules_of(svc, self.rt))
            waiting = await Sessions(db).in_states([SessionState.QUEUED, SessionState.OFFERED])
        # an offer does not survive a restart: the session goes back to its place
        for sess in waiting:
            if sess.state == SessionState.OFFERED:
                await self.sessions.move(sess.id, SessionState.QUEUED, "system", {"reason": "server_restart"})
        restorable = [WaitingSession(s.id, s.service_code, s.priority, s.created_at) for s in waiting
                      if s.service_code in self.engine.services()]
        self.engine.restore(restorable)
        self._timer = asyncio.create_task(self._run_timer(), name="queue-timer")

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)

    async def reload_services(self) -> None:
        async with self.rt.db.session() as db:
            services = await Catalog(db).services()
        await self.run(lambda: [e for svc in services for e in self.engine.add_service(rules_of(svc, self.rt))])

    async def run(self, op: Callable[[], list[Event]]) -> list[Event]:
        """Run one engine operation and apply its events, in order, under the lock."""
        async with self._lock:
            events = op()
            await self._apply(events)
            await self._announce_positions(self.engine.changed_positions())
        self._wallboard_dirty = True
        self._wake.set()
        return events

    # -- effects of the engine's decisions ------------------------------
    async def _apply(self, events: list[Event]) -> None:
        for ev in events:
            try:
                await self._apply_one(ev)
            except Exception:  # one failed effect must not stop the others (it is logged)
                log.exception("applying %s failed", ev)

    async def _apply_one(self, ev: Event) -> None:
        if isinstance(ev, OfferMade):
            sess = await self.sessions.move(ev.session_id, SessionState.OFFERED, "router",
                                            {"agent_id": int(ev.agent_id)}, offered_at=self.rt.clock.now(),
                                            agent_id=int(ev.agent_id))
            joined = self._joined_at.pop(ev.session_id, None)
            if joined is not None:
                self.rt.metrics.join_to_offer.observe(max(0.0, self.rt.clock.now() - joined))
            await self.bus.publish(staff_party(ev.agent_id), server_message(
                "offer", session_id=ev.session_id, service=ev.service, priority=sess.priority,
                customer={"ref": sess.customer_ref, "name": sess.customer_name, "channel": sess.channel},
                expires_in_s=round(max(0.0, ev.expires_at - self.rt.clock.now()), 1)))
        elif isinstance(ev, OfferRevoked):
            await self.bus.publish(staff_party(ev.agent_id),
                                   server_message("offer.revoked", session_id=ev.session_id, reason=ev.reason))
            if ev.reason != "customer_left":
                await self.sessions.move(ev.session_id, SessionState.QUEUED, "router",
                                         {"agent_id": int(ev.agent_id), "reason": ev.reason}, agent_id=None)
        elif isinstance(ev, SessionConnected):
            sess = await self.sessions.move(ev.session_id, SessionState.CONNECTED, staff_party(ev.agent_id),
                                            {"agent_id": int(ev.agent_id), "waited_s": round(ev.waited_s, 1)},
                                            connected_at=self.rt.clock.now(), agent_id=int(ev.agent_id))
            if self.on_call_started:
                self.on_call_started(ev.session_id, int(ev.agent_id), sess.connected_at)
            await self.bus.publish(staff_party(ev.agent_id),
                                   server_message("session.connected", session_id=ev.session_id))
            await self.bus.publish(customer_party(ev.session_id), server_message(
                "session.assigned", agent_name=self._names.get(ev.agent_id, "agent")))
        elif isinstance(ev, SessionLeft):
            pass  # the caller that removed the session has already recorded why
        elif isinstance(ev, CallEnded):
            self._wrapping[ev.agent_id] = ev.session_id
            if ev.reason == "agent_left":
                await self._interrupt(ev.session_id, "agent_lost")
        elif isinstance(ev, AgentStateChanged):
            await self.bus.publish(staff_party(ev.agent_id), server_message(
                "agent.status", status=str(ev.new), until=ev.until))
            if ev.old == AgentState.WRAP_UP or ev.new == AgentState.OFFLINE:  # wrap-up over (or agent gone)
                session_id = self._wrapping.pop(ev.agent_id, None)
                if session_id:
                    await self._complete(session_id)

    async def _interrupt(self, session_id: str, reason: str) -> None:
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(session_id)
        if sess is not None and sess.state == SessionState.CONNECTED:
            await self.sessions.move(session_id, SessionState.INTERRUPTED, "system", {"reason": reason},
                                     end_reason=reason)
            await self.bus.publish(customer_party(session_id), server_message("session.ended", reason=reason))
            if self.on_call_over:
                await self.on_call_over(session_id)

    async def _complete(self, session_id: str) -> None:
        async with self.rt.db.session() as db:
            sess = await Sessions(db).get(session_id)
        if sess is not None and sess.state in (SessionState.WRAP_UP, SessionState.INTERRUPTED):
            if sess.state == SessionState.INTERRUPTED:
                await self.sessions.move(session_id, SessionState.WRAP_UP, "system")
            await self.sessions.move(session_id, SessionState.COMPLETED, "system")

    async def _announce_positions(self, updates: list[PositionUpdate]) -> None:
        for u in updates:
            await self.bus.publish(customer_party(u.session_id), self.queue_update(u))

    def queue_update(self, u: PositionUpdate) -> dict[str, Any]:
        status = self.engine.service_status(u.service)
        msg = server_message("queue.update", position=u.position, estimated_wait_s=u.estimated_wait_s,
                             service_open=status.open, agents_staffed=status.agents_staffed)
        if not status.open:
            msg["notice"] = "service_closed"
            msg["opens_at"] = status.opens_at
        elif status.agents_staffed == 0:
            msg["notice"] = "no_agents"
        return msg

    async def _run_timer(self) -> None:
        next_refresh = self.rt.clock.now() + POSITION_REFRESH_S
        next_wallboard = 0.0
        while True:
            now = self.rt.clock.now()
            deadline = self.engine.next_deadline()
            wake_at = min(x for x in (deadline, next_refresh, next_wallboard if self._wallboard_dirty else None)
                          if x is not None)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wake_at - now, 1.0)))
            except TimeoutError:
                pass
            now = self.rt.clock.now()
            try:
                if deadline is not None and deadline <= now:
                    await self.run(self.engine.tick)
                if now >= next_refresh:
                    async with self._lock:
                        await self._announce_positions(self.engine.due_position_updates(POSITION_REFRESH_S))
                    next_refresh = now + 1.0
                if self._wallboard_dirty and now >= next_wallboard:
                    self._wallboard_dirty = False
                    next_wallboard = now + WALLBOARD_EVERY_S
                    await self._push_wallboard()
            except Exception:  # the timer must outlive any one failure
                log.exception("queue timer step failed")

    async def _push_wallboard(self) -> None:
        stats = await self.stats()
        for party in self._watchers():
            await self.bus.publish(party, server_message("wallboard.update", **stats))

    # -- queries ---------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        s = self.engine.stats()
        for svc in s.services.values():
            self.rt.metrics.queue_waiting.labels(svc.service).set(svc.waiting)
        agents = [{"id": int(a.agent_id), "name": self._names.get(a.agent_id, a.agent_id), "state": str(a.state),
                   "since": a.since, "session_id": a.session_id} for a in self.engine.agents()]
        return {
            "at": s.at, "window_s": s.window_s, "waiting_total": s.waiting_total, "answered": s.answered,
            "abandoned": s.abandoned, "abandonment_rate": s.abandonment_rate,
            "agents_by_state": s.agents_by_state, "agents": agents,
            "services": {code: {"open": v.open, "waiting": v.waiting, "offered": v.offered,
                                "longest_wait_s": round(v.longest_wait_s, 1), "agents_staffed": v.agents_staffed,
                                "agents_available": v.agents_available, "answered": v.answered,
                                "abandoned": v.abandoned, "service_level": v.service_level,
                                "abandonment_rate": v.abandonment_rate,
                                "avg_handle_time_s": round(v.avg_handle_time_s, 1)}
                         for code, v in s.services.items()},
        }

    # -- operations used by the coordinator -------------------------------
    async def enqueue(self, sess: CustomerSession) -> bool:
        """Put a session in the queue (its place is by creation time); False if it already was."""
        if self.engine.session(sess.id) is not None:
            return False
        self._joined_at[sess.id] = self.rt.clock.now()
        await self.run(lambda: self.engine.enqueue(sess.id, sess.service_code, sess.priority,
                                                   enqueued_at=sess.created_at))
        return True

    def position(self, session_id: str) -> dict[str, Any] | None:
        u = self.engine.position(session_id)
        return self.queue_update(u) if u else None

    async def agent_login(self, account_id: int, display_name: str) -> None:
        agent_id = str(account_id)
        self._names[agent_id] = display_name
        if self.engine.agent(agent_id) is None:
            async with self.rt.db.session() as db:
                skills = await Accounts(db).skills(account_id)
            await self.run(lambda: self.engine.agent_login(agent_id, skills))

    def agent_status(self, account_id: int) -> str:
        view = self.engine.agent(str(account_id))
        return str(view.state) if view else "offline"


__all__ = ["QueueDesk", "RoutingError"]
