"""Administration: staff accounts with skills, skills, services, API keys (admin role only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vbranch.api.deps import DbDep, RuntimeDep, StaffDep, require_roles
from vbranch.api.errors import ApiError
from vbranch.api.schemas import (
    RowId,
    AgentIn,
    AgentOut,
    AgentPatch,
    ApiKeyIn,
    ApiKeyOut,
    ServiceAdminOut,
    ServiceIn,
    SkillIn,
)
from vbranch.auth import hash_api_key, hash_password_off_loop, new_api_key
from vbranch.db.models import ApiKey, Service, Skill, StaffAccount
from vbranch.db.repositories import Accounts, Catalog
from vbranch.domain.roles import Role
from vbranch.domain.routing_model import RoutingError
from vbranch.domain.service_rules import QUEUE_SETTINGS, QueueDefaults, check_rules

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[require_roles(Role.ADMIN)])


async def _check_skills(db, skills: dict[str, int]) -> None:
    unknown = sorted(set(skills) - await Catalog(db).skill_codes())
    if unknown:
        raise ApiError(422, "unknown_skill", f"unknown skill(s): {', '.join(unknown)}")


async def _agent_out(db, a: StaffAccount) -> AgentOut:
    return AgentOut(id=a.id, username=a.username, display_name=a.display_name, role=a.role, active=a.active,
                    skills=await Accounts(db).skills(a.id))


@router.get("/agents", response_model=list[AgentOut])
async def list_agents(db: DbDep, role: str | None = None) -> list[AgentOut]:
    return [await _agent_out(db, a) for a in await Accounts(db).list(role)]


@router.post("/agents", response_model=AgentOut, status_code=201)
async def create_agent(body: AgentIn, staff: StaffDep, rt: RuntimeDep, db: DbDep, request: Request) -> AgentOut:
    accounts = Accounts(db)
    if await accounts.by_username(body.username):
        raise ApiError(409, "username_taken", f"username {body.username!r} is taken")
    await _check_skills(db, body.skills)
    account = StaffAccount(username=body.username, display_name=body.display_name, role=body.role,
                           password_hash=await hash_password_off_loop(body.password), created_at=rt.clock.now())
    db.add(account)
    await db.flush()
    await accounts.set_skills(account.id, body.skills)
    await db.commit()
    await rt.journal.audit(staff.username, "admin.account_create", None,
                           {"account": body.username, "role": body.role, "skills": body.skills})
    return await _agent_out(db, account)


@router.patch("/agents/{account_id}", response_model=AgentOut)
async def update_agent(account_id: RowId, body: AgentPatch, staff: StaffDep, rt: RuntimeDep, db: DbDep,
                       request: Request) -> AgentOut:
    accounts = Accounts(db)
    account = await accounts.get(account_id)
    if account is None:
        raise ApiError(404, "not_found", "no such account")
    changed = body.model_dump(exclude_none=True)
    if body.password is not None:
        account.password_hash = await hash_password_off_loop(body.password)
    if body.display_name is not None:
        account.display_name = body.display_name
    if body.active is not None:
        account.active = body.active
    if body.skills is not None:
        await _check_skills(db, body.skills)
        await accounts.set_skills(account.id, body.skills)
    db.add(account)
    await db.commit()
    changed.pop("password", None) and changed.setdefault("password", "changed")
    await rt.journal.audit(staff.username, "admin.account_update", None,
                           {"account": account.username, "changes": changed})
    await request.app.state.branch.coordinator.account_changed(account.id)
    return await _agent_out(db, account)


@router.get("/skills")
async def list_skills(db: DbDep) -> list[dict]:
    return [s.model_dump() for s in await Catalog(db).skills()]


@router.post("/skills", status_code=201)
async def create_skill(body: SkillIn, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> dict:
    if body.code in await Catalog(db).skill_codes():
        raise ApiError(409, "skill_exists", f"skill {body.code!r} exists")
    db.add(Skill(**body.model_dump()))
    await db.commit()
    await rt.journal.audit(staff.username, "admin.skill_create", None, body.model_dump())
    return body.model_dump()


@router.get("/services", response_model=list[ServiceAdminOut])
async def list_all_services(db: DbDep, rt: RuntimeDep) -> list[ServiceAdminOut]:
    defaults = QueueDefaults.from_settings(rt.settings)
    return [ServiceAdminOut.of_admin(s, defaults) for s in await Catalog(db).services(active_only=False)]


@router.put("/services/{code}", response_model=ServiceAdminOut)
async def put_service(code: str, body: ServiceIn, staff: StaffDep, rt: RuntimeDep, db: DbDep,
                      request: Request) -> ServiceAdminOut:
    """Create or replace a service (omitted queue settings go back to the global defaults). The
    running queue takes the change at once (docs/routing.md, "Changing services and skills")."""
    if body.code != code:
        raise ApiError(422, "invalid_request", "the code in the path and the body differ")
    await _check_skills(db, body.required_skills)
    data = body.model_dump()
    data["business_hours"] = data["business_hours"] or {}
    defaults = QueueDefaults.from_settings(rt.settings)
    try:  # what the routing engine would refuse is refused here, before it is stored
        check_rules(data, defaults)
    except RoutingError as exc:
        raise ApiError(422, "invalid_rules", exc.message) from None
    svc = await Catalog(db).service(code)
    if svc is None:
        svc = Service(**data)
    else:
        for key, value in data.items():
            setattr(svc, key, value)
    db.add(svc)
    await db.commit()
    await rt.journal.audit(staff.username, "admin.service_put", None,
                           {"service": code, "active": body.active,
                            **{name: data[name] for name in QUEUE_SETTINGS}})
    await request.app.state.branch.coordinator.services_changed()
    return ServiceAdminOut.of_admin(svc, defaults)


@router.post("/api-keys", response_model=ApiKeyOut, status_code=201)
async def create_api_key(body: ApiKeyIn, staff: StaffDep, rt: RuntimeDep, db: DbDep) -> ApiKeyOut:
    key = new_api_key()
    row = ApiKey(name=body.name, key_hash=hash_api_key(key), created_at=rt.clock.now())
    db.add(row)
    await db.commit()
    await rt.journal.audit(staff.username, "admin.api_key_create", None, {"name": body.name})
    return ApiKeyOut(id=row.id, name=row.name, key=key)
