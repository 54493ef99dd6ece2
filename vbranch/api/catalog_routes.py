from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from vbranch import __version__
from vbranch.api.deps import DbDep, RuntimeDep
from vbranch.api.schemas import ServiceOut
from vbranch.db.repositories import Catalog

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/services", response_model=list[ServiceOut])
async def list_services(db: DbDep, accept_language: Annotated[str | None, Header()] = None) -> list[ServiceOut]:
    """The active services (public: the customer page and the bank backend show their names)."""
    lang = "en" if (accept_language or "").lower().startswith("en") else "zh-CN"
    return [ServiceOut.of(s, lang) for s in await Catalog(db).services()]


@router.get("/client-config")
async def client_config(rt: RuntimeDep) -> dict:
    """What the browser apps need before login: whether this is a demo branch."""
    return {"demo": rt.settings.demo, "version": __version__, "resume_window_s": rt.settings.resume_window_s}
