"""Evidence: the public key, manifests, verification, the audit log and legal hold."""

from __future__ import annotations

import base64
import json
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from vbranch.api.deps import DbDep, RuntimeDep, StaffDep, require_roles
from vbranch.api.errors import ApiError
from vbranch.clock import utc
from vbranch.db.models import Manifest
from vbranch.db.repositories import Audit, Sessions
from vbranch.domain.roles import Role
from vbranch.evidence.manifests import verify

router = APIRouter(prefix="/api/v1", tags=["evidence"])


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hold: bool
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class EvidenceAckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


@router.get("/evidence/public-key")
async def public_key(rt: RuntimeDep) -> dict:
    """The key that signs every session's manifest (open: third parties verify with it)."""
    return {"algorithm": "Ed25519", "key_id": rt.signing_key.key_id, "public_key_pem": rt.signing_key.public_pem}


@router.get("/sessions/{session_id}/manifest", dependencies=[require_roles(Role.REVIEWER, Role.ADMIN)])
async def get_manifest(session_id: str, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> dict:
    row = await db.get(Manifest, session_id)
    if row is None:
        raise ApiError(404, "not_found", "this session has no signed manifest")
    await rt.journal.audit(staff.username, "manifest.view", session_id)
    return {"manifest": json.loads(row.body), "manifest_b64": base64.b64encode(row.body).decode(),
            "signature": row.signature, "key_id": row.key_id, "sealed_at": utc(row.created_at).isoformat()}


@router.get("/sessions/{session_id}/verify", dependencies=[require_roles(Role.REVIEWER, Role.ADMIN)])
async def verify_session(session_id: str, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> dict:
    if await Sessions(db).get(session_id) is None:
        raise ApiError(404, "not_found", "no such session")
    report = await verify(rt, rt.signing_key, session_id)
    has_manifest = await db.get(Manifest, session_id) is not None
    await rt.journal.audit(staff.username, "session.verify", session_id,
                           {"ok": not report.problems})
    return {"ok": not report.problems, "sealed": has_manifest, "problems": report.problems, "notes": report.notes}


@router.get("/audit", dependencies=[require_roles(Role.ADMIN)])
async def audit_log(db: DbDep, session_id: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict]:
    return [{"id": r.id, "at": utc(r.at).isoformat(), "actor": r.actor, "action": r.action,
             "session_id": r.session_id, "detail": r.detail, "hash": r.hash}
            for r in await Audit(db).list(session_id, limit)]


@router.put("/sessions/{session_id}/legal-hold", dependencies=[require_roles(Role.ADMIN)])
async def legal_hold(session_id: str, body: LegalHoldIn, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> dict:
    sess = await Sessions(db).get(session_id)
    if sess is None:
        raise ApiError(404, "not_found", "no such session")
    sess.legal_hold = body.hold
    db.add(sess)
    await db.commit()
    await rt.journal.audit(staff.username, "session.legal_hold", session_id,
                           {"hold": body.hold, "reason": body.reason})
    return {"session_id": session_id, "legal_hold": body.hold}


@router.post("/sessions/{session_id}/evidence-acknowledgement",
             dependencies=[require_roles(Role.SUPERVISOR, Role.ADMIN)])
async def acknowledge_incomplete_evidence(session_id: str, body: EvidenceAckIn, staff: StaffDep, rt: RuntimeDep,
                                          db: DbDep) -> dict:
    """A supervisor accepts, with a reason, that a call's recordings do not cover both parties.

    The acknowledgement is audited and appended to the session's timeline (hash-chained),
    so `vbranch verify` then notes the gap instead of failing on it.
    """
    sess = await Sessions(db).get(session_id)
    if sess is None:
        raise ApiError(404, "not_found", "no such session")
    if not sess.evidence_issues:
        raise ApiError(409, "evidence_complete", "this session's evidence is not flagged incomplete")
    if sess.evidence_ack is not None:
        raise ApiError(409, "already_acknowledged", "this session's incomplete evidence was already acknowledged")
    now = rt.clock.now()
    ack = {"by": staff.username, "reason": body.reason, "at": utc(now).isoformat()}
    sess.evidence_ack = ack
    db.add(sess)
    await db.commit()
    await rt.journal.record(session_id, "evidence.acknowledged", staff.username,
                              {"reason": body.reason, "issues": sess.evidence_issues})
    await rt.journal.audit(staff.username, "session.evidence_acknowledged", session_id,
                           {"reason": body.reason, "issues": sess.evidence_issues})
    return {"session_id": session_id, "evidence_acknowledged": ack}
