"""Skills-based routing: the functional core of the queue (no I/O, no asyncio).

Time comes only from the injected ``Clock``. Every operation returns the list of
events it caused, in causal order; an operation that raises ``RoutingError``
changed nothing. Data types (rules, events, views, errors) are in
``routing_model``, the internal indexes in ``routing_index``, the read side
(positions, stats, service status) in ``routing_queries``; import everything
from here.

Definitions
-----------
Agents
    logged-in agents have skills ``{skill: 1-5}`` and a state (``AgentState``):
    available, offered, busy, wrap_up, not_responding, away (offline = not
    logged in, unknown to the engine). Capacity is one call. *Staffed* for a
    service = state not away/offline (not_responding counts) and the skills to
    serve at least one of the service's rings. ``update_agent_skills`` changes a
    logged-in agent's skills at once: they decide every offer made from then
    on; the agent's state, idle time, an offer under way and a call in
    progress are kept as they are.

Eligibility and escalation rings
    A service's *effective rings* are ``[(0, required_skills)]`` when its
    ``escalation`` is empty; otherwise its escalation rings, preceded by
    ``(0, required_skills)`` when the first ring's ``after_s`` is above 0.
    Ring ``r`` with ``min_proficiency = m`` *replaces* every per-skill minimum:
    the agent must hold every skill named in ``required_skills`` at
    proficiency >= m (the per-skill values are ignored; m may be above or below
    them). A session's ring is the last one with ``enqueued_at + after_s <=
    now`` (rings are reached by waiting; offers and declines do not reset
    ``enqueued_at``). An agent is eligible for a session if its skills meet the
    session's current ring and it has not declined that session within the
    service's ``decline_cooldown_s``.

Order (dispatch order)
    effective priority = priority + aging_points_per_min * waited_minutes; higher
    first, then longer wait, then enqueue order. With linear aging the order
    within a service never changes over time: it is the order of the key
    ``enqueued_at - priority * 60 / aging_points_per_min`` (or ``-priority``
    when aging is 0), then ``enqueued_at``, then enqueue sequence. So equal
    priorities of one service are first-come first-served. Across services
    (an agent with skills for several) effective priorities at ``now`` are
    compared.

Services
    ``add_service`` adds a service or replaces its rules at once (no restart):
    waiting sessions keep their enqueue times and places (re-ordered if the
    aging changed), rings are re-derived from the new escalation, and offers
    follow immediately if the new rules make an agent eligible. Values already
    running keep theirs: an offer made keeps its expiry, a wrap-up its end, a
    decline its cooldown end; the new ``offer_timeout_s``, ``wrapup_s`` and
    ``decline_cooldown_s`` apply to the next offer, wrap-up and decline.
    An *inactive* service (``active`` false) gets no offers: its waiting
    sessions keep their places (new ones may still join, e.g. a customer who
    connects after the switch-off), count as waiting, and are reported with
    no estimated wait and ``open`` false in ``service_status``; an offer
    already made may still be accepted, and calls go on. Reactivating it makes
    the offers in the usual order.

Dispatch
    After every operation no available agent is eligible for a queued session
    of an active service.
    When several become free at once, sessions are served in dispatch order,
    each by the longest-idle eligible available agent (idle since it became
    available: login/away/not_responding -> available, end of wrap-up, or
    decline; a customer_left revocation keeps the old idle time). Ties go to
    the higher proficiency (sum over the service's required skills), then login
    order. One offer per session and per agent at a time.

Offers
    expire after the service's ``offer_timeout_s`` (default 15 s). accept ->
    agent busy, session connected (and forgotten by the engine). decline -> agent
    available (idle time restarts), session back in its place, not re-offered
    to that agent for ``decline_cooldown_s``. timeout (``tick``) -> agent
    not_responding until it sets itself available, session back in its place.
    Agent logout or away -> revoked (agent_left). Customer leaves -> revoked
    (customer_left), agent available again.

Customers away
    ``customer_away`` marks a waiting session whose customer is not connected
    (a dropped socket, a server restart): it keeps its place, its enqueue time,
    ring and cooldowns, counts as waiting and is reported with its position,
    but gets no offers; an offer under way is revoked (customer_away) and the
    agent is available again with its idle time kept. ``customer_back`` makes
    it a candidate again in its old place. Both are idempotent. ``restore(...,
    away=True)`` rebuilds a queue whose customers have yet to come back.

Calls
    ``end_call`` -> wrap_up for the service's ``wrapup_s`` (default 30 s), then
    available (or away, if the agent asked for away during the call);
    ``wrapup_done`` ends it early. Handle time = connect to end of wrap-up.

Positions and estimated wait
    position = 1-based rank of the session among the waiting (queued or
    offered) sessions of its service in dispatch order; it does not depend on
    skills or rings, so it is a rank, not a promise. estimated wait =
    ``ceil(aht * position / staffed / g) * g`` seconds with ``aht`` the mean of
    the service's last ``handle_time_samples`` handle times (default
    ``default_handle_time_s`` = 180 s), ``staffed`` the staffed agents and ``g``
    the engine's ``eta_granularity_s``; None when no agent is staffed or the
    service is inactive. ``changed_positions()`` returns what changed since
    last reported, and every waiting session of a service whose ``active``
    flag or business hours were just changed by ``add_service``;
    ``due_position_updates(10)`` what was last reported 10 s ago or more.

Stats
    over the last ``stats_window_s``: answered, abandoned, service level (share
    of answered sessions whose wait was <= the service's
    ``service_level_threshold_s``), abandonment rate = abandoned / (answered +
    abandoned); live: waiting, longest wait, agents per state.

Timers
    offer expiry and wrap-up end are acted on by ``tick()`` only (an accept at
    or after the expiry raises offer_expired); ring changes and decline
    cooldowns are applied by every operation. ``next_deadline()`` is the
    earliest time ``tick()`` has something to do.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from heapq import heappop, heappush
from typing import Any

from vbranch.clock import Clock
from vbranch.domain.routing_index import Agent, Pool, Service, Session, check_skills
from vbranch.domain.routing_model import (
    STAFFED_STATES,
    AgentState,
    AgentStateChanged,
    AgentView,
    BusinessHours,
    CallEnded,
    EscalationRing,
    Event,
    OfferMade,
    OfferRevoked,
    PositionUpdate,
    RevokeReason,
    RoutingError,
    RoutingStats,
    ServiceRules,
    ServiceStats,
    ServiceStatus,
    SessionConnected,
    SessionLeft,
    SessionView,
    WaitingSession,
)
from vbranch.domain.routing_queries import RoutingQueries
from vbranch.domain.session_state import SessionState

__all__ = [
    "AgentState", "AgentStateChanged", "AgentView", "BusinessHours", "CallEnded", "EscalationRing",
    "Event", "OfferMade", "OfferRevoked", "PositionUpdate", "RoutingEngine", "RoutingError",
    "RoutingStats", "ServiceRules", "ServiceStats", "ServiceStatus", "SessionConnected",
    "SessionLeft", "SessionView", "WaitingSession",
]

A = AgentState
QUEUED, OFFERED = SessionState.QUEUED, SessionState.OFFERED
NEVER = float("-inf")


class RoutingEngine(RoutingQueries):
    """The queue, the agents and the matching between them. Not thread-safe: one caller."""

    def __init__(
        self,
        clock: Clock,
        *,
        services: Iterable[ServiceRules | Mapping[str, Any]] = (),
        stats_window_s: float = 900.0,
        eta_granularity_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self.stats_window_s = float(stats_window_s)
        self.eta_granularity_s = float(eta_granularity_s)
        self._services: dict[str, Service] = {}
        self._pools: dict[tuple[tuple[str, int], ...], Pool] = {}
        self._agents: dict[str, Agent] = {}
        self._sessions: dict[str, Session] = {}
        self._seq = itertools.count()
        self._agent_seq = itertools.count()
        self._n = itertools.count()
        self._timers: list[tuple[float, int, str, Agent, int]] = []  # offer / wrap-up ends
        self._ring_heap: list[tuple[float, int, str]] = []
        self._excl_heap: list[tuple[float, int, str]] = []
        self._dirty_s: list[Session] = []
        self._dirty_a: list[Agent] = []
        self._counts: dict[AgentState, int] = {s: 0 for s in AgentState if s is not A.OFFLINE}
        self._last_report: dict[str, tuple[int, int | None]] = {}
        self._reported_at: dict[str, tuple[float, int]] = {}
        self._report_heap: list[tuple[float, int, str]] = []
        for rules in services:
            self.add_service(rules)

    # ------------------------------------------------------------------ services
    def add_service(self, rules: ServiceRules | Mapping[str, Any]) -> list[Event]:
        """Add or replace a service's rules, at once; waiting sessions keep their enqueue times.

        Replacing rules by equal ones changes nothing. See "Services" in the module docstring."""
        if not isinstance(rules, ServiceRules):
            rules = ServiceRules.from_dict(rules)
        old = self._services.get(rules.code)
        if old is not None and old.rules == rules:
            return []
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        svc = Service(rules)
        self._services[rules.code] = svc
        if old is not None:
            if (old.rules.active, old.rules.business_hours) != (rules.active, rules.business_hours):
                for entry in old.queue:  # their customers are told the new status at once
                    self._last_report.pop(entry[3], None)
            for name in ("answered", "abandoned", "answered_total", "abandoned_total"):
                setattr(svc, name, getattr(old, name))
            svc.handle_times.extend(old.handle_times)
            for entry in old.queue:
                s = self._sessions[entry[3]]
                s.svc = svc
                s.entry = svc.key(s.priority, s.enq, s.seq, s.sid)
                insort(svc.queue, s.entry)
                insort(svc.by_age, (s.enq, s.seq, s.sid))
                s.ring = svc.ring_at(s.enq, now)
                self._schedule_ring(s)
                if s.offerable:
                    insort(svc.buckets[s.ring], s.entry)
                    self._dirty_s.append(s)
                elif s.state is OFFERED:
                    svc.offered += 1
        self._rebuild()
        self._dispatch(now, events)
        return events

    def services(self) -> dict[str, ServiceRules]:
        return {code: svc.rules for code, svc in self._services.items()}

    def _rebuild(self) -> None:
        """Recompute the requirement pools and every agent's qualifications."""
        for a in self._agents.values():
            if a.state is A.AVAILABLE:
                self._pool_remove(a)
        self._pools = {}
        for svc in self._services.values():
            reqs = [p.req if isinstance(p, Pool) else p for p in svc.pools]
            svc.pools = []
            for i, req in enumerate(reqs):
                pool = self._pools.get(req)
                if pool is None:
                    pool = self._pools[req] = Pool(req)
                pool.buckets.append((svc, i))
                svc.pools.append(pool)
            svc.staffed = svc.available = 0
            svc.pos_dirty = 0
        for a in self._agents.values():
            self._qualify(a)
            for svc in a.services:
                svc.staffed += a.state in STAFFED_STATES
                svc.available += a.state is A.AVAILABLE
            if a.state is A.AVAILABLE:
                self._pool_add(a)
                self._dirty_a.append(a)

    def _qualify(self, a: Agent) -> None:
        skills = a.skills
        a.quals = []
        a.buckets = []
        ok: set[int] = set()
        for pool in self._pools.values():
            if all(skills.get(k, 0) >= m for k, m in pool.req):
                a.quals.append((pool, -sum(skills.get(k, 0) for k, _ in pool.req)))
                a.buckets.extend((svc, svc.buckets[i]) for svc, i in pool.buckets if svc.rules.active)
                ok.add(id(pool))
        a.services = [svc for svc in self._services.values() if any(id(p) in ok for p in svc.pools)]

    # ------------------------------------------------------------------ agents
    def agent_login(self, agent_id: str, skills: Mapping[str, int], *, status: str = "away",
                    call: tuple[str, str, float] | None = None) -> list[Event]:
        """Log in (state away, or available). Already logged in: update skills, keep state.

        ``call``: (session id, service, connected_at) of a call the agent is still in (one that was
        running before a restart): the agent logs in busy with it, and ``end_call`` ends it as usual."""
        skills = check_skills(skills)
        if status not in ("away", "available"):
            raise RoutingError("invalid_argument", "status must be available or away")
        a = self._agents.get(agent_id)
        if a is None and call is not None:
            self._service(call[1])
            if call[0] in self._sessions:
                raise RoutingError("duplicate_session", f"session {call[0]!r} is waiting, not in a call")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        if a is None:
            a = Agent(agent_id, skills, next(self._agent_seq), now)
            self._agents[agent_id] = a
            self._qualify(a)
            if call is not None:
                a.call_sid, a.call_service, a.connected_at = call[0], call[1], float(call[2])
                self._change(a, A.BUSY, now, events)
            else:
                self._change(a, A.AVAILABLE if status == "available" else A.AWAY, now, events)
        else:
            self._set_skills(a, skills, now)
        self._dispatch(now, events)
        return events

    def update_agent_skills(self, agent_id: str, skills: Mapping[str, int]) -> list[Event]:
        """A logged-in agent's skills changed (e.g. by an administrator): they apply at once.

        The new skills decide every offer from now on (an available agent may get one
        right away); the agent's state, idle time, an offer under way (with its expiry)
        and a call in progress are kept. Same skills: nothing happens."""
        skills = check_skills(skills)
        a = self._agent(agent_id)
        if skills == a.skills:
            return []
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        self._set_skills(a, skills, now)
        self._dispatch(now, events)
        return events

    def _set_skills(self, a: Agent, skills: dict[str, int], now: float) -> None:
        """New skills, same state (since, until, idle time): no events, counts and pools follow."""
        state, since, until = a.state, a.since, a.until
        self._change(a, A.OFFLINE, now, [])  # take out of counts and pools, silently
        a.skills = skills
        self._qualify(a)
        self._change(a, state, now, [], until)
        a.since = since

    def agent_logout(self, agent_id: str) -> list[Event]:
        a = self._agent(agent_id)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        if a.state is A.OFFERED:
            self._revoke(a, "agent_left", now, events)
        elif a.state is A.BUSY:
            events.append(CallEnded(a.call_sid or "", a.id, a.call_service or "", "agent_left"))
        elif a.state is A.WRAP_UP:
            self._record_handle(a, now)
        self._change(a, A.OFFLINE, now, events)
        del self._agents[agent_id]
        self._dispatch(now, events)
        return events

    def set_agent_status(self, agent_id: str, status: str) -> list[Event]:
        """available | away. During a call it only chooses what follows the wrap-up;
        during wrap-up it ends the wrap-up; away during an offer revokes it."""
        if status not in ("available", "away"):
            raise RoutingError("invalid_argument", "status must be available or away")
        a = self._agent(agent_id)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        st = a.state
        if st is A.BUSY:
            a.pending_away = status == "away"
        elif st is A.WRAP_UP:
            a.pending_away = status == "away"
            self._end_wrapup(a, min(now, a.until if a.until is not None else now), events)
        elif status == "away":
            if st is A.OFFERED:
                self._revoke(a, "agent_left", now, events)
            self._change(a, A.AWAY, now, events)
        elif st in (A.AWAY, A.NOT_RESPONDING):
            a.idle_since = now
            self._change(a, A.AVAILABLE, now, events)
        self._dispatch(now, events)
        return events

    def accept(self, agent_id: str, session_id: str) -> list[Event]:
        a = self._offered(agent_id, session_id)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        s = self._sessions[session_id]
        svc = s.svc
        svc.offered -= 1
        self._forget(s)
        waited = now - s.enq
        svc.answered.append((now, waited))
        svc.answered_total += 1
        self._prune(svc, now)
        a.offer_sid = None
        a.call_sid = session_id
        a.call_service = svc.code
        a.connected_at = now
        a.pending_away = False
        self._change(a, A.BUSY, now, events)
        events.append(SessionConnected(session_id, a.id, svc.code, waited))
        self._dispatch(now, events)
        return events

    def decline(self, agent_id: str, session_id: str) -> list[Event]:
        a = self._offered(agent_id, session_id)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        s = self._sessions[session_id]
        cooldown = s.svc.rules.decline_cooldown_s
        self._revoke(a, "declined", now, events)
        if cooldown > 0:
            if s.excluded is None:
                s.excluded = {}
            s.excluded[a.id] = now + cooldown
            heappush(self._excl_heap, (now + cooldown, s.seq, s.sid))
        a.idle_since = now
        self._change(a, A.AVAILABLE, now, events)
        self._dispatch(now, events)
        return events

    def end_call(self, agent_id: str, session_id: str | None = None) -> list[Event]:
        """The call is over: wrap-up starts (the service's wrapup_s)."""
        a = self._agent(agent_id)
        if a.state is not A.BUSY:
            raise RoutingError("invalid_state", f"agent {agent_id!r} is {a.state}, not busy")
        if session_id is not None and session_id != a.call_sid:
            raise RoutingError("invalid_state", f"agent {agent_id!r} is not in session {session_id!r}")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        svc = self._services.get(a.call_service or "")
        wrapup = svc.rules.wrapup_s if svc else 0.0
        events.append(CallEnded(a.call_sid or "", a.id, a.call_service or "", "ended"))
        a.token += 1
        until = now + wrapup
        self._change(a, A.WRAP_UP, now, events, until)
        if wrapup > 0:
            heappush(self._timers, (until, next(self._n), "wrapup", a, a.token))
        else:
            self._end_wrapup(a, now, events)
        self._dispatch(now, events)
        return events

    def wrapup_done(self, agent_id: str) -> list[Event]:
        a = self._agent(agent_id)
        if a.state is not A.WRAP_UP:
            raise RoutingError("invalid_state", f"agent {agent_id!r} is {a.state}, not in wrap-up")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        self._end_wrapup(a, min(now, a.until if a.until is not None else now), events)
        self._dispatch(now, events)
        return events

    # ------------------------------------------------------------------ sessions
    def enqueue(
        self, session_id: str, service: str, priority: int = 0, *, enqueued_at: float | None = None
    ) -> list[Event]:
        svc = self._service(service)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
            raise RoutingError("invalid_argument", "priority must be an integer 0-9")
        if session_id in self._sessions:
            raise RoutingError("duplicate_session", f"session {session_id!r} is already waiting")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        self._insert(session_id, svc, priority, now if enqueued_at is None else float(enqueued_at), now)
        self._dispatch(now, events)
        return events

    def restore(self, sessions: Iterable[WaitingSession | tuple[str, str, int, float]], *,
                away: bool = False) -> list[Event]:
        """Rebuild the queue after a restart. Give the sessions in their enqueue order (or
        dispatch order); sessions with the same priority and enqueued_at keep the list order.
        ``away``: their customers have yet to come back (see ``customer_back``)."""
        items = [s if isinstance(s, WaitingSession) else WaitingSession(*s) for s in sessions]
        seen: set[str] = set()
        for w in items:
            self._service(w.service)
            if w.session_id in self._sessions or w.session_id in seen:
                raise RoutingError("duplicate_session", f"session {w.session_id!r} twice")
            if isinstance(w.priority, bool) or not isinstance(w.priority, int) or not 0 <= w.priority <= 9:
                raise RoutingError("invalid_argument", "priority must be an integer 0-9")
            seen.add(w.session_id)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        for w in items:
            self._insert(w.session_id, self._services[w.service], w.priority, float(w.enqueued_at), now, away)
        self._dispatch(now, events)
        return events

    def customer_away(self, session_id: str) -> list[Event]:
        """The waiting customer is not connected: it keeps its place but gets no offers."""
        s = self._waiting(session_id)
        if s.away:
            return []
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        if s.state is OFFERED:
            agent = self._agents[s.agent]  # type: ignore[index]
            self._revoke(agent, "customer_away", now, events)
            self._change(agent, A.AVAILABLE, now, events)  # keeps its idle_since
        bucket = s.svc.buckets[s.ring]
        del bucket[bisect_left(bucket, s.entry)]
        s.away = True
        self._dispatch(now, events)
        return events

    def customer_back(self, session_id: str) -> list[Event]:
        """The waiting customer is connected again: offers resume in its old place."""
        s = self._waiting(session_id)
        if not s.away:
            return []
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        s.away = False
        insort(s.svc.buckets[s.ring], s.entry)
        self._dirty_s.append(s)
        self._dispatch(now, events)
        return events

    def _waiting(self, session_id: str) -> Session:
        s = self._sessions.get(session_id)
        if s is None:
            raise RoutingError("unknown_session", f"session {session_id!r} is not waiting")
        return s

    def abandon(self, session_id: str) -> list[Event]:
        """The customer left while waiting (counted as abandoned)."""
        return self._leave(session_id, "abandoned")

    def remove(self, session_id: str) -> list[Event]:
        """Take a waiting session out without counting it as abandoned (e.g. failed)."""
        return self._leave(session_id, "removed")

    def _leave(self, session_id: str, reason: str) -> list[Event]:
        s = self._sessions.get(session_id)
        if s is None:
            raise RoutingError("unknown_session", f"session {session_id!r} is not waiting")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        svc = s.svc
        agent = None
        if s.state is OFFERED:
            agent = self._agents[s.agent]  # type: ignore[index]
            events.append(OfferRevoked(s.sid, agent.id, "customer_left"))
            agent.offer_sid = None
            svc.offered -= 1
        self._forget(s)
        waited = now - s.enq
        if reason == "abandoned":
            svc.abandoned.append(now)
            svc.abandoned_total += 1
            self._prune(svc, now)
        events.append(SessionLeft(s.sid, svc.code, waited, reason))  # type: ignore[arg-type]
        if agent is not None:
            self._change(agent, A.AVAILABLE, now, events)  # keeps its idle_since
        self._dispatch(now, events)
        return events

    # ------------------------------------------------------------------ time
    def tick(self) -> list[Event]:
        """Act on expired offers and wrap-ups, then make the offers that are due."""
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, kind, a, token = heappop(timers)
            if self._agents.get(a.id) is not a or a.token != token:
                continue
            if kind == "offer" and a.state is A.OFFERED:
                self._revoke(a, "timeout", due, events)
                self._change(a, A.NOT_RESPONDING, due, events)
            elif kind == "wrapup" and a.state is A.WRAP_UP:
                self._end_wrapup(a, due, events)
        self._dispatch(now, events)
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which tick() (or any operation) has something to do."""
        best: float | None = None
        timers = self._timers
        while timers:
            due, _, kind, a, token = timers[0]
            if self._agents.get(a.id) is a and a.token == token and a.state is (
                A.OFFERED if kind == "offer" else A.WRAP_UP
            ):
                best = due
                break
            heappop(timers)
        for heap, ring in ((self._ring_heap, True), (self._excl_heap, False)):
            while heap:
                due, seq, sid = heap[0]
                s = self._sessions.get(sid)
                if s is not None and s.seq == seq and (not ring or s.ring_due == due):
                    if best is None or due < best:
                        best = due
                    break
                heappop(heap)
        return best

    def _advance(self, now: float) -> None:
        """Apply ring changes and decline cooldown ends up to now (no events by themselves)."""
        heap = self._ring_heap
        while heap and heap[0][0] <= now:
            due, seq, sid = heappop(heap)
            s = self._sessions.get(sid)
            if s is None or s.seq != seq or s.ring_due != due:
                continue
            # the due time of ring s.ring + 1 has come: at least that ring (never loops)
            ring = max(s.svc.ring_at(s.enq, now), min(s.ring + 1, len(s.svc.afters) - 1))
            if ring != s.ring:
                if s.offerable:
                    bucket = s.svc.buckets[s.ring]
                    del bucket[bisect_left(bucket, s.entry)]
                    insort(s.svc.buckets[ring], s.entry)
                    self._dirty_s.append(s)
                s.ring = ring
            self._schedule_ring(s)
        heap = self._excl_heap
        while heap and heap[0][0] <= now:
            _, seq, sid = heappop(heap)
            s = self._sessions.get(sid)
            if s is None or s.seq != seq or not s.excluded:
                continue
            s.excluded = {k: v for k, v in s.excluded.items() if v > now} or None
            if s.offerable:
                self._dirty_s.append(s)

    def _schedule_ring(self, s: Session) -> None:
        afters = s.svc.afters
        if s.ring + 1 < len(afters):
            s.ring_due = s.enq + afters[s.ring + 1]
            heappush(self._ring_heap, (s.ring_due, s.seq, s.sid))
        else:
            s.ring_due = None

    # ------------------------------------------------------------------ core moves
    def _insert(self, sid: str, svc: Service, priority: int, enq: float, now: float, away: bool = False) -> None:
        s = Session(sid, svc, priority, enq, next(self._seq))
        s.away = away
        self._sessions[sid] = s
        i = bisect_left(svc.queue, s.entry)
        svc.queue.insert(i, s.entry)
        svc.dirty(i)
        insort(svc.by_age, (enq, s.seq, sid))
        s.ring = svc.ring_at(enq, now)
        self._schedule_ring(s)
        if not away:
            insort(svc.buckets[s.ring], s.entry)
            self._dirty_s.append(s)

    def _forget(self, s: Session) -> None:
        """Take a waiting session out of every structure (the caller handles its agent)."""
        svc = s.svc
        if s.offerable:
            bucket = svc.buckets[s.ring]
            del bucket[bisect_left(bucket, s.entry)]
        i = bisect_left(svc.queue, s.entry)
        del svc.queue[i]
        svc.dirty(i)
        age = svc.by_age
        del age[bisect_left(age, (s.enq, s.seq, s.sid))]
        del self._sessions[s.sid]
        self._last_report.pop(s.sid, None)
        self._reported_at.pop(s.sid, None)
        s.state = SessionState.COMPLETED  # anything but queued/offered: stale references see it

    def _revoke(self, a: Agent, reason: RevokeReason, now: float, events: list[Event]) -> None:
        """The agent's offer is withdrawn; the session goes back to its place."""
        s = self._sessions[a.offer_sid]  # type: ignore[index]
        events.append(OfferRevoked(s.sid, a.id, reason))
        a.offer_sid = None
        s.svc.offered -= 1
        s.state = QUEUED
        s.agent = None
        if not s.away:
            insort(s.svc.buckets[s.ring], s.entry)
            self._dirty_s.append(s)

    def _offer(self, s: Session, a: Agent, now: float, events: list[Event]) -> None:
        svc = s.svc
        bucket = svc.buckets[s.ring]
        del bucket[bisect_left(bucket, s.entry)]
        s.state = OFFERED
        s.agent = a.id
        svc.offered += 1
        a.offer_sid = s.sid
        a.token += 1
        until = now + svc.rules.offer_timeout_s
        heappush(self._timers, (until, next(self._n), "offer", a, a.token))
        self._change(a, A.OFFERED, now, events, until)
        events.append(OfferMade(s.sid, a.id, svc.code, until))

    def _end_wrapup(self, a: Agent, t: float, events: list[Event]) -> None:
        self._record_handle(a, t)
        a.call_sid = None
        a.call_service = None
        a.idle_since = t
        target = A.AWAY if a.pending_away else A.AVAILABLE
        a.pending_away = False
        self._change(a, target, t, events)

    def _record_handle(self, a: Agent, t: float) -> None:
        svc = self._services.get(a.call_service or "")
        if svc is not None:
            svc.handle_times.append(max(0.0, t - a.connected_at))
            svc.pos_dirty = 0

    def _change(self, a: Agent, new: AgentState, now: float, events: list[Event],
                until: float | None = None) -> None:
        old = a.state
        if old is new:
            return
        if old is A.AVAILABLE:
            self._pool_remove(a)
        counts = self._counts
        if old is not A.OFFLINE:
            counts[old] -= 1
        if new is not A.OFFLINE:
            counts[new] += 1
        so, sn = old in STAFFED_STATES, new in STAFFED_STATES
        ao, an = old is A.AVAILABLE, new is A.AVAILABLE
        if so != sn or ao != an:
            for svc in a.services:
                if so != sn:
                    svc.staffed += 1 if sn else -1
                    svc.pos_dirty = 0
                if ao != an:
                    svc.available += 1 if an else -1
        a.state = new
        a.since = now
        a.until = until
        if an:
            self._pool_add(a)
            self._dirty_a.append(a)
        events.append(AgentStateChanged(a.id, old, new, until))

    def _pool_add(self, a: Agent) -> None:
        t, seq, aid = a.idle_since, a.seq, a.id
        for pool, neg in a.quals:
            insort(pool.agents, (t, neg, seq, aid))

    def _pool_remove(self, a: Agent) -> None:
        t, seq, aid = a.idle_since, a.seq, a.id
        for pool, neg in a.quals:
            lst = pool.agents
            del lst[bisect_left(lst, (t, neg, seq, aid))]

    # ------------------------------------------------------------------ dispatch
    def _gkey(self, s: Session, now: float) -> tuple[float, float, float, int]:
        """Global dispatch key (smaller first): effective priority at now, then the service key."""
        k, enq, seq, _ = s.entry
        aging = s.svc.aging
        eff = aging * (now - k) if aging > 0 else float(s.priority)
        return (-eff, k, enq, seq)

    def _find_agent(self, s: Session, now: float) -> Agent | None:
        """The longest-idle available agent eligible for the session."""
        lst = s.svc.pools[s.ring].agents
        ex = s.excluded
        if not ex:
            return self._agents[lst[0][3]] if lst else None
        for e in lst:
            if ex.get(e[3], NEVER) <= now:
                return self._agents[e[3]]
        return None

    def _best_session(self, a: Agent, now: float) -> tuple[tuple[float, float, float, int], Session] | None:
        """The first session in dispatch order the agent is eligible for."""
        best = None
        sessions = self._sessions
        aid = a.id
        for svc, bucket in a.buckets:
            for entry in bucket:
                s = sessions[entry[3]]
                if s.excluded and s.excluded.get(aid, NEVER) > now:
                    continue
                g = self._gkey(s, now)
                if best is None or g < best[0]:
                    best = (g, s)
                break
        return best

    def _dispatch(self, now: float, events: list[Event]) -> None:
        """Make offers until no available agent is eligible for a queued session.

        Candidates are the sessions that changed (new, back in the queue, new ring,
        cooldown over) and the best session of each agent that became available;
        the best candidate in dispatch order goes to its longest-idle eligible agent.
        """
        if not self._dirty_s and not self._dirty_a:
            return
        heap: list[tuple[tuple[float, float, float, int], Session]] = []
        seen: set[int] = set()
        for s in self._dirty_s:
            if (s.offerable and s.seq not in seen and s.svc.rules.active
                    and self._sessions.get(s.sid) is s):
                seen.add(s.seq)
                heap.append((self._gkey(s, now), s))
        self._dirty_s = []
        heap.sort(key=lambda x: x[0])  # a sorted list is a heap
        agents: dict[str, Agent] = {}
        for a in sorted(self._dirty_a, key=lambda a: (a.idle_since, a.seq)):
            if a.state is A.AVAILABLE and self._agents.get(a.id) is a:
                agents[a.id] = a
        self._dirty_a = []
        cache: dict[str, tuple[tuple[float, float, float, int], Session]] = {}
        while True:
            top = None
            while heap:
                g, s = heap[0]
                if s.offerable:
                    x = self._find_agent(s, now)
                    if x is not None:
                        top = (g, s, x)
                        break
                heappop(heap)
            for aid in list(agents):
                a = agents[aid]
                if a.state is not A.AVAILABLE:
                    del agents[aid]
                    continue
                c = cache.get(aid)
                if c is None or not c[1].offerable:
                    c = self._best_session(a, now)
                    if c is None:
                        del agents[aid]
                        continue
                    cache[aid] = c
                if top is None or c[0] < top[0]:
                    top = (c[0], c[1], None)
            if top is None:
                return
            _, s, x = top
            if x is None:
                x = self._find_agent(s, now)
            assert x is not None
            self._offer(s, x, now, events)

    # ------------------------------------------------------------------ lookups
    def _agent(self, agent_id: str) -> Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise RoutingError("unknown_agent", f"agent {agent_id!r} is not logged in")
        return a

    def _offered(self, agent_id: str, session_id: str) -> Agent:
        a = self._agent(agent_id)
        if a.state is not A.OFFERED or a.offer_sid != session_id:
            if session_id not in self._sessions:
                raise RoutingError("unknown_session", f"session {session_id!r} is not waiting")
            raise RoutingError("not_offered", f"session {session_id!r} is not offered to {agent_id!r}")
        if a.until is not None and self._clock.now() >= a.until:
            raise RoutingError("offer_expired", f"the offer of {session_id!r} to {agent_id!r} expired")
        return a
