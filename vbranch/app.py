"""The app factory: FastAPI with the REST API, the WebSocket endpoint and the browser apps."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from signaling.endpoint import serve_websocket
from vbranch import __version__
from vbranch.api import (admin_routes, auth_routes, catalog_routes, evidence_routes, ops_routes, recording_routes,
                         session_routes)
from vbranch.api.errors import ApiError, install_error_handlers
from vbranch.bootstrap import bootstrap
from vbranch.calls.checklists import DEFAULT_FILE, apply_checklists, load_checklists
from vbranch.clock import Clock
from vbranch.config import Settings
from vbranch.demo import seed_demo
from vbranch.startup import check_database, check_local

STATIC_DIR = Path(__file__).resolve().parent.parent / "agent_console" / "static"


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    check_local(settings)  # folders, signing key, face engine: StartupError (one line) before anything uses them
    branch = bootstrap(settings, clock)
    rt, coordinator = branch.runtime, branch.coordinator
    checklists = load_checklists(settings.checklists_file or DEFAULT_FILE)  # fail early on a bad file

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await check_database(settings)  # reachable, schema brought up to date; else StartupError
        if settings.demo:
            app.state.demo = await seed_demo(rt)
        await apply_checklists(rt, checklists)
        await coordinator.start()
        try:
            yield
        finally:
            await coordinator.stop()
            await rt.faces.aclose()
            await rt.journal.close()
            await rt.db.close()

    app = FastAPI(title="vbranch", version=__version__, lifespan=lifespan,
                  description="Open virtual bank branch: REST API v1. The WebSocket protocol is in docs/protocol.md.")
    app.state.branch = branch
    app.state.demo = None
    install_error_handlers(app)
    for module in (auth_routes, catalog_routes, session_routes, recording_routes, evidence_routes, admin_routes,
                   ops_routes):
        app.include_router(module.router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        rt.metrics.http_requests.labels(request.method, getattr(route, "path", "unmatched"),
                                        str(response.status_code)).inc()
        return response

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await serve_websocket(ws, rt, coordinator)

    for path, page in (("/customer/", "customer"), ("/agent", "agent"), ("/wallboard", "wallboard"),
                       ("/review", "review")):
        app.add_api_route(path, _page(page), include_in_schema=False, methods=["GET"])
    app.add_api_route("/", lambda: RedirectResponse("/customer/"), include_in_schema=False, methods=["GET"])
    app.add_api_route("/customer", lambda: RedirectResponse("/customer/"), include_in_schema=False,
                      methods=["GET"])
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app


def _page(name: str):
    """The browser app's index page (ES modules and CSS come from /static)."""

    async def page() -> FileResponse:
        index = STATIC_DIR / name / "index.html"
        if not index.is_file():
            raise ApiError(404, "not_found", f"the {name} app is not installed")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    return page
