"""The live queue: the routing engine driven by a timer, its decisions persisted and announced.

All engine operations go through `QueueDesk.run`. The engine decides at once
(it is pure and fast) and its events go to an outbox; one task takes whatever
the outbox holds, persists it (the state changes and their timeline events,
group-committed by the evidence journal) and then announces it, in the order
the decisions were made. Nothing waits on a socket (each connection writes
from its own outbox, signaling.registry), and no lock is held across I/O, so
a slow phone or a slow commit never stalls the decisions. `run` returns once
its own decision is persisted and announced. A failed persist is retried
until it succeeds (the decision stays in order behind it), never dropped.

Queue positions are coalesced: a waiting customer hears of a change at most
once a second (and at least every 10 s), not once per decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from signaling.bus import MessageBus
from signaling.registry import customer_party, staff_party
from signaling.protocol import server_message
from vbranch.db.models import CustomerSession, Service
from vbranch.db.repositories import Accounts, Catalog, Sessions
from vbranch.domain.routing import RoutingEngine
from vbranch.domain.service_rules import QueueDefaults, rules_for
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
from vbranch.evidence.journal import JournalError
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime

log = logging.getLogger(__name__)

POSITION_REFRESH_S = 10.0
POSITION_MIN_INTERVAL_S = 1.0
POSITION_CHECK_EVERY_S = 0.2
WALLBOARD_EVERY_S = 1.0
PERSIST_RETRY_MAX_S = 2.0
# the database is away or busy: worth retrying (anything else is a disagreement or a bug)
RETRYABLE = (JournalError, DBAPIError, OSError)


@dataclass(eq=False)
class _Decision:
    events: list[Event]
    done: asyncio.Future[None]


def rules_of(svc: Service, rt: Runtime) -> dict[str, Any]:
    """The engine's rules for a service row: its own queue settings, else the global defaults."""
    return rules_for(svc, QueueDefaults.from_settings(rt.settings))


