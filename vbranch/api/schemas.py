"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from vbranch.clock import utc
from vbranch.db.models import CustomerSession, Service, TimelineEvent
from vbranch.domain.limits import INT_MAX
from vbranch.domain.service_rules import QUEUE_SETTINGS, QueueDefaults, effective_settings

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]

# per-service queue settings: a JSON number (not a string or a boolean), finite, in range
AgingRate = Annotated[float, Field(ge=0, le=60, strict=True, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=3600, strict=True, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600, strict=True, allow_inf_nan=False)]
OfferSeconds = Annotated[float, Field(gt=0, le=300, strict=True, allow_inf_nan=False)]

# a row's id in a path: a number the database can hold, else 422 (never a 500 from the driver)
RowId = Annotated[int, Path(ge=1, le=INT_MAX)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class LoginOut(BaseModel):
    token: str
    role: str
    expires_at: str
    account_id: int
    display_name: str


class CustomerIn(_In):
    ref: Annotated[str, Field(min_length=1, max_length=128)]
    name: Annotated[str, Field(min_length=1, max_length=128)]


class SessionCreateIn(_In):
    service: Code
    channel: Literal["miniprogram", "app", "h5", "web"]
    customer: CustomerIn
    priority: Annotated[int, Field(ge=0, le=9)] = 0
    reference_photo: str | None = Field(None, description="base64 JPEG or PNG (a data: URL is accepted)")


class ReferencePhotoIn(_In):
    photo: str = Field(description="base64 JPEG or PNG (a data: URL is accepted)")


class SessionCreateOut(BaseModel):
    session_id: str
    join_token: str
    join_url: str
    expires_at: str


class SessionOut(BaseModel):
    session_id: str
    service: str
    channel: str
    customer: dict[str, str]
    priority: int
    state: str
    created_at: str
    offered_at: str | None
    connected_at: str | None
    ended_at: str | None
    agent_id: int | None
    end_reason: str | None
    disposition: str | None
    notes: str | None
    consent: dict[str, Any]
    legal_hold: bool
    evidence_incomplete: bool = Field(description="the recordings do not cover both parties for the whole call")
    evidence_issues: list[dict[str, Any]] = Field(
        description="[{party, reason: never_connected|recording_missing|no_video|gap, start_offset_s?, end_offset_s?, "
                    "duration_s?}]")
    evidence_acknowledged: dict[str, Any] | None = Field(
        description="a supervisor's acknowledgement of incomplete evidence: {by, reason, at}")

    @classmethod
    def of(cls, s: CustomerSession) -> "SessionOut":
        iso = lambda t: utc(t).isoformat() if t is not None else None  # noqa: E731
        return cls(session_id=s.id, service=s.service_code, channel=s.channel,
                   customer={"ref": s.customer_ref, "name": s.customer_name}, priority=s.priority, state=s.state,
                   created_at=iso(s.created_at), offered_at=iso(s.offered_at), connected_at=iso(s.connected_at),
                   ended_at=iso(s.ended_at), agent_id=s.agent_id, end_reason=s.end_reason,
                   disposition=s.disposition, notes=s.notes, consent=s.consent, legal_hold=s.legal_hold,
                   evidence_incomplete=bool(s.evidence_issues), evidence_issues=list(s.evidence_issues or []),
                   evidence_acknowledged=s.evidence_ack)


class SessionPage(BaseModel):
    items: list[SessionOut]
    total: int


class TimelineEventOut(BaseModel):
    seq: int
    at: str
    kind: str
    actor: str
    data: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, e: TimelineEvent) -> "TimelineEventOut":
        return cls(seq=e.seq, at=utc(e.at).isoformat(), kind=e.kind, actor=e.actor, data=e.data, hash=e.hash)


class ChecklistStep(_In):
    code: Code
    name_zh: Annotated[str, Field(min_length=1, max_length=256)]
    name_en: Annotated[str, Field(min_length=1, max_length=256)]
    mandatory: bool = True


