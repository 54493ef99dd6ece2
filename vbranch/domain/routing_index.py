"""Internal index structures of the routing engine (see ``routing``): not a public API.

Everything ordered is a plain sorted list kept with ``bisect`` (C-speed memmove on
insert/delete, in-order iteration for skipping declined pairs, rank = index for
positions). Entries are tuples whose unique sequence number keeps comparisons off
the ids.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from vbranch.domain.routing_model import AgentState, RoutingError, ServiceRules
from vbranch.domain.session_state import SessionState

A = AgentState
QUEUED = SessionState.QUEUED

# sorted-list entries (tuples compare in C; the unique sequence number keeps the id out of it)
# queue/bucket entry: (key, enqueued_at, seq, session_id)
# by-age entry:       (enqueued_at, seq, session_id)
# pool entry:         (idle_since, -score, agent_seq, agent_id)


class Pool:
    """Available agents meeting one requirement, longest idle first."""

    __slots__ = ("req", "agents", "buckets")

    def __init__(self, req: tuple[tuple[str, int], ...]) -> None:
        self.req = req
        self.agents: list[tuple[float, int, int, str]] = []
        self.buckets: list[tuple[Service, int]] = []


class Service:
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


class Session:
    __slots__ = ("sid", "svc", "priority", "enq", "seq", "entry", "ring", "ring_due", "state",
                 "agent", "excluded", "away")

    def __init__(self, sid: str, svc: Service, priority: int, enq: float, seq: int) -> None:
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
        self.away = False  # the customer is not connected: keeps its place, gets no offers

    @property
    def offerable(self) -> bool:
        """Queued with its customer present: in its ring's bucket, a candidate for offers."""
        return self.state is QUEUED and not self.away


class Agent:
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
        self.quals: list[tuple[Pool, int]] = []  # (pool, -score)
        self.buckets: list[tuple[Service, list]] = []
        self.services: list[Service] = []
        self.offer_sid: str | None = None
        self.call_sid: str | None = None
        self.call_service: str | None = None
        self.connected_at = now
        self.token = 0
        self.pending_away = False


def check_skills(skills: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(skills, Mapping):
        raise RoutingError("invalid_argument", "skills must be a mapping skill -> proficiency")
    out = {}
    for skill, level in skills.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
            raise RoutingError("invalid_argument", f"proficiency of {skill!r} must be 1-5")
        out[str(skill)] = level
    return out
