from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from vbranch.api.deps import RuntimeDep
from vbranch.api.errors import ApiError

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(rt: RuntimeDep, request: Request) -> dict:
    if request.app.state.branch.draining:
        raise ApiError(503, "draining", "this server is shutting down; new customers go elsewhere")
    try:
        async with rt.db.session() as db:
            await db.exec(text("SELECT 1"))
    except Exception as exc:  # the probe reports any database failure as unhealthy
        raise ApiError(503, "unhealthy", f"database unreachable: {type(exc).__name__}") from None
    return {"status": "ok", "database": "ok"}


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> Response:
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
