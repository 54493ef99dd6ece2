"""Data of the routing engine: rules, events, views and errors (pure, no I/O).

The engine itself and the precise routing rules are in ``vbranch.domain.routing``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from datetime import time as dtime
from enum import StrEnum
from typing import Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vbranch.domain.session_state import SessionState


class RoutingError(Exception):
    """An operation the engine refuses; nothing was changed.

    Codes: unknown_agent, unknown_session, unknown_service, duplicate_session,
    not_offered, offer_expired, invalid_state, invalid_argument, invalid_rules.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentState(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    NOT_RESPONDING = "not_responding"
    AWAY = "away"


#: logged in and not away: these count as "staffed" for a service they have the skills for
STAFFED_STATES = frozenset(
    {AgentState.AVAILABLE, AgentState.OFFERED, AgentState.BUSY, AgentState.WRAP_UP, AgentState.NOT_RESPONDING}
)

RevokeReason: TypeAlias = Literal["declined", "timeout", "agent_left", "customer_left", "customer_away"]


# ---------------------------------------------------------------------------
# rules


def _minutes(text: str, *, allow_24: bool) -> int:
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except (ValueError, AttributeError):
        raise RoutingError("invalid_rules", f"time {text!r} is not HH:MM") from None
    if allow_24 and (h, m) == (24, 0):
        return 1440
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise RoutingError("invalid_rules", f"time {text!r} is out of range")
    return h * 60 + m


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours in a time zone.

    ``days`` are weekdays, Monday = 0 … Sunday = 6 (``datetime.weekday()``).
    Open from ``open`` (inclusive) to ``close`` (exclusive), local time; close
    may be "24:00". If close <= open the span runs past midnight and belongs to
    the day it starts on (``days`` = [4], 22:00-06:00 is Friday 22:00 to
    Saturday 06:00).
    """

    timezone: str
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    open: str = "00:00"
    close: str = "24:00"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise RoutingError("invalid_rules", f"unknown time zone {self.timezone!r}") from None
        days = tuple(sorted(set(int(d) for d in self.days)))
        if any(not 0 <= d <= 6 for d in days):
            raise RoutingError("invalid_rules", "days are 0 (Monday) to 6 (Sunday)")
        object.__setattr__(self, "days", days)
        _minutes(self.open, allow_24=False)
        _minutes(self.close, allow_24=True)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, self.zone)
        t = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        o, c = _minutes(self.open, allow_24=False), _minutes(self.close, allow_24=True)
        wd = local.weekday()
        if o < c:
            return wd in self.days and o <= t < c
        prev = (wd - 1) % 7
        return (wd in self.days and t >= o) or (prev in self.days and t < c)

    def next_open(self, ts: float) -> float | None:
        """``ts`` if open now, else the next opening time (epoch seconds); None if never."""
        if self.is_open(ts):
            return ts
        if not self.days:
            return None
        zone = self.zone
        o = _minutes(self.open, allow_24=False)
        today = datetime.fromtimestamp(ts, zone).date()
        for k in range(0, 9):
            d = today + timedelta(days=k)
            if d.weekday() not in self.days:
                continue
            start = datetime.combine(d, dtime(o // 60, o % 60), tzinfo=zone).timestamp()
            if start > ts:
                return start
        return None

    @classmethod
    def from_value(cls, value: BusinessHours | Mapping[str, Any] | None) -> BusinessHours | None:
        if value is None or isinstance(value, BusinessHours):
            return value
        if not value:  # {} = always open
            return None
        try:
            return cls(
                timezone=value["timezone"],
                days=tuple(value.get("days", (0, 1, 2, 3, 4, 5, 6))),
                open=value.get("open", "00:00"),
                close=value.get("close", "24:00"),
            )
        except KeyError as exc:
            raise RoutingError("invalid_rules", f"business_hours needs {exc.args[0]!r}") from None


@dataclass(frozen=True)
class EscalationRing:
    """From ``after_s`` seconds of waiting on, every required skill needs ``min_proficiency``."""

    after_s: float
    min_proficiency: int


def _check_level(value: Any, what: str, code: str = "invalid_rules") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise RoutingError(code, f"{what} must be an integer 1-5, got {value!r}")
    return value


@dataclass(frozen=True)
class ServiceRules:
    """Routing rules of one service (see the module docstring of ``routing``)."""

    code: str
    required_skills: Mapping[str, int] = field(default_factory=dict)
    escalation: tuple[EscalationRing, ...] = ()
    aging_points_per_min: float = 1.0
    offer_timeout_s: float = 15.0
    wrapup_s: float = 30.0
    decline_cooldown_s: float = 30.0
    service_level_threshold_s: float = 20.0
    default_handle_time_s: float = 180.0
    handle_time_samples: int = 20
    business_hours: BusinessHours | None = None
    #: False: the service is switched off; its waiting sessions keep their place but get no offers
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code:
            raise RoutingError("invalid_rules", "a service needs a code")
        if not isinstance(self.active, bool):
            raise RoutingError("invalid_rules", "active must be true or false")
        skills = {}
        for skill, level in dict(self.required_skills).items():
            skills[str(skill)] = _check_level(level, f"required proficiency of {skill!r}")
        object.__setattr__(self, "required_skills", skills)
        rings = []
        for ring in self.escalation:
            if isinstance(ring, Mapping):
                try:
                    ring = EscalationRing(float(ring["after_s"]), ring["min_proficiency"])
                except KeyError as exc:
                    raise RoutingError("invalid_rules", f"an escalation ring needs {exc.args[0]!r}") from None
            _check_level(ring.min_proficiency, "a ring's min_proficiency")
            if not ring.after_s >= 0:
                raise RoutingError("invalid_rules", "a ring's after_s must be >= 0")
            if rings and ring.after_s <= rings[-1].after_s:
                raise RoutingError("invalid_rules", "escalation rings must have increasing after_s")
            rings.append(EscalationRing(float(ring.after_s), ring.min_proficiency))
        object.__setattr__(self, "escalation", tuple(rings))
        object.__setattr__(self, "business_hours", BusinessHours.from_value(self.business_hours))
        for name in ("aging_points_per_min", "offer_timeout_s", "wrapup_s", "decline_cooldown_s",
                     "service_level_threshold_s", "default_handle_time_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise RoutingError("invalid_rules", f"{name} must be a finite number >= 0")
            object.__setattr__(self, name, float(value))
        if self.offer_timeout_s <= 0:
            raise RoutingError("invalid_rules", "offer_timeout_s must be > 0")
        if not isinstance(self.handle_time_samples, int) or self.handle_time_samples < 1:
            raise RoutingError("invalid_rules", "handle_time_samples must be an integer >= 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceRules:
        """Build from JSON-like data; keys that are not rules (name, checklist, …) are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "escalation" in kwargs:
            kwargs["escalation"] = tuple(kwargs["escalation"] or ())
        return cls(**kwargs)


# ---------------------------------------------------------------------------
# events (returned by every engine operation, in causal order)


@dataclass(frozen=True, slots=True)
class OfferMade:
    session_id: str
    agent_id: str
    service: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class OfferRevoked:
    """The offer is gone; unless reason is customer_left the session is back in its place."""

    session_id: str
    agent_id: str
    reason: RevokeReason


@dataclass(frozen=True, slots=True)
class SessionConnected:
    session_id: str
    agent_id: str
    service: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class SessionLeft:
    """A waiting session left the queue: abandoned (counted in stats) or removed (not counted)."""

    session_id: str
    service: str
    waited_s: float
    reason: Literal["abandoned", "removed"]


@dataclass(frozen=True, slots=True)
class CallEnded:
    session_id: str
    agent_id: str
    service: str
    reason: Literal["ended", "agent_left"]


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """``until`` is the offer's expiry (offered) or the wrap-up's end (wrap_up), else None."""

    agent_id: str
    old: AgentState
    new: AgentState
    until: float | None = None


Event: TypeAlias = OfferMade | OfferRevoked | SessionConnected | SessionLeft | CallEnded | AgentStateChanged


# ---------------------------------------------------------------------------
# views (read-only answers to queries)


@dataclass(frozen=True, slots=True)
class WaitingSession:
    """What the engine needs to rebuild its queue after a restart."""

    session_id: str
    service: str
    priority: int
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    session_id: str
    service: str
    position: int
    estimated_wait_s: int | None  # None: no agent staffed for the service


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: str
    open: bool  # active and within business hours
    agents_staffed: int
    agents_available: int
    opens_at: float | None  # now if open, the next opening if closed, None if never (or inactive)
    active: bool = True  # False: switched off by an administrator (no offers are made)


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    state: AgentState
    since: float
    skills: Mapping[str, int]
    session_id: str | None  # offered or connected session
    until: float | None
    idle_since: float
    away_after_call: bool


@dataclass(frozen=True, slots=True)
class SessionView:
    session_id: str
    service: str
    priority: int
    enqueued_at: float
    state: SessionState  # queued or offered
    agent_id: str | None
    ring: int  # index into the service's effective rings (see routing docstring)
    position: int
    away: bool = False  # the customer is not connected (see "Customers away" in the routing docstring)


@dataclass(frozen=True, slots=True)
class ServiceStats:
    service: str
    open: bool
    waiting: int  # queued + offered
    offered: int
    longest_wait_s: float
    agents_staffed: int
    agents_available: int
    answered: int  # in the window
    abandoned: int  # in the window
    service_level: float | None  # share of answered (window) with wait <= threshold
    abandonment_rate: float | None  # abandoned / (answered + abandoned), window
    avg_handle_time_s: float
    answered_total: int
    abandoned_total: int
    active: bool = True
    service_level_threshold_s: float = 20.0  # the threshold service_level was computed with


@dataclass(frozen=True, slots=True)
class RoutingStats:
    at: float
    window_s: float
    services: dict[str, ServiceStats]
    agents_by_state: dict[str, int]
    waiting_total: int
    answered: int
    abandoned: int
    abandonment_rate: float | None
