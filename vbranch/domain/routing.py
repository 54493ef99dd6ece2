"""Skills-based routing: the functional core of the queue (no I/O, no asyncio).

Time comes only from the injected ``Clock``. Every operation returns the list of
events it caused, in causal order; an operation that raises ``RoutingError``
changed nothing. Rules and data types are in ``routing_model``.

Definitions
-----------
Agents
    logged-in agents have skills ``{skill: 1-5}`` and a state (``AgentState``):
    available, offered, busy, wrap_up, not_responding, away (offline = not
    logged in, unknown to the engine). Capacity is one call. *Staffed* for a
    service = state not away/offline (not_responding counts) and the skills to
    serve at least one of the service's rings.

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

Dispatch
    After every operation no available agent is eligible for a queued session.
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
    the engine's ``eta_granularity_s``; None when no agent is staffed.
    ``changed_positions()`` returns what changed since last reported;
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
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping
from heapq import heappop, heappush
from typing import Any

from vbranch.clock import Clock
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

# sorted-list entries (tuples compare in C; the unique sequence number keeps the id out of it)
# queue/bucket entry: (key, enqueued_at, seq, session_id)
# by-age entry:       (enqueued_at, seq, session_id)
# pool entry:         (idle_since, -score, agent_seq, agent_id)


class _Pool:
    """Available agents meeting one requirement, longest idle first."""

    __slots__ = ("req", "agents", "buckets")

    def __init__(self, req: tuple[tuple[str, int], ...]) -> None:
        self.req = req
        self.agents: list[tuple[float, int, int, str]] = []
        self.buckets: list[tuple[_Service, int]] = []


class _Service:
    __slots__ = (
        "rules", "code", "aging", "afters", "pools", "buckets", "queue", "by_age", "offered",
        "handle_times", "answered", "abandoned", "answered_total", "abandoned_total",
        "staffed", "available", "pos_dirty",
    )

    def __init__(self, rules: ServiceRules) -> None:
        self.rules = rules
        self.code = rules.code
        self.aging = rules.aging_points_per_min / 60.0  # points per second
        base = tuple(sorted(rules.required_skills.items()))
        rings = [(r.after_s, tuple((s, r.min_proficiency) for s, _ in base)) for r in rules.escalation]
        if not rings or rings[0][0] > 0:
            rings.insert(0, (0.0, base))
        self.afters = [after for after, _ in rings]
        self.pools: list[Any] = [req for _, req in rings]  # requirement tuples until _rebuild
        self.buckets: list[list[tuple[float, float, int, str]]] = [[] for _ in rings]
        self.queue: list[tuple[float, float, int, str]] = []
        self.by_age: list[tuple[float, int, str]] = []
        self.offered = 0
        self.handle_times: deque[float] = deque(maxlen=rules.handle_time_samples)
        self.answered: deque[tuple[float, float]] = deque()  # (at, waited_s)
        self.abandoned: deque[float] = deque()
        self.answered_total = 0
        self.abandoned_total = 0
        self.staffed = 0
        self.available = 0
        self.pos_dirty: int | None = None

    def key(self, priority: int, enq: float, seq: int, sid: str) -> tuple[float, float, int, str]:
        k = enq - priority / self.aging if self.aging > 0 else -float(priority)
        return (k, enq, seq, sid)

    def ring_at(self, enq: float, now: float) -> int:
        r = 0
        afters = self.afters
        for i in range(1, len(afters)):
            if enq + afters[i] <= now:
                r = i
            else:
                break
        return r

    def aht(self) -> float:
        h = self.handle_times
        return sum(h) / len(h) if h else self.rules.default_handle_time_s

    def dirty(self, index: int) -> None:
        if self.pos_dirty is None or index < self.pos_dirty:
            self.pos_dirty = index


class _Session:
    __slots__ = ("sid", "svc", "priority", "enq", "seq", "entry", "ring", "ring_due", "state",
                 "agent", "excluded")

    def __init__(self, sid: str, svc: _Service, priority: int, enq: float, seq: int) -> None:
        self.sid = sid
        self.svc = svc
        self.priority = priority
        self.enq = enq
        self.seq = seq
        self.entry = svc.key(priority, enq, seq, sid)
        self.ring = 0
        self.ring_due: float | None = None
        self.state = QUEUED
        self.agent: str | None = None
        self.excluded: dict[str, float] | None = None  # agent id -> until (declines)


class _Agent:
    __slots__ = ("id", "skills", "seq", "state", "since", "until", "idle_since", "quals", "buckets",
                 "services", "offer_sid", "call_sid", "call_service", "connected_at", "token",
                 "pending_away")

    def __init__(self, agent_id: str, skills: dict[str, int], seq: int, now: float) -> None:
        self.id = agent_id
        self.skills = skills
        self.seq = seq
        self.state = A.OFFLINE
        self.since = now
        self.until: float | None = None
        self.idle_since = now
        self.quals: list[tuple[_Pool, int]] = []  # (pool, -score)
        self.buckets: list[tuple[_Service, list]] = []
        self.services: list[_Service] = []
        self.offer_sid: str | None = None
        self.call_sid: str | None = None
        self.call_service: str | None = None
        self.connected_at = now
        self.token = 0
        self.pending_away = False


def _check_skills(skills: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(skills, Mapping):
        raise RoutingError("invalid_argument", "skills must be a mapping skill -> proficiency")
    out = {}
    for skill, level in skills.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
            raise RoutingError("invalid_argument", f"proficiency of {skill!r} must be 1-5")
        out[str(skill)] = level
    return out


class RoutingEngine:
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
        self._services: dict[str, _Service] = {}
        self._pools: dict[tuple[tuple[str, int], ...], _Pool] = {}
        self._agents: dict[str, _Agent] = {}
        self._sessions: dict[str, _Session] = {}
        self._seq = itertools.count()
        self._agent_seq = itertools.count()
        self._n = itertools.count()
        self._timers: list[tuple[float, int, str, _Agent, int]] = []  # offer / wrap-up ends
        self._ring_heap: list[tuple[float, int, str]] = []
        self._excl_heap: list[tuple[float, int, str]] = []
        self._dirty_s: list[_Session] = []
        self._dirty_a: list[_Agent] = []
        self._counts: dict[AgentState, int] = {s: 0 for s in AgentState if s is not A.OFFLINE}
        self._last_report: dict[str, tuple[int, int | None]] = {}
        self._reported_at: dict[str, tuple[float, int]] = {}
        self._report_heap: list[tuple[float, int, str]] = []
        for rules in services:
            self.add_service(rules)

    # ------------------------------------------------------------------ services
    def add_service(self, rules: ServiceRules | Mapping[str, Any]) -> list[Event]:
        """Add or replace a service's rules; waiting sessions keep their enqueue times."""
        if not isinstance(rules, ServiceRules):
            rules = ServiceRules.from_dict(rules)
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        svc = _Service(rules)
        old = self._services.get(rules.code)
        self._services[rules.code] = svc
        if old is not None:
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
                if s.state is QUEUED:
                    insort(svc.buckets[s.ring], s.entry)
                    self._dirty_s.append(s)
                else:
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
            reqs = [p.req if isinstance(p, _Pool) else p for p in svc.pools]
            svc.pools = []
            for i, req in enumerate(reqs):
                pool = self._pools.get(req)
                if pool is None:
                    pool = self._pools[req] = _Pool(req)
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

    def _qualify(self, a: _Agent) -> None:
        skills = a.skills
        a.quals = []
        a.buckets = []
        ok: set[int] = set()
        for pool in self._pools.values():
            if all(skills.get(k, 0) >= m for k, m in pool.req):
                a.quals.append((pool, -sum(skills.get(k, 0) for k, _ in pool.req)))
                a.buckets.extend((svc, svc.buckets[i]) for svc, i in pool.buckets)
                ok.add(id(pool))
        a.services = [svc for svc in self._services.values() if any(id(p) in ok for p in svc.pools)]

    def _service(self, code: str) -> _Service:
        svc = self._services.get(code)
        if svc is None:
            raise RoutingError("unknown_service", f"no service {code!r}")
        return svc

    # ------------------------------------------------------------------ agents
    def agent_login(self, agent_id: str, skills: Mapping[str, int], *, status: str = "away") -> list[Event]:
        """Log in (state away, or available). Already logged in: update skills, keep state."""
        skills = _check_skills(skills)
        if status not in ("away", "available"):
            raise RoutingError("invalid_argument", "status must be available or away")
        now = self._clock.now()
        self._advance(now)
        events: list[Event] = []
        a = self._agents.get(agent_id)
        if a is None:
            a = _Agent(agent_id, skills, next(self._agent_seq), now)
            self._agents[agent_id] = a
            self._qualify(a)
            self._change(a, A.AVAILABLE if status == "available" else A.AWAY, now, events)
        else:
            state, since = a.state, a.since
            self._change(a, A.OFFLINE, now, [])  # take out of counts and pools, silently
            a.skills = skills
            self._qualify(a)
            self._change(a, state, now, [], a.until)
            a.since = since
        self._dispatch(now, events)
        return events

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

    def restore(self, sessions: Iterable[WaitingSession | tuple[str, str, int, float]]) -> list[Event]:
        """Rebuild the queue after a restart. Give the sessions in their enqueue order (or
        dispatch order); sessions with the same priority and enqueued_at keep the list order."""
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
            self._insert(w.session_id, self._services[w.service], w.priority, float(w.enqueued_at), now)
        self._dispatch(now, events)
        return events

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
                if s.state is QUEUED:
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
            if s.state is QUEUED:
                self._dirty_s.append(s)

    def _schedule_ring(self, s: _Session) -> None:
        afters = s.svc.afters
        if s.ring + 1 < len(afters):
            s.ring_due = s.enq + afters[s.ring + 1]
            heappush(self._ring_heap, (s.ring_due, s.seq, s.sid))
        else:
            s.ring_due = None

    # ------------------------------------------------------------------ core moves
    def _insert(self, sid: str, svc: _Service, priority: int, enq: float, now: float) -> None:
        s = _Session(sid, svc, priority, enq, next(self._seq))
        self._sessions[sid] = s
        i = bisect_left(svc.queue, s.entry)
        svc.queue.insert(i, s.entry)
        svc.dirty(i)
        insort(svc.by_age, (enq, s.seq, sid))
        s.ring = svc.ring_at(enq, now)
        self._schedule_ring(s)
        insort(svc.buckets[s.ring], s.entry)
        self._dirty_s.append(s)

    def _forget(self, s: _Session) -> None:
        """Take a waiting session out of every structure (the caller handles its agent)."""
        svc = s.svc
        if s.state is QUEUED:
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

    def _revoke(self, a: _Agent, reason: RevokeReason, now: float, events: list[Event]) -> None:
        """The agent's offer is withdrawn; the session goes back to its place."""
        s = self._sessions[a.offer_sid]  # type: ignore[index]
        events.append(OfferRevoked(s.sid, a.id, reason))
        a.offer_sid = None
        s.svc.offered -= 1
        s.state = QUEUED
        s.agent = None
        insort(s.svc.buckets[s.ring], s.entry)
        self._dirty_s.append(s)

    def _offer(self, s: _Session, a: _Agent, now: float, events: list[Event]) -> None:
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

    def _end_wrapup(self, a: _Agent, t: float, events: list[Event]) -> None:
        self._record_handle(a, t)
        a.call_sid = None
        a.call_service = None
        a.idle_since = t
        target = A.AWAY if a.pending_away else A.AVAILABLE
        a.pending_away = False
        self._change(a, target, t, events)

    def _record_handle(self, a: _Agent, t: float) -> None:
        svc = self._services.get(a.call_service or "")
        if svc is not None:
            svc.handle_times.append(max(0.0, t - a.connected_at))
            svc.pos_dirty = 0

    def _change(self, a: _Agent, new: AgentState, now: float, events: list[Event],
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

    def _pool_add(self, a: _Agent) -> None:
        t, seq, aid = a.idle_since, a.seq, a.id
        for pool, neg in a.quals:
            insort(pool.agents, (t, neg, seq, aid))

    def _pool_remove(self, a: _Agent) -> None:
        t, seq, aid = a.idle_since, a.seq, a.id
        for pool, neg in a.quals:
            lst = pool.agents
            del lst[bisect_left(lst, (t, neg, seq, aid))]

    # ------------------------------------------------------------------ dispatch
    def _gkey(self, s: _Session, now: float) -> tuple[float, float, float, int]:
        """Global dispatch key (smaller first): effective priority at now, then the service key."""
        k, enq, seq, _ = s.entry
        aging = s.svc.aging
        eff = aging * (now - k) if aging > 0 else float(s.priority)
        return (-eff, k, enq, seq)

    def _find_agent(self, s: _Session, now: float) -> _Agent | None:
        """The longest-idle available agent eligible for the session."""
        lst = s.svc.pools[s.ring].agents
        ex = s.excluded
        if not ex:
            return self._agents[lst[0][3]] if lst else None
        for e in lst:
            if ex.get(e[3], NEVER) <= now:
                return self._agents[e[3]]
        return None

    def _best_session(self, a: _Agent, now: float) -> tuple[tuple[float, float, float, int], _Session] | None:
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
        heap: list[tuple[tuple[float, float, float, int], _Session]] = []
        seen: set[int] = set()
        for s in self._dirty_s:
            if s.state is QUEUED and s.seq not in seen and self._sessions.get(s.sid) is s:
                seen.add(s.seq)
                heap.append((self._gkey(s, now), s))
        self._dirty_s = []
        heap.sort(key=lambda x: x[0]); heap.reverse(); heap = [heap[0]] + sorted(heap[1:], key=lambda x: x[0]) if heap else heap  # a sorted list is a heap
        agents: dict[str, _Agent] = {}
        for a in sorted(self._dirty_a, key=lambda a: (a.idle_since, a.seq)):
            if a.state is A.AVAILABLE and self._agents.get(a.id) is a:
                agents[a.id] = a
        self._dirty_a = []
        cache: dict[str, tuple[tuple[float, float, float, int], _Session]] = {}
        while True:
            top = None
            while heap:
                g, s = heap[0]
                if s.state is QUEUED:
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
                if c is None or c[1].state is not QUEUED:
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
    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise RoutingError("unknown_agent", f"agent {agent_id!r} is not logged in")
        return a

    def _offered(self, agent_id: str, session_id: str) -> _Agent:
        a = self._agent(agent_id)
        if a.state is not A.OFFERED or a.offer_sid != session_id:
            if session_id not in self._sessions:
                raise RoutingError("unknown_session", f"session {session_id!r} is not waiting")
            raise RoutingError("not_offered", f"session {session_id!r} is not offered to {agent_id!r}")
        if a.until is not None and self._clock.now() >= a.until:
            raise RoutingError("offer_expired", f"the offer of {session_id!r} to {agent_id!r} expired")
        return a

    # ------------------------------------------------------------------ queries
    def agent(self, agent_id: str) -> AgentView | None:
        a = self._agents.get(agent_id)
        if a is None:
            return None
        return AgentView(a.id, a.state, a.since, dict(a.skills), a.offer_sid or a.call_sid, a.until,
                         a.idle_since, a.pending_away)

    def agents(self) -> list[AgentView]:
        return [v for aid in self._agents if (v := self.agent(aid)) is not None]

    def session(self, session_id: str) -> SessionView | None:
        """A waiting (queued or offered) session; None once connected, left or unknown."""
        s = self._sessions.get(session_id)
        if s is None:
            return None
        return SessionView(s.sid, s.svc.code, s.priority, s.enq, s.state, s.agent, s.ring,
                           bisect_left(s.svc.queue, s.entry) + 1)

    def waiting_sessions(self) -> list[WaitingSession]:
        """Every waiting session in enqueue order: what restore() needs after a restart."""
        ss = sorted(self._sessions.values(), key=lambda s: s.seq)
        return [WaitingSession(s.sid, s.svc.code, s.priority, s.enq) for s in ss]

    def queue(self, service: str) -> list[str]:
        """The service's waiting sessions in dispatch order (position 1 first)."""
        return [e[3] for e in self._service(service).queue]

    def _eta(self, position: int, aht: float, staffed: int) -> int | None:
        if staffed <= 0:
            return None
        raw = aht * position / staffed
        g = self.eta_granularity_s
        return int(math.ceil(raw / g) * g) if g > 0 else int(math.ceil(raw))

    def position(self, session_id: str) -> PositionUpdate | None:
        """Current position and estimated wait of a waiting session (None if not waiting)."""
        s = self._sessions.get(session_id)
        if s is None:
            return None
        svc = s.svc
        pos = bisect_left(svc.queue, s.entry) + 1
        return PositionUpdate(s.sid, svc.code, pos, self._eta(pos, svc.aht(), svc.staffed))

    def _reported(self, sid: str, val: tuple[int, int | None], now: float) -> None:
        self._last_report[sid] = val
        n = next(self._n)
        self._reported_at[sid] = (now, n)
        heappush(self._report_heap, (now, n, sid))

    def changed_positions(self) -> list[PositionUpdate]:
        """Sessions whose (position, estimated wait) changed since last reported (or never were);
        they count as reported now. Cost is proportional to the part of each queue that moved."""
        now = self._clock.now()
        out: list[PositionUpdate] = []
        last = self._last_report
        for svc in self._services.values():
            start = svc.pos_dirty
            if start is None:
                continue
            svc.pos_dirty = None
            q = svc.queue
            aht, staffed, code = svc.aht(), svc.staffed, svc.code
            for idx in range(start, len(q)):
                sid = q[idx][3]
                val = (idx + 1, self._eta(idx + 1, aht, staffed))
                if last.get(sid) != val:
                    self._reported(sid, val, now)
                    out.append(PositionUpdate(sid, code, val[0], val[1]))
        return out

    def due_position_updates(self, max_age_s: float = 10.0) -> list[PositionUpdate]:
        """Sessions last reported max_age_s ago or more, with their current values (re-reported now)."""
        now = self._clock.now()
        cutoff = now - max_age_s
        heap = self._report_heap
        out: list[PositionUpdate] = []
        while heap and heap[0][0] <= cutoff:
            t, n, sid = heappop(heap)
            if self._reported_at.get(sid) != (t, n):
                continue
            p = self.position(sid)
            if p is None:
                continue
            self._reported(sid, (p.position, p.estimated_wait_s), now)
            out.append(p)
        return out

    def service_status(self, service: str, now: float | None = None) -> ServiceStatus:
        """Open or closed (business hours) and how many agents are staffed / available for it."""
        svc = self._service(service)
        now = self._clock.now() if now is None else now
        hours = svc.rules.business_hours
        opens_at = now if hours is None else hours.next_open(now)
        return ServiceStatus(svc.code, opens_at == now, svc.staffed, svc.available, opens_at)

    def _prune(self, svc: _Service, now: float) -> None:
        start = now - self.stats_window_s
        while svc.answered and svc.answered[0][0] < start:
            svc.answered.popleft()
        while svc.abandoned and svc.abandoned[0] < start:
            svc.abandoned.popleft()

    def stats(self) -> RoutingStats:
        now = self._clock.now()
        out: dict[str, ServiceStats] = {}
        total_w = total_ans = total_ab = 0
        for svc in self._services.values():
            self._prune(svc, now)
            thr = svc.rules.service_level_threshold_s
            ans = len(svc.answered)
            ab = len(svc.abandoned)
            within = sum(1 for _, w in svc.answered if w <= thr)
            hours = svc.rules.business_hours
            out[svc.code] = ServiceStats(
                service=svc.code,
                open=hours is None or hours.is_open(now),
                waiting=len(svc.queue),
                offered=svc.offered,
                longest_wait_s=max(0.0, now - svc.by_age[0][0]) if svc.by_age else 0.0,
                agents_staffed=svc.staffed,
                agents_available=svc.available,
                answered=ans,
                abandoned=ab,
                service_level=within / ans if ans else None,
                abandonment_rate=ab / (ans + ab) if ans + ab else None,
                avg_handle_time_s=svc.aht(),
                answered_total=svc.answered_total,
                abandoned_total=svc.abandoned_total,
            )
            total_w += len(svc.queue)
            total_ans += ans
            total_ab += ab
        by_state = {str(s): n for s, n in self._counts.items()}
        return RoutingStats(now, self.stats_window_s, out, by_state, total_w, total_ans, total_ab,
                            total_ab / (total_ans + total_ab) if total_ans + total_ab else None)
