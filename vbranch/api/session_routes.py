from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from vbranch.api.deps import DbDep, RuntimeDep, SessionsDep, StaffDep, is_valid_api_key, require_roles
from vbranch.api.errors import ApiError
from vbranch.api.schemas import ReferencePhotoIn, SessionCreateIn, SessionCreateOut, SessionOut, SessionPage, TimelineEventOut
from vbranch.domain.limits import INT_MAX
from vbranch.auth import StaffClaims
from vbranch.clock import utc
from vbranch.db.models import CustomerSession
from vbranch.db.repositories import Sessions, Timeline
from vbranch.domain.roles import Role

router = APIRouter(prefix="/api/v1", tags=["sessions"])


async def session_creator(rt: RuntimeDep, db: DbDep, x_api_key: Annotated[str | None, Header()] = None) -> str:
    """Who creates a session: the bank backend with its key (or, in demo mode, the demo page)."""
    if await is_valid_api_key(rt, db, x_api_key):
        return "bank-backend"
    if rt.settings.demo and x_api_key is None:
        return "demo-page"  # the demo customer page creates its own sessions
    raise ApiError(401, "invalid_api_key", "a valid X-Api-Key header is required")


@router.post("/sessions", response_model=SessionCreateOut, status_code=201)
async def create_session(body: SessionCreateIn, rt: RuntimeDep, sessions: SessionsDep, request: Request,
                         actor: Annotated[str, Depends(session_creator)]) -> SessionCreateOut:
    if request.app.state.branch.draining:
        raise ApiError(503, "draining", "this server is shutting down: create the session again in a moment")
    sess, token = await sessions.create(
        service=body.service, channel=body.channel, customer_ref=body.customer.ref,
        customer_name=body.customer.name, priority=body.priority, reference_photo=body.reference_photo,
        created_by=actor)
    claims = rt.tokens.decode_join(token)
    return SessionCreateOut(session_id=sess.id, join_token=token,
                            join_url=f"{rt.settings.public_base_url}/customer/#token={token}",
                            expires_at=utc(claims.expires_at).isoformat())


def may_see(staff: StaffClaims, sess: CustomerSession) -> bool:
    """Agents see only sessions they handled; other staff roles see all."""
    return staff.role != Role.AGENT or sess.agent_id == staff.account_id


async def visible_session(session_id: str, staff: StaffDep, db: DbDep) -> CustomerSession:
    """The session if this staff member may see it (a dependency: checked before the body is read)."""
    sess = await Sessions(db).get(session_id)
    # one answer for "absent" and "not yours", so ids cannot be probed
    if sess is None or not may_see(staff, sess):
        raise ApiError(404, "not_found", "no such session")
    return sess


VisibleSession = Annotated[CustomerSession, Depends(visible_session)]


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(staff: StaffDep, db: DbDep, service: str | None = None, state: str | None = None,
                        since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                        until: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        offset: Annotated[int, Query(ge=0, le=INT_MAX)] = 0) -> SessionPage:
    agent_id = staff.account_id if staff.role == Role.AGENT else None
    items, total = await Sessions(db).search(service=service, state=state, agent_id=agent_id, since=since,
                                             until=until, limit=limit, offset=offset)
    return SessionPage(items=[SessionOut.of(s) for s in items], total=total)


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(sess: VisibleSession, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> SessionOut:
    await rt.journal.audit(staff.username, "session.view", sess.id)
    return SessionOut.of(sess)


@router.get("/sessions/{session_id}/timeline", response_model=list[TimelineEventOut])
async def get_timeline(sess: VisibleSession, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> list[TimelineEventOut]:
    await rt.journal.audit(staff.username, "timeline.view", sess.id)
    return [TimelineEventOut.of(e) for e in await Timeline(db).list(sess.id)]


@router.put("/sessions/{session_id}/reference-photo",
            dependencies=[require_roles(Role.AGENT, Role.SUPERVISOR, Role.ADMIN)])
async def put_reference_photo(sess: VisibleSession, body: ReferencePhotoIn, staff: StaffDep,
                              sessions: SessionsDep) -> dict:
    """Replace the reference photo, e.g. with the customer's ID scanned during the call (the handling agent);
    409 ``session_ended`` once the call has ended (its evidence is sealed)."""
    digest = await sessions.replace_reference_photo(sess.id, body.photo, staff.username)
    return {"session_id": sess.id, "sha256": digest}


@router.get("/queue/stats", dependencies=[require_roles(Role.SUPERVISOR, Role.ADMIN)])
async def queue_stats(request: Request) -> dict:
    return await request.app.state.branch.coordinator.queue_stats()
