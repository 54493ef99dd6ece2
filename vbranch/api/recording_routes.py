"""Replay endpoints: a session's recordings, their media with HTTP Range, and reviews.

Reviewers and admins only. A <video> element cannot send an Authorization
header, so the listing hands out short-lived media URLs carrying a token bound
to one recording and one account. Every access is audit-logged.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from recordings.playback import ensure_playable, needs_copy
from recordings.storage import RecordingStorage, StorageError, byte_range
from vbranch.api.schemas import RowId
from vbranch.api.deps import DbDep, RuntimeDep, StaffDep, require_roles
from vbranch.api.errors import ApiError
from vbranch.clock import utc
from vbranch.db.models import Recording, Review
from vbranch.db.repositories import Accounts, Sessions
from vbranch.domain.roles import Role

router = APIRouter(prefix="/api/v1", tags=["recordings"])
REPLAY_ROLES = (Role.REVIEWER, Role.ADMIN)


class RecordingOut(BaseModel):
    id: int
    party: str
    segment: int  # 1, 2, ...: a call recorded across a server restart has one segment per side of it
    container: str
    video_codec: str | None
    audio_codec: str | None
    started_at: str
    started_at_epoch: float
    duration_s: float | None
    size_bytes: int | None
    sha256: str | None
    media_url: str
    media_url_expires_at: str


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["approved", "rejected", "needs_followup"]
    comment: Annotated[str, Field(max_length=4000)] = ""


class ReviewOut(BaseModel):
    id: int
    verdict: str
    comment: str
    reviewer: str
    at: str


@router.get("/sessions/{session_id}/recordings", response_model=list[RecordingOut],
            dependencies=[require_roles(*REPLAY_ROLES)])
async def list_recordings(session_id: str, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> list[RecordingOut]:
    if await Sessions(db).get(session_id) is None:
        raise ApiError(404, "not_found", "no such session")
    rows = (await db.exec(select(Recording).where(Recording.session_id == session_id)
                          .order_by(Recording.party, Recording.segment))).all()
    out = []
    for r in rows:
        if r.purged_at is not None:
            continue
        token, exp = rt.tokens.issue_media(r.id, staff.account_id)
        out.append(RecordingOut(id=r.id, party=r.party, segment=r.segment, container=r.container, video_codec=r.video_codec,
                                audio_codec=r.audio_codec, started_at=utc(r.started_at).isoformat(),
                                started_at_epoch=r.started_at, duration_s=r.duration_s, size_bytes=r.size_bytes,
                                sha256=r.sha256, media_url=f"/api/v1/recordings/{r.id}/media?token={token}",
                                media_url_expires_at=utc(exp).isoformat()))
    await rt.journal.audit(staff.username, "recording.list", session_id,
                           {"recordings": [r.id for r in out]})
    return out


@router.get("/recordings/{recording_id}/media")
async def recording_media(recording_id: RowId, rt: RuntimeDep, db: DbDep,
                          token: Annotated[str, Query(min_length=1)],
                          range_: Annotated[str | None, Header(alias="Range")] = None) -> Response:
    rec_id, account_id = rt.tokens.decode_media(token)
    if rec_id != recording_id:
        raise ApiError(403, "forbidden", "this media token is for another recording")
    account = await Accounts(db).get(account_id)
    if account is None or not account.active or account.role not in REPLAY_ROLES:
        raise ApiError(403, "forbidden", "this account may not replay recordings")
    rec = await db.get(Recording, recording_id)
    if rec is None or rec.purged_at is not None:
        raise ApiError(404, "not_found", "no such recording")
    storage = rt.storage
    key = rec.storage_key
    if not await run_in_threadpool(storage.exists, key):
        raise ApiError(404, "not_found", "the recording's file is missing")
    media_type = "video/webm" if rec.container == "webm" else "video/x-matroska"
    if needs_copy(rec.container, rec.video_codec):  # H.264: an MP4 copy, stream-copied once
        key = await asyncio.get_running_loop().run_in_executor(None, ensure_playable, storage, rec.storage_key)
        media_type = "video/mp4"
    async def audit(token_sha256: str) -> None:
        await rt.journal.audit(account.username, "recording.replay", rec.session_id,
                               {"recording_id": rec.id, "party": rec.party, "media_token_sha256": token_sha256,
                                "range": range_})

    # once per media token, whatever range comes first; every request waits for it: no byte goes unaudited
    await rt.replays.audited(token, audit)
    try:
        return await media_response(storage, key, range_, media_type)
    except StorageError:  # purged or removed since the check above
        raise ApiError(404, "not_found", "the recording's file is missing") from None


# -- serving a stored object with HTTP Range (RFC 9110 section 14) ------------
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)
MEDIA_HEADERS = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """A ``Range`` header as ``(start, end)`` for :meth:`RecordingStorage.resolve_range`, or None for the whole object.

    ``bytes=N-`` is ``(N, None)``, ``bytes=N-M`` is ``(N, M)``, ``bytes=-N`` (the last N bytes) is ``(None, N)``.
    A header this server does not serve as one range (another unit, several ranges, bad syntax) is
    ignored, as the RFC allows: the whole object is sent with 200.
    """
    if header is None:
        return None
    match = _RANGE.match(header.replace(" ", "").replace("\t", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return None, int(last)
    if last and int(last) < int(first):
        return None  # invalid range-spec
    return int(first), int(last) if last else None


async def media_response(storage: RecordingStorage, key: str, range_header: str | None, media_type: str) -> Response:
    """``key`` through the storage port: 200 with everything, 206 with one range, 416 if unsatisfiable.

    The bytes are streamed from :meth:`RecordingStorage.iter_range` (read in a worker thread);
    :class:`StorageError` if ``key`` does not exist.
    """
    size = await run_in_threadpool(storage.size, key)
    wanted = parse_range(range_header)
    if wanted is None:
        headers = {**MEDIA_HEADERS, "Content-Length": str(size)}
        if size == 0:
            return Response(b"", status_code=200, media_type=media_type, headers=headers)
        return StreamingResponse(storage.iter_range(key, 0, size - 1), status_code=200, media_type=media_type,
                                 headers=headers)
    try:
        first, last = byte_range(size, *wanted)
    except StorageError:
        return Response(b"", status_code=416, headers={**MEDIA_HEADERS, "Content-Range": f"bytes */{size}"})
    headers = {**MEDIA_HEADERS, "Content-Length": str(last - first + 1),
               "Content-Range": f"bytes {first}-{last}/{size}"}
    return StreamingResponse(storage.iter_range(key, first, last), status_code=206, media_type=media_type,
                             headers=headers)


@router.post("/sessions/{session_id}/review", response_model=ReviewOut, status_code=201,
             dependencies=[require_roles(Role.REVIEWER)])
async def review_session(session_id: str, body: ReviewIn, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> ReviewOut:
    sess = await Sessions(db).get(session_id)
    if sess is None:
        raise ApiError(404, "not_found", "no such session")
    if sess.state not in ("completed", "interrupted", "failed"):
        raise ApiError(409, "invalid_state", f"a {sess.state} session cannot be reviewed yet")
    row = Review(session_id=session_id, reviewer_id=staff.account_id, verdict=body.verdict, comment=body.comment,
                 at=rt.clock.now())
    db.add(row)
    await db.commit()
    await rt.journal.audit(staff.username, "session.review", session_id,
                           {"verdict": body.verdict, "comment": body.comment})
    return ReviewOut(id=row.id, verdict=row.verdict, comment=row.comment, reviewer=staff.username,
                     at=utc(row.at).isoformat())


@router.get("/sessions/{session_id}/reviews", response_model=list[ReviewOut],
            dependencies=[require_roles(Role.REVIEWER, Role.SUPERVISOR, Role.ADMIN)])
async def list_reviews(session_id: str, db: DbDep) -> list[ReviewOut]:
    rows = (await db.exec(select(Review).where(Review.session_id == session_id).order_by(Review.at))).all()
    names = {a.id: a.username for a in await Accounts(db).list()}
    return [ReviewOut(id=r.id, verdict=r.verdict, comment=r.comment, reviewer=names.get(r.reviewer_id, "?"),
                      at=utc(r.at).isoformat()) for r in rows]
