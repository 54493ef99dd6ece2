"""Read-side of the routing engine: views, positions and estimated waits, stats,
service status. A mixin of ``RoutingEngine``; see ``routing`` for the definitions."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from heapq import heappop, heappush

from vbranch.clock import Clock
from vbranch.domain.routing_index import Agent, Service, Session
from vbranch.domain.routing_model import (
    AgentState,
    AgentView,
    PositionUpdate,
    RoutingError,
    RoutingStats,
    ServiceStats,
    ServiceStatus,
    SessionView,
    WaitingSession,
)


class RoutingQueries:
    """Queries only: nothing here changes who is offered what."""

    _clock: Clock
    _services: dict[str, Service]
    _agents: dict[str, Agent]
    _sessions: dict[str, Session]
    _counts: dict[AgentState, int]
    _n: itertools.count
    _last_report: dict[str, tuple[int, int | None]]
    _reported_at: dict[str, tuple[float, int]]
    _report_heap: list[tuple[float, int, str]]
    stats_window_s: float
    eta_granularity_s: float

    def _service(self, code: str) -> Service:
        svc = self._services.get(code)
        if svc is None:
            raise RoutingError("unknown_service", f"no service {code!r}")
        return svc

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
                           bisect_left(s.svc.queue, s.entry) + 1, s.away)

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
        return PositionUpdate(s.sid, svc.code, pos, self._eta(pos, svc.aht(), _serving(svc)))

    def _reported(self, sid: str, val: tuple[int, int | None], now: float) -> None:
        self._last_report[sid] = val
        n = next(self._n)
        self._reported_at[sid] = (now, n)
        heap = self._report_heap
        heappush(heap, (now, n, sid))
        if len(heap) > 4 * len(self._reported_at) + 1024:  # drop superseded entries
            heap[:] = sorted((t, k, s) for s, (t, k) in self._reported_at.items())

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
            aht, staffed, code = svc.aht(), _serving(svc), svc.code
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
        """Open or closed (inactive, or outside business hours) and how many agents are staffed /
        available for it. An inactive service is closed with ``opens_at`` None."""
        svc = self._service(service)
        now = self._clock.now() if now is None else now
        hours = svc.rules.business_hours
        active = svc.rules.active
        opens_at = None if not active else now if hours is None else hours.next_open(now)
        return ServiceStatus(svc.code, active and opens_at == now, svc.staffed, svc.available, opens_at, active)

    def _prune(self, svc: Service, now: float) -> None:
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
                open=svc.rules.active and (hours is None or hours.is_open(now)),
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
                active=svc.rules.active,
                service_level_threshold_s=thr,
            )
            total_w += len(svc.queue)
            total_ans += ans
            total_ab += ab
        by_state = {str(s): n for s, n in self._counts.items()}
        return RoutingStats(now, self.stats_window_s, out, by_state, total_w, total_ans, total_ab,
                            total_ab / (total_ans + total_ab) if total_ans + total_ab else None)


def _serving(svc: Service) -> int:
    """The staffing the estimated wait counts on: none while the service is inactive."""
    return svc.staffed if svc.rules.active else 0
