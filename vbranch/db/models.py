"""SQLModel schema. Times are epoch seconds (float) from the injected clock.

Sessions, timeline and audit rows are the compliance record: timeline and
audit rows carry a hash chain (see vbranch.domain.evidence).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class StaffAccount(SQLModel, table=True):
    __tablename__ = "staff_account"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(max_length=128)
    role: str = Field(max_length=16)  # vbranch.domain.roles.Role
    password_hash: str = Field(max_length=256)
    active: bool = True
    created_at: float


class Skill(SQLModel, table=True):
    __tablename__ = "skill"

    code: str = Field(primary_key=True, max_length=64)
    name_zh: str = Field(max_length=128)
    name_en: str = Field(max_length=128)


class AgentSkill(SQLModel, table=True):
    __tablename__ = "agent_skill"

    account_id: int = Field(foreign_key="staff_account.id", primary_key=True)
    skill_code: str = Field(foreign_key="skill.code", primary_key=True, max_length=64)
    proficiency: int = Field(ge=1, le=5)


class Service(SQLModel, table=True):
    __tablename__ = "service"

    code: str = Field(primary_key=True, max_length=64)
    name_zh: str = Field(max_length=128)
    name_en: str = Field(max_length=128)
    # {skill_code: min_proficiency}
    required_skills: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # [{code, name_zh, name_en, mandatory}]
    checklist: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {timezone, days: [0-6 Monday=0], open: "HH:MM", close: "HH:MM"}; empty = always open
    business_hours: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # [{after_s, min_proficiency}] widening rings; empty = required_skills as they are
    escalation: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    retention_days: int = Field(default=3650, ge=1)
    # False: no new sessions and no offers; sessions already waiting keep their place (docs/routing.md)
    active: bool = True
    # queue settings (docs/routing.md); None = the global default (vbranch.domain.service_rules)
    aging_points_per_min: float | None = None  # priority points gained per minute waited
    offer_timeout_s: float | None = None  # an offer expires after this (default VBRANCH_OFFER_TIMEOUT_S)
    wrapup_s: float | None = None  # wrap-up after a call (default VBRANCH_WRAPUP_S)
    decline_cooldown_s: float | None = None  # a declined session is not re-offered to that agent meanwhile
    service_level_threshold_s: float | None = None  # service level = share answered within this wait
    # session.end is refused while the recordings do not cover both parties (supervisors may override)
    require_complete_recordings: bool = False


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    key_hash: str = Field(max_length=64, unique=True, index=True)  # SHA-256 hex; the key itself is never stored
    created_at: float
    revoked_at: float | None = None


class CustomerSession(SQLModel, table=True):
    __tablename__ = "customer_session"

    id: str = Field(primary_key=True, max_length=32)
    service_code: str = Field(foreign_key="service.code", index=True, max_length=64)
    channel: str = Field(max_length=16)
    customer_ref: str = Field(max_length=128, index=True)
    customer_name: str = Field(max_length=128)
    priority: int = Field(default=0, ge=0, le=9)
    state: str = Field(max_length=16, index=True)
    created_at: float = Field(index=True)
    offered_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    agent_id: int | None = Field(default=None, foreign_key="staff_account.id", index=True)
    end_reason: str | None = Field(default=None, max_length=64)
    disposition: str | None = Field(default=None, max_length=64)
    notes: str | None = None
    consent: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    legal_hold: bool = False
    # evidence_incomplete when non-empty: [{party, reason, ...}] (vbranch.domain.media_coverage)
    evidence_issues: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # a supervisor's acknowledgement of incomplete evidence: {by, reason, at}
    evidence_ack: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ReferencePhoto(SQLModel, table=True):
    __tablename__ = "reference_photo"

    session_id: str = Field(foreign_key="customer_session.id", primary_key=True, max_length=32)
    content_type: str = Field(max_length=32)
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float


class TimelineEvent(SQLModel, table=True):
    __tablename__ = "timeline_event"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="customer_session.id", index=True, max_length=32)
    seq: int
    at: float
    kind: str = Field(max_length=64)
    actor: str = Field(max_length=128)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class Recording(SQLModel, table=True):
    """One segment of a party's recording: a call recorded across a server restart has several."""

    __tablename__ = "recording"
    __table_args__ = (UniqueConstraint("session_id", "party", "segment"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="customer_session.id", index=True, max_length=32)
    party: str = Field(max_length=16)  # customer | agent
    segment: int = 1  # 1, 2, ... in recording order
    storage_key: str = Field(max_length=512)
    container: str = Field(max_length=16)
    video_codec: str | None = Field(default=None, max_length=32)
    audio_codec: str | None = Field(default=None, max_length=32)
    started_at: float
    duration_s: float | None = None
    size_bytes: int | None = None
    sha256: str | None = Field(default=None, max_length=64)
    finalised_at: float | None = None
    purged_at: float | None = None


class FaceCheck(SQLModel, table=True):
    __tablename__ = "face_check"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="customer_session.id", index=True, max_length=32)
    requested_by: int | None = Field(default=None, foreign_key="staff_account.id")
    started_at: float
    finished_at: float | None = None
    match: bool | None = None
    distance: float | None = None
    threshold: float
    liveness: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Review(SQLModel, table=True):
    __tablename__ = "review"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="customer_session.id", index=True, max_length=32)
    reviewer_id: int = Field(foreign_key="staff_account.id")
    verdict: str = Field(max_length=32)
    comment: str = ""
    at: float


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    # one row per chain position: a second writer linking to the same head is refused (no fork)
    __table_args__ = (UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    at: float
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64, index=True)
    session_id: str | None = Field(default=None, index=True, max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class Manifest(SQLModel, table=True):
    """A session's signed evidence manifest: the exact bytes that were signed, and the signature."""

    __tablename__ = "manifest"

    session_id: str = Field(foreign_key="customer_session.id", primary_key=True, max_length=32)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # canonical JSON
    signature: str = Field(max_length=128)  # Ed25519, base64
    key_id: str = Field(max_length=64)  # SHA-256 of the raw public key, hex (first 16 bytes)
    created_at: float


class PresenceRow(SQLModel, table=True):
    """A party's resume token (as SHA-256) and grace deadline: see signaling.presence."""

    __tablename__ = "presence"

    party: str = Field(primary_key=True, max_length=80)
    token_hash: str = Field(max_length=64)
    connected: bool
    grace_until: float | None = None
