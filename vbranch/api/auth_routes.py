from __future__ import annotations

from fastapi import APIRouter

from vbranch.api.deps import DbDep, RuntimeDep, StaffDep
from vbranch.api.errors import ApiError
from vbranch.api.schemas import LoginIn, LoginOut
from vbranch.auth import DUMMY_PASSWORD_HASH, verify_password_off_loop
from vbranch.clock import utc
from vbranch.db.repositories import Accounts
from vbranch.domain.roles import Role

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/login", response_model=LoginOut)
async def login(body: LoginIn, rt: RuntimeDep, db: DbDep) -> LoginOut:
    account = await Accounts(db).by_username(body.username)
    ok = await verify_password_off_loop(account.password_hash if account else DUMMY_PASSWORD_HASH, body.password)
    if not account or not ok or not account.active:
        await rt.journal.audit(body.username, "auth.login_failed")
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    token, exp = rt.tokens.issue_staff(account.id, account.username, Role(account.role))
    await rt.journal.audit(account.username, "auth.login")
    return LoginOut(token=token, role=account.role, expires_at=utc(exp).isoformat(), account_id=account.id,
                    display_name=account.display_name)


@router.get("/me")
async def me(staff: StaffDep, db: DbDep) -> dict:
    account = await Accounts(db).get(staff.account_id)
    return {"account_id": staff.account_id, "username": staff.username, "role": staff.role,
            "display_name": account.display_name if account else staff.username,
            "expires_at": utc(staff.expires_at).isoformat()}
