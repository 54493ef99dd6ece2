"""Retention: purge recordings past their service's retention, never one under legal hold."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from recordings.playback import delete_copy
from vbranch.db.models import CustomerSession, Recording, Service
from vbranch.evidence.ports import EvidenceAdapters

DAY_S = 86400.0


@dataclass(frozen=True)
class Purge:
    session_id: str
    party: str
    storage_key: str
    reason: str  # "expired" | "held"
    segment: int = 1


async def purge_expired(rt: EvidenceAdapters, *, dry_run: bool = False, actor: str = "retention") -> list[Purge]:
    """Delete expired recordings; returns what was (or would be) purged and what a hold kept."""
    now = rt.clock.now()
    storage = rt.storage
    async with rt.db.session() as db:
        rows = (await db.exec(
            select(Recording, CustomerSession, Service)
            .join(CustomerSession, col(CustomerSession.id) == col(Recording.session_id))
            .join(Service, col(Service.code) == col(CustomerSession.service_code))
            .where(col(Recording.purged_at).is_(None)))).all()
    out: list[Purge] = []
    for rec, sess, svc in rows:
        ended = sess.ended_at or rec.finalised_at or rec.started_at
        if ended + svc.retention_days * DAY_S > now:
            continue
        out.append(Purge(sess.id, rec.party, rec.storage_key, "held" if sess.legal_hold else "expired",
                         rec.segment))
    if dry_run:
        return out
    for p in out:
        async with rt.db.session() as db:
            if p.reason == "held":
                await rt.journal.audit(actor, "recording.purge_blocked", p.session_id,
                                       {"party": p.party, "reason": "legal_hold"})
                continue
            storage.delete(p.storage_key)
            delete_copy(storage, p.storage_key)  # a browser's MP4 copy goes with it
            rec = (await db.exec(select(Recording).where(Recording.session_id == p.session_id,
                                                         Recording.party == p.party,
                                                         Recording.segment == p.segment))).one()
            rec.purged_at = now
            db.add(rec)
            await db.commit()
            await rt.journal.audit(actor, "recording.purge", p.session_id,
                                   {"party": p.party, "segment": p.segment, "storage_key": p.storage_key,
                                    "sha256": rec.sha256})
            await rt.journal.record(p.session_id, "recording.purged", actor,
                                      {"party": p.party, "segment": p.segment, "sha256": rec.sha256})
    return out
