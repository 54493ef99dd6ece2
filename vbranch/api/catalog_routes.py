from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from vbranch.api.deps import DbDep
from vbranch.api.schemas import ServiceOut
from vbranch.db.repositories import Catalog

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/services", response_model=list[ServiceOut])
async def list_services(db: DbDep, accept_language: Annotated[str | None, Header()] = None) -> list[ServiceOut]:
    """The active services (public: the customer page and the bank backend show their names)."""
    lang = "en" if (accept_language or "").lower().startswith("en") else "zh-CN"
    return [ServiceOut.of(s, lang) for s in await Catalog(db).services()]
