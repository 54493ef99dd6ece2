"""Evidence: the Ed25519 signing key, sealing a session's manifest, and verifying everything.

The pure parts (canonical JSON, hash chains, the manifest's shape) are in
vbranch.domain.evidence; this module reads the database and the recordings.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from recordings.storage import RecordingStorage, StorageError
from vbranch.db.models import AuditLog, CustomerSession, FaceCheck, Manifest, Recording
from vbranch.db.repositories import (
    Catalog,
    Sessions,
    Timeline,
    audit_record,
    timeline_record,
)
from vbranch.domain.checklist import Checklist
from vbranch.domain.evidence import build_manifest, verify_chain
from vbranch.domain.session_state import SessionState
from vbranch.evidence.journal import NewRows
from vbranch.evidence.ports import EvidenceAdapters
from vbranch.evidence.signing import SigningKey


@dataclass(frozen=True)
class SealFacts:
    """What a manifest states about a call besides its journal heads.

    The calls capability gathers them from memory for a call it ran from the start (sealing then
    reads nothing); :func:`read_seal_facts` reads them from the database otherwise (a call that
    was running before a restart).
    """

    session: CustomerSession  # the row as the call's end left it
    reference_photo_sha256: str | None
    recordings: Sequence[Recording]
    face_checks: Sequence[FaceCheck]
    marks: frozenset[str]
    checklist: Checklist


async def read_seal_facts(rt: EvidenceAdapters, session_id: str) -> SealFacts:
    async with rt.db.session() as db:
        repo = Sessions(db)
        sess = await repo.get(session_id)
        if sess is None:
            raise LookupError(f"no session {session_id!r} to seal")
        marked = await Timeline(db).of_kind(session_id, "checklist.mark")
        recordings = await repo.recordings(session_id)
        checks = await repo.face_checks(session_id)
        svc = await Catalog(db).service(sess.service_code)
        photo_sha256 = await repo.reference_photo_sha256(session_id)
    return SealFacts(session=sess, reference_photo_sha256=photo_sha256, recordings=recordings, face_checks=checks,
                     marks=frozenset(e.data.get("step") for e in marked),
                     checklist=Checklist.model_validate({"steps": svc.checklist if svc else []}))


def manifest_body(facts: SealFacts, *, timeline_head: dict[str, Any], audit_head: dict[str, Any],
                  sealed_at: float) -> bytes:
    """The canonical manifest of a call from its facts and the journal heads it pins."""
    sess, checks = facts.session, facts.face_checks
    passed = any(c.match and (c.liveness or {}).get("passed") for c in checks)
    return build_manifest(
        session={"id": sess.id, "service": sess.service_code, "channel": sess.channel,
                 "customer_ref": sess.customer_ref, "agent_id": sess.agent_id, "created_at": sess.created_at,
                 "connected_at": sess.connected_at, "ended_at": sess.ended_at, "end_reason": sess.end_reason,
                 "disposition": sess.disposition,
                 "reference_photo_sha256": facts.reference_photo_sha256},
        recordings=[{"party": r.party, "segment": r.segment, "storage_key": r.storage_key, "sha256": r.sha256,
                     "size_bytes": r.size_bytes, "duration_s": r.duration_s, "started_at": r.started_at,
                     "video_codec": r.video_codec, "audio_codec": r.audio_codec}
                    for r in sorted(facts.recordings, key=lambda r: (r.party, r.segment))],
        timeline_head=timeline_head,
        face_checks=[{"started_at": c.started_at, "match": c.match, "distance": c.distance,
                      "threshold": c.threshold, "liveness": c.liveness, "reasons": c.reasons}
                     for c in sorted(checks, key=lambda c: c.started_at)],
        checklist=facts.checklist.status(set(facts.marks), passed),
        consent=sess.consent or {},
        sealed_at=sealed_at,
        recording_issues=sess.evidence_issues or [],
        audit_head=audit_head,
    )


async def seal_session(rt: EvidenceAdapters, key: SigningKey, session_id: str,
                       facts: SealFacts | None = None) -> Manifest:
    """Build and sign the manifest of a call that has ended (recordings finalised).

    The session's events and the audit rows appended so far are committed first, so the timeline
    head and the audit head the manifest pins include everything the branch has acknowledged.
    ``facts``: what the caller knows of the call (else they are read from the database).
    """
    head = await rt.journal.committed_head(session_id)
    audit_head = await rt.journal.audit_head()
    if facts is None:
        facts = await read_seal_facts(rt, session_id)
    body = manifest_body(facts, timeline_head=head, audit_head=audit_head, sealed_at=rt.clock.now())
    row = Manifest(session_id=session_id, body=body, signature=key.sign(body), key_id=key.key_id,
                   created_at=rt.clock.now())

    # the manifest and the event that says it was sealed commit together
    await rt.journal.record(session_id, "evidence.sealed", "system",
                            {"manifest_sha256": hashlib.sha256(body).hexdigest(), "key_id": key.key_id},
                            change=NewRows((row,), replace=True))
    return row


@dataclass
class Report:
    """What `vbranch verify` found; `problems` empty means intact."""

    checked_sessions: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pinned_audit_heads: list[tuple[str, dict]] = field(default_factory=list)  # (session, {id, hash}) from manifests


def _stored_sha256(storage: RecordingStorage, key: str) -> str | None:
    """The SHA-256 of what the storage holds under ``key`` now, or None if it holds nothing there."""
    try:
        return storage.sha256(key) if storage.exists(key) else None
    except StorageError:  # removed between the two calls
        return None


async def verify_session(rt: EvidenceAdapters, key: SigningKey, sess: CustomerSession, report: Report) -> None:
    sid = sess.id
    storage = rt.storage
    async with rt.db.session() as db:
        events = await Timeline(db).list(sid)
        recordings = {(r.party, r.segment): r for r in await Sessions(db).recordings(sid)}
        manifest = await db.get(Manifest, sid)
    report.checked_sessions += 1
    links = [(timeline_record(e), e.prev_hash, e.hash) for e in events]
    for i in verify_chain(links):
        report.problems.append(f"{sid}: timeline event seq {events[i].seq} ({events[i].kind}) was altered, "
                               "or an event before it was removed")
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        report.problems.append(f"{sid}: timeline events are missing (sequence {seqs[:3]}...)")
    if manifest is None:
        if recordings and sess.state == SessionState.CONNECTED:
            # a call that went on across a restart has stored segments before it is sealed
            report.notes.append(f"{sid}: call in progress; {len(recordings)} recording segment(s) stored, "
                                "not sealed yet")
        elif recordings:
            report.problems.append(f"{sid}: recordings exist but no signed manifest")
        return
    if not key.verify(manifest.body, manifest.signature):
        report.problems.append(f"{sid}: the manifest's signature does not match its content or this branch's key")
    body = json.loads(manifest.body)
    _check_completeness(sid, body, events, report)
    report.pinned_audit_heads.append((sid, body.get("audit_head") or {}))
    head = body["timeline_head"]
    at_head = next((e for e in events if e.seq == head["seq"]), None)
    if at_head is None or at_head.hash != head["hash"]:
        report.problems.append(f"{sid}: the timeline no longer matches the manifest at seq {head['seq']}")
    for entry in body["recordings"]:
        segment = entry.get("segment", 1)  # manifests before version 3 name one recording per party
        party = entry["party"] if segment == 1 else f"{entry['party']} (segment {segment})"
        row = recordings.get((entry["party"], segment))
        if row is None:
            report.problems.append(f"{sid}: the {party} recording's row is missing")
            continue
        if row.sha256 != entry["sha256"] or row.size_bytes != entry["size_bytes"]:
            report.problems.append(f"{sid}: the {party} recording's row differs from the manifest")
        if row.purged_at is not None:
            report.notes.append(f"{sid}: the {party} recording was purged under retention")
            continue
        digest = await asyncio.to_thread(_stored_sha256, storage, entry["storage_key"])
        if digest is None:
            report.problems.append(f"{sid}: the {party} recording's file is missing")
        elif digest != entry["sha256"]:
            report.problems.append(f"{sid}: the {party} recording's file was altered (SHA-256 differs)")


def describe_issue(issue: dict) -> str:
    party, reason = issue.get("party", "?"), issue.get("reason", "?")
    if reason == "gap":
        return (f"{party} not recorded for {issue.get('duration_s')} s "
                f"({issue.get('start_offset_s')}-{issue.get('end_offset_s')} s into the call)")
    return {"never_connected": f"{party} media never connected", "recording_missing": f"{party} recording missing",
            "no_video": f"{party} recording has no video"}.get(reason, f"{party}: {reason}")


def _check_completeness(sid: str, body: dict, events: list, report: Report) -> None:
    """Incomplete dual recording is a problem unless a supervisor acknowledged it (on the timeline)."""
    issues = body.get("recording_issues") or []
    if not issues:
        return
    summary = "; ".join(describe_issue(i) for i in issues)
    ack = next((e for e in events if e.kind == "evidence.acknowledged"), None)
    if ack is None:
        report.problems.append(f"{sid}: evidence incomplete: {summary} (not acknowledged by a supervisor)")
    else:
        report.notes.append(f"{sid}: evidence incomplete: {summary}; acknowledged by {ack.actor}: "
                            f"{ack.data.get('reason')}")


async def verify_audit(rt: EvidenceAdapters, report: Report, key: SigningKey | None = None) -> None:
    async with rt.db.session() as db:
        rows = list((await db.exec(select(AuditLog).order_by(col(AuditLog.id)))).all())
        newest = (await db.exec(select(Manifest).order_by(col(Manifest.created_at).desc()).limit(1))).first()
    if newest is not None and (key is None or key.verify(newest.body, newest.signature)):
        # the newest seal pins the most recent audit head: deleting audit rows up to it shows
        report.pinned_audit_heads.append((newest.session_id, json.loads(newest.body).get("audit_head") or {}))
    for i in verify_chain((audit_record(r), r.prev_hash, r.hash) for r in rows):
        report.problems.append(f"audit log: entry {rows[i].id} ({rows[i].action}) was altered, "
                               "or an entry before it was removed")
    # each manifest pinned the audit head when it was sealed: those rows must still be there, unchanged
    by_id = {r.id: r for r in rows}
    seen: set[int] = set()
    for sid, head in report.pinned_audit_heads:
        if not head.get("id") or head["id"] in seen:
            continue
        seen.add(head["id"])
        row = by_id.get(head["id"])
        if row is None or row.hash != head.get("hash"):
            report.problems.append(f"audit log: entry {head['id']}, pinned by the manifest of {sid}, "
                                   "was removed or altered (the newest audit entries were deleted?)")


async def verify(rt: EvidenceAdapters, key: SigningKey, session_id: str | None = None) -> Report:
    report = Report()
    async with rt.db.session() as db:
        if session_id:
            sess = await Sessions(db).get(session_id)
            if sess is None:
                report.problems.append(f"{session_id}: no such session")
                return report
            sessions = [sess]
        else:
            sessions = list((await db.exec(select(CustomerSession).order_by(CustomerSession.created_at))).all())
    for sess in sessions:
        await verify_session(rt, key, sess, report)
    await verify_audit(rt, report, key)
    return report