class QueueDesk:
    def __init__(self, rt: Runtime, bus: MessageBus, sessions: SessionService,
                 watchers: Callable[[], list[str]]) -> None:
        """`watchers` lists the parties (supervisors) that get wallboard updates."""
        self.rt = rt
        self._watchers = watchers
        self.bus = bus
        self.sessions = sessions
        self.engine = RoutingEngine(rt.clock)
        self._outbox: list[_Decision] = []
        self._effects_wake = asyncio.Event()
        self._effects: asyncio.Task | None = None
        self._followups: dict[str, asyncio.Task] = {}  # session id -> call-over work (media, seal)
        self._dirty_positions: set[str] = set()
        self._positions_changed = False
        self._positions_checked = -1e18
        self._position_sent: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.Task | None = None
        self._names: dict[str, str] = {}  # agent id -> display name
        self._wrapping: dict[str, str] = {}  # agent id -> session in wrap-up
        self._wallboard_dirty = True
        self._joined_at: dict[str, float] = {}  # for the join-to-offer metric
        # the calls capability's hooks (wired in vbranch.bootstrap): a call has connected; its agent is
        # gone for good; the agent's wrap-up is over
        self.on_call_started: Callable[[str, int, float], Awaitable[None]] | None = None
        self.on_agent_lost: Callable[[str, str], Awaitable[None]] | None = None
        self.on_wrapup_over: Callable[[str], Awaitable[None]] | None = None

    async def start(self) -> None:
        async with self.rt.db.session() as db:
            for svc in await Catalog(db).services(active_only=False):
                self.engine.add_service(rules_of(svc, self.rt))
            waiting = await Sessions(db).in_states([SessionState.QUEUED, SessionState.OFFERED])
        # an offer does not survive a restart: the session goes back to its place
        for sess in waiting:
            if sess.state == SessionState.OFFERED:
                await self.sessions.move(sess.id, SessionState.QUEUED, "system", {"reason": "server_restart"})
        restorable = [WaitingSession(s.id, s.service_code, s.priority, s.created_at) for s in waiting
                      if s.service_code in self.engine.services()]
        self.engine.restore(restorable, away=True)  # offered only once their customers are back
        self._effects = asyncio.create_task(self._run_effects(), name="queue-effects")
        self._timer = asyncio.create_task(self._run_timer(), name="queue-timer")

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        pending = [d.done for d in self._outbox]
        if pending and self._effects is not None and not self._effects.done():
            await asyncio.wait(pending, timeout=10)  # what was decided is persisted before we go
        if self._effects:
            self._effects.cancel()
            await asyncio.gather(self._effects, return_exceptions=True)
        if self._followups:
            await asyncio.gather(*self._followups.values(), return_exceptions=True)

    async def reload_services(self) -> None:
        async with self.rt.db.session() as db:
            services = await Catalog(db).services(active_only=False)
        await self.run(lambda: [e for svc in services for e in self.engine.add_service(rules_of(svc, self.rt))])

    async def run(self, op: Callable[[], list[Event]]) -> list[Event]:
        """Run one engine operation now; return once its events are persisted and announced, in order.

        The decision itself is made at once, without waiting for anything (``op`` is the pure
        engine's), so decisions are ordered exactly as they were made.
        """
        decision = self.decide(op)
        await asyncio.shield(decision.done)
        return decision.events

    def decide(self, op: Callable[[], list[Event]]) -> _Decision:
        """Run one engine operation now and queue its effects (``run`` without waiting for them)."""
        events = op()
        self._positions_changed = True  # worked out by the timer, at most a few times a second
        decision = _Decision(events, asyncio.get_running_loop().create_future())
        self._outbox.append(decision)
        self._effects_wake.set()
        self._wallboard_dirty = True
        self._wake.set()
        return decision

    # -- effects of the engine's decisions ------------------------------
    async def _run_effects(self) -> None:
        while True:
            await self._effects_wake.wait()
            self._effects_wake.clear()
            while self._outbox:
                decisions, self._outbox = self._outbox, []
                events = [ev for d in decisions for ev in d.events]
                try:
                    persisted = await self._persist_all(events)
                    for ev in events:
                        try:
                            await self._announce(ev, persisted.get(id(ev)))
                        except Exception:  # an announcement that cannot be made is logged, the rest go on
                            log.exception("announcing %s failed", ev)
                finally:
                    for d in decisions:
                        if not d.done.done():
                            d.done.set_result(None)

    async def _persist_all(self, events: list[Event]) -> dict[int, CustomerSession]:
        """Every state change of these events, concurrently (one group commit), each retried until it holds."""
        results = await asyncio.gather(*(self._persist(ev) for ev in events))
        return {id(ev): sess for ev, sess in zip(events, results) if sess is not None}

    async def _persist(self, ev: Event) -> CustomerSession | None:
        """Persist one event's state change; retried while the database is away, never dropped silently."""
        delay = 0.05
        while True:
            try:
                return await self._persist_once(ev)
            except RETRYABLE:
                log.warning("persisting %s failed; retrying in %.2f s", ev, delay, exc_info=True)
                self.rt.metrics.desk_persist_failures.labels("retried").inc()
            except Exception:
                # the engine and the database disagree (or a bug): say so loudly, do not retry forever
                log.error("the state change for %s does not hold in the database", ev, exc_info=True)
                self.rt.metrics.desk_persist_failures.labels("rejected").inc()
                return None
            await asyncio.sleep(delay)
            delay = min(PERSIST_RETRY_MAX_S, delay * 2)

    async def _persist_once(self, ev: Event) -> CustomerSession | None:
        now = self.rt.clock.now()
        if isinstance(ev, OfferMade):
            return await self.sessions.move(ev.session_id, SessionState.OFFERED, "router",
                                            {"agent_id": int(ev.agent_id)}, offered_at=now,
                                            agent_id=int(ev.agent_id))
        if isinstance(ev, OfferRevoked) and ev.reason != "customer_left":
            return await self.sessions.move(ev.session_id, SessionState.QUEUED, "router",
                                            {"agent_id": int(ev.agent_id), "reason": ev.reason}, agent_id=None)
        if isinstance(ev, SessionConnected):
            return await self.sessions.move(ev.session_id, SessionState.CONNECTED, staff_party(ev.agent_id),
                                            {"agent_id": int(ev.agent_id), "waited_s": round(ev.waited_s, 1)},
                                            connected_at=now, agent_id=int(ev.agent_id))
        return None

    async def _announce(self, ev: Event, sess: CustomerSession | None) -> None:
        if isinstance(ev, OfferMade):
            self._dirty_positions.discard(ev.session_id)  # no longer waiting for a position
            self._position_sent.pop(ev.session_id, None)
            joined = self._joined_at.pop(ev.session_id, None)
            if joined is not None:
                self.rt.metrics.join_to_offer.observe(max(0.0, self.rt.clock.now() - joined))
            customer = {"ref": sess.customer_ref, "name": sess.customer_name, "channel": sess.channel} if sess else {}
            await self.bus.publish(staff_party(ev.agent_id), server_message(
                "offer", session_id=ev.session_id, service=ev.service, priority=sess.priority if sess else 0,
                customer=customer, expires_in_s=round(max(0.0, ev.expires_at - self.rt.clock.now()), 1)))
        elif isinstance(ev, OfferRevoked):
            await self.bus.publish(staff_party(ev.agent_id),
                                   server_message("offer.revoked", session_id=ev.session_id, reason=ev.reason))
        elif isinstance(ev, SessionConnected):
            if self.on_call_started and sess is not None:
                await self.on_call_started(ev.session_id, int(ev.agent_id), sess.connected_at)
            await self.bus.publish(staff_party(ev.agent_id),
                                   server_message("session.connected", session_id=ev.session_id))
            await self.bus.publish(customer_party(ev.session_id), server_message(
                "session.assigned", agent_name=self._names.get(ev.agent_id, "agent")))
        elif isinstance(ev, SessionLeft):
            pass  # the caller that removed the session has already recorded why
        elif isinstance(ev, CallEnded):
            self._wrapping[ev.agent_id] = ev.session_id
            if ev.reason == "agent_left" and self.on_agent_lost:
                self.follow_up(ev.session_id, self.on_agent_lost(ev.session_id, "agent_lost"))
        elif isinstance(ev, AgentStateChanged):
            await self.bus.publish(staff_party(ev.agent_id), server_message(
                "agent.status", status=str(ev.new), until=ev.until))
            if ev.old == AgentState.WRAP_UP or ev.new == AgentState.OFFLINE:  # wrap-up over (or agent gone)
                session_id = self._wrapping.pop(ev.agent_id, None)
                if session_id and self.on_wrapup_over:
                    self.follow_up(session_id, self.on_wrapup_over(session_id))

    async def settled(self, session_id: str) -> None:
        """Wait until the session's follow-ups (including ones they queue) are done."""
        while (task := self._followups.get(session_id)) is not None:
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)  # a follow-up's done-callback runs; a later one may follow

    def follow_up(self, session_id: str, work: Any) -> asyncio.Task:
        """Slow work about one session (media teardown, sealing, completion), in order per session,
        off the decisions' path; the task is returned to wait for."""
        before = self._followups.get(session_id)

        async def after() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            try:
                await work
            except Exception:
                log.exception("follow-up for %s failed", session_id)

        task = asyncio.create_task(after())
        self._followups[session_id] = task
        task.add_done_callback(lambda t: self._followups.pop(session_id, None)
                               if self._followups.get(session_id) is t else None)
        return task

    async def _announce_positions(self, updates: list[PositionUpdate]) -> None:
        now = self.rt.clock.now()
        for u in updates:
            self._position_sent[u.session_id] = now
            self._dirty_positions.discard(u.session_id)
            await self.bus.publish(customer_party(u.session_id), self.queue_update(u))

    async def _flush_positions(self) -> None:
        """Send the changed positions not sent in the last second (the others wait for a later pass)."""
        now = self.rt.clock.now()
        due = []
        for sid in list(self._dirty_positions):
            if now - self._position_sent.get(sid, -1e18) < POSITION_MIN_INTERVAL_S:
                continue
            u = self.engine.position(sid)
            if u is None:  # no longer waiting
                self._dirty_positions.discard(sid)
                self._position_sent.pop(sid, None)
            else:
                due.append(u)
        await self._announce_positions(due)

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
            positions_at = (max(now, self._positions_checked + POSITION_CHECK_EVERY_S)
                            if (self._dirty_positions or self._positions_changed) else None)
            wake_at = min(x for x in (deadline, next_refresh, next_wallboard if self._wallboard_dirty else None,
                                      positions_at) if x is not None)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wake_at - now, 1.0)))
            except TimeoutError:
                pass
            now = self.rt.clock.now()
            try:
                if deadline is not None and deadline <= now:
                    self.decide(self.engine.tick)  # its effects follow in order; the timer goes on
                if positions_at is not None and now >= positions_at:
                    self._positions_checked = now
                    if self._positions_changed:
                        self._positions_changed = False
                        self._dirty_positions.update(u.session_id for u in self.engine.changed_positions())
                    await self._flush_positions()
                if now >= next_refresh:
                    await self._announce_positions(self.engine.due_position_updates(POSITION_REFRESH_S))
                    next_refresh = now + 1.0
                if self._wallboard_dirty and now >= next_wallboard:
                    self._wallboard_dirty = False
                    next_wallboard = now + WALLBOARD_EVERY_S
                    await self._push_wallboard()
            except Exception:  # the timer must outlive any one failure
                log.exception("queue timer step failed")

    async def _push_wallboard(self) -> None:
        watchers = self._watchers()
        if not watchers:  # the gauges only: the agent list is not built for nobody
            self._gauge_waiting(self.engine.stats())
            return
        stats = await self.stats()
        for party in watchers:
            await self.bus.publish(party, server_message("wallboard.update", **stats))

    def _gauge_waiting(self, s: Any) -> None:
        for svc in s.services.values():
            self.rt.metrics.queue_waiting.labels(svc.service).set(svc.waiting)

    # -- queries ---------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        s = self.engine.stats()
        self._gauge_waiting(s)
        agents = [{"id": int(a.agent_id), "name": self._names.get(a.agent_id, a.agent_id), "state": str(a.state),
                   "since": a.since, "session_id": a.session_id} for a in self.engine.agents()]
        return {
            "at": s.at, "window_s": s.window_s, "waiting_total": s.waiting_total, "answered": s.answered,
            "abandoned": s.abandoned, "abandonment_rate": s.abandonment_rate,
            "agents_by_state": s.agents_by_state, "agents": agents,
            "services": {code: {"open": v.open, "active": v.active,
                                "service_level_threshold_s": v.service_level_threshold_s, "waiting": v.waiting, "offered": v.offered,
                                "longest_wait_s": round(v.longest_wait_s, 1), "agents_staffed": v.agents_staffed,
                                "agents_available": v.agents_available, "answered": v.answered,
                                "abandoned": v.abandoned, "service_level": v.service_level,
                                "abandonment_rate": v.abandonment_rate,
                                "avg_handle_time_s": round(v.avg_handle_time_s, 1)}
                         for code, v in s.services.items()},
        }

    # -- operations used by the coordinator -------------------------------
    async def customer_here(self, sess: CustomerSession) -> bool:
        """The waiting customer said hello. A new session joins the queue (its place is by creation
        time); one that was away (a dropped socket, a restart) gets offers again in its old place.
        True if it joined now."""
        view = self.engine.session(sess.id)
        if view is None:
            self._joined_at[sess.id] = self.rt.clock.now()
            await self.run(lambda: self.engine.enqueue(sess.id, sess.service_code, sess.priority,
                                                       enqueued_at=sess.created_at))
            return True
        if view.away:
            await self.run(lambda: self.engine.customer_back(sess.id))
        return False

    async def customer_away(self, session_id: str) -> None:
        """The waiting customer's connection is gone: it keeps its place but gets no offers."""
        view = self.engine.session(session_id)
        if view is not None and not view.away:
            await self.run(lambda: self.engine.customer_away(session_id))

    def position(self, session_id: str) -> dict[str, Any] | None:
        u = self.engine.position(session_id)
        return self.queue_update(u) if u else None

    async def agent_login(self, account_id: int, display_name: str) -> None:
        agent_id = str(account_id)
        self._names[agent_id] = display_name
        if self.engine.agent(agent_id) is None:
            async with self.rt.db.session() as db:
                skills = await Accounts(db).skills(account_id)
                # a call that was running when the server restarted is the agent's again (busy)
                sess = await Sessions(db).call_of(account_id)
            call = ((sess.id, sess.service_code, sess.connected_at or sess.created_at)
                    if sess is not None and sess.service_code in self.engine.services() else None)
            await self.run(lambda: self.engine.agent_login(agent_id, skills, call=call))

    async def update_agent_skills(self, account_id: int) -> None:
        """An administrator changed the agent's skills: a logged-in agent gets them at once."""
        agent_id = str(account_id)
        if self.engine.agent(agent_id) is None:
            return  # not logged in: the next login reads them
        async with self.rt.db.session() as db:
            skills = await Accounts(db).skills(account_id)
        await self.run(lambda: self.engine.update_agent_skills(agent_id, skills)
                       if self.engine.agent(agent_id) is not None else [])

    def agent_status(self, account_id: int) -> str:
        view = self.engine.agent(str(account_id))
        return str(view.state) if view else "offline"


__all__ = ["QueueDesk", "RoutingError"]
