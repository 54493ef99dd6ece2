"""Repositories: the only place that speaks SQL. Each takes an AsyncSession."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vbranch.db.models import (
    AgentSkill,
    ApiKey,
    AuditLog,
    CustomerSession,
    FaceCheck,
    Recording,
    ReferencePhoto,
    Service,
    Skill,
    StaffAccount,
    TimelineEvent,
)
from vbranch.domain.session_state import SessionState


class Accounts:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def by_username(self, username: str) -> StaffAccount | None:
        return (await self.db.exec(select(StaffAccount).where(StaffAccount.username == username))).first()

    async def get(self, account_id: int) -> StaffAccount | None:
        return await self.db.get(StaffAccount, account_id)

    async def list(self, role: str | None = None) -> list[StaffAccount]:
        q = select(StaffAccount).order_by(StaffAccount.username)
        if role:
            q = q.where(StaffAccount.role == role)
        return list((await self.db.exec(q)).all())

    async def skills(self, account_id: int) -> dict[str, int]:
        rows = await self.db.exec(select(AgentSkill).where(AgentSkill.account_id == account_id))
        return {r.skill_code: r.proficiency for r in rows}

    async def all_skills(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = defaultdict(dict)
        for r in await self.db.exec(select(AgentSkill)):
            out[r.account_id][r.skill_code] = r.proficiency
        return dict(out)

    async def set_skills(self, account_id: int, skills: dict[str, int]) -> None:
        for r in await self.db.exec(select(AgentSkill).where(AgentSkill.account_id == account_id)):
            await self.db.delete(r)
        await self.db.flush()
        for code, level in skills.items():
            self.db.add(AgentSkill(account_id=account_id, skill_code=code, proficiency=level))


class Catalog:
    """Skills and services."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def skills(self) -> list[Skill]:
        return list((await self.db.exec(select(Skill).order_by(Skill.code))).all())

    async def skill_codes(self) -> set[str]:
        return set((await self.db.exec(select(Skill.code))).all())

    async def services(self, active_only: bool = True) -> list[Service]:
        q = select(Service).order_by(Service.code)
        if active_only:
            q = q.where(Service.active == True)  # noqa: E712
        return list((await self.db.exec(q)).all())

    async def service(self, code: str) -> Service | None:
        return await self.db.get(Service, code)


class ApiKeys:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def active_by_hash(self, key_hash: str) -> ApiKey | None:
        q = select(ApiKey).where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
        return (await self.db.exec(q)).first()


class Sessions:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def get(self, session_id: str) -> CustomerSession | None:
        return await self.db.get(CustomerSession, session_id)

    async def reference_photo(self, session_id: str) -> ReferencePhoto | None:
        return await self.db.get(ReferencePhoto, session_id)

    async def reference_photo_sha256(self, session_id: str) -> str | None:
        """The photo's digest without loading the image."""
        q = select(ReferencePhoto.sha256).where(ReferencePhoto.session_id == session_id)
        return (await self.db.exec(q)).first()

    async def face_checks(self, session_id: str) -> list[FaceCheck]:
        q = select(FaceCheck).where(FaceCheck.session_id == session_id).order_by(FaceCheck.started_at)
        return list((await self.db.exec(q)).all())

    async def recordings(self, session_id: str) -> list[Recording]:
        q = select(Recording).where(Recording.session_id == session_id).order_by(Recording.party, Recording.segment)
        return list((await self.db.exec(q)).all())

    async def call_of(self, agent_id: int) -> CustomerSession | None:
        """The call the agent is in (connected), if any: what a restart must give back to it."""
        q = select(CustomerSession).where(CustomerSession.agent_id == agent_id,
                                          CustomerSession.state == SessionState.CONNECTED)
        return (await self.db.exec(q)).first()

    async def in_states(self, states: list[str]) -> list[CustomerSession]:
        q = select(CustomerSession).where(col(CustomerSession.state).in_(states)).order_by(
            CustomerSession.created_at, CustomerSession.id)
        return list((await self.db.exec(q)).all())

    async def search(self, *, service: str | None = None, state: str | None = None,
                     agent_id: int | None = None, since: float | None = None, until: float | None = None,
                     limit: int = 50, offset: int = 0) -> tuple[list[CustomerSession], int]:
        q = select(CustomerSession)
        if service:
            q = q.where(CustomerSession.service_code == service)
        if state:
            q = q.where(CustomerSession.state == state)
        if agent_id is not None:
            q = q.where(CustomerSession.agent_id == agent_id)
        if since is not None:
            q = q.where(CustomerSession.created_at >= since)
        if until is not None:
            q = q.where(CustomerSession.created_at < until)
        total = (await self.db.exec(select(func.count()).select_from(q.subquery()))).one()
        q = q.order_by(col(CustomerSession.created_at).desc()).limit(limit).offset(offset)
        return list((await self.db.exec(q)).all()), int(total)


def timeline_record(ev: TimelineEvent) -> dict[str, Any]:
    """The fields a timeline link's hash covers."""
    return {"session_id": ev.session_id, "seq": ev.seq, "at": ev.at, "kind": ev.kind,
            "actor": ev.actor, "data": ev.data}


def audit_record(row: AuditLog) -> dict[str, Any]:
    return {"at": row.at, "actor": row.actor, "action": row.action,
            "session_id": row.session_id, "detail": row.detail}


class Timeline:
    """Reads a session's timeline. Appends go through the evidence journal (vbranch.evidence.journal), its one writer."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def list(self, session_id: str) -> list[TimelineEvent]:
        q = select(TimelineEvent).where(TimelineEvent.session_id == session_id).order_by(TimelineEvent.seq)
        return list((await self.db.exec(q)).all())

    async def head(self, session_id: str) -> TimelineEvent | None:
        """The newest event of a session's timeline."""
        q = (select(TimelineEvent).where(TimelineEvent.session_id == session_id)
             .order_by(col(TimelineEvent.seq).desc()).limit(1))
        return (await self.db.exec(q)).first()

    async def of_kind(self, session_id: str, kind: str) -> list[TimelineEvent]:
        """One kind of event only (e.g. checklist marks), without reading the whole timeline."""
        q = (select(TimelineEvent).where(TimelineEvent.session_id == session_id, TimelineEvent.kind == kind)
             .order_by(TimelineEvent.seq))
        return list((await self.db.exec(q)).all())


class Audit:
    """Reads the audit log. Appends go through the evidence journal (vbranch.evidence.journal), its one writer."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def list(self, session_id: str | None = None, limit: int = 200) -> list[AuditLog]:
        q = select(AuditLog).order_by(AuditLog.id)
        if session_id:
            q = q.where(AuditLog.session_id == session_id)
        return list((await self.db.exec(q.limit(limit))).all())
