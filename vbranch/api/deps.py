"""FastAPI dependencies: the running branch's runtime and session service, staff tokens by role, API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from vbranch.api.errors import ApiError
from vbranch.auth import AuthError, StaffClaims, constant_time_in, hash_api_key
from vbranch.db.repositories import Accounts, ApiKeys
from vbranch.domain.roles import Role
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.branch.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_sessions(request: Request) -> SessionService:
    return request.app.state.branch.sessions


SessionsDep = Annotated[SessionService, Depends(get_sessions)]


async def get_db(rt: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with rt.db.session() as s:
        yield s


DbDep = Annotated[AsyncSession, Depends(get_db)]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("unauthenticated", "an Authorization: Bearer token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("unauthenticated", "use an Authorization: Bearer token")
    return token.strip()


async def current_staff(rt: RuntimeDep, db: DbDep,
                        authorization: Annotated[str | None, Header()] = None) -> StaffClaims:
    claims = rt.tokens.decode_staff(_bearer(authorization))
    account = await Accounts(db).get(claims.account_id)
    # a disabled account or a changed role invalidates tokens already issued
    if account is None or not account.active or account.role != claims.role:
        raise AuthError("invalid_token", "the account behind this token is no longer active")
    return claims


StaffDep = Annotated[StaffClaims, Depends(current_staff)]


def require_roles(*roles: Role):
    async def dep(staff: StaffDep) -> StaffClaims:
        if staff.role not in roles:
            raise ApiError(403, "forbidden", f"the {staff.role} role may not do this")
        return staff

    return Depends(dep)


async def is_valid_api_key(rt: Runtime, db: AsyncSession, key: str | None) -> bool:
    if not key:
        return False
    digest = hash_api_key(key)
    return constant_time_in(digest, rt.env_api_key_hashes) or await ApiKeys(db).active_by_hash(digest) is not None