class BusinessHours(_In):
    timezone: str = "Asia/Shanghai"
    days: list[Annotated[int, Field(ge=0, le=6)]] = [0, 1, 2, 3, 4]
    open: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "09:00"
    close: Annotated[str, Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")] = "17:00"


class EscalationRing(_In):
    after_s: Annotated[int, Field(ge=0)]
    min_proficiency: Proficiency


class ServiceIn(_In):
    code: Code
    name_zh: Annotated[str, Field(min_length=1, max_length=128)]
    name_en: Annotated[str, Field(min_length=1, max_length=128)]
    required_skills: dict[Code, Proficiency]
    checklist: list[ChecklistStep] = []
    business_hours: BusinessHours | None = None
    escalation: list[EscalationRing] = []
    retention_days: Annotated[int, Field(ge=1, le=36500)] = 3650
    active: bool = Field(True, description="false: no new sessions and no offers; customers already waiting keep "
                                           "their place and are told the service is closed")
    # queue settings (docs/routing.md); null or absent = the global default
    aging_points_per_min: AgingRate | None = Field(
        None, description="priority points gained per minute waited, 0-60 (0: no aging)")
    offer_timeout_s: OfferSeconds | None = Field(None, description="an offer expires after this, > 0 to 300 s")
    wrapup_s: Seconds | None = Field(None, description="wrap-up after a call, 0-3600 s (0: none)")
    decline_cooldown_s: Seconds | None = Field(
        None, description="a declined session is not offered to that agent again for this long, 0-3600 s")
    service_level_threshold_s: PositiveSeconds | None = Field(
        None, description="service level = share of answered sessions that waited at most this, > 0 to 3600 s")


class ServiceOut(BaseModel):
    code: str
    name: str
    name_zh: str
    name_en: str
    required_skills: dict[str, int]
    checklist: list[dict[str, Any]]
    business_hours: dict[str, Any]
    escalation: list[dict[str, Any]]
    retention_days: int
    active: bool

    @classmethod
    def of(cls, s: Service, lang: str = "zh-CN") -> "ServiceOut":
        return cls(code=s.code, name=s.name_en if lang.startswith("en") else s.name_zh, name_zh=s.name_zh,
                   name_en=s.name_en, required_skills=s.required_skills, checklist=s.checklist,
                   business_hours=s.business_hours, escalation=s.escalation, retention_days=s.retention_days,
                   active=s.active)


class ServiceAdminOut(ServiceOut):
    """A service as administrators see it: with its queue settings (null = the global default) and the
    values it runs with."""

    require_complete_recordings: bool
    aging_points_per_min: float | None
    offer_timeout_s: float | None
    wrapup_s: float | None
    decline_cooldown_s: float | None
    service_level_threshold_s: float | None
    effective: dict[str, float] = Field(description="the queue settings in force: the service's own, else the "
                                                    "global defaults")

    @classmethod
    def of_admin(cls, s: Service, defaults: QueueDefaults) -> "ServiceAdminOut":
        base = ServiceOut.of(s).model_dump()
        own = {name: getattr(s, name) for name in QUEUE_SETTINGS}
        return cls(**base, **own, require_complete_recordings=s.require_complete_recordings,
                   effective=effective_settings(s, defaults))


class SkillIn(_In):
    code: Code
    name_zh: Annotated[str, Field(min_length=1, max_length=128)]
    name_en: Annotated[str, Field(min_length=1, max_length=128)]


class AgentIn(_In):
    username: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    password: Annotated[str, Field(min_length=8, max_length=256)]
    display_name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Literal["agent", "supervisor", "reviewer", "admin"] = "agent"
    skills: dict[Code, Proficiency] = {}


class AgentPatch(_In):
    password: Annotated[str, Field(min_length=8, max_length=256)] | None = None
    display_name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    active: bool | None = None
    skills: dict[Code, Proficiency] | None = None


class AgentOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    skills: dict[str, int]


class ApiKeyIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=128)]


class ApiKeyOut(BaseModel):
    id: int
    name: str
    key: str = Field(description="shown once; only its hash is stored")
