"""Who may do what, enforced on the server: every REST route and every WebSocket message type, per role."""

from __future__ import annotations

import shutil

import pytest
from fastapi.routing import APIRoute

from signaling.protocol import ALLOWED, CLIENT_TYPES
from tests.evidence.test_evidence import sealed  # noqa: F401  (module fixture: one recorded call)
from tests.support.server import run_server
from vbranch.demo import demo_api_key

pytestmark = pytest.mark.media

STAFF = {"agent", "other_agent", "supervisor", "reviewer", "admin"}
EVERYONE = STAFF | {"anonymous", "customer", "api_key"}
OPEN = "open"

# (method, path) -> who is let through. Refused means 401/403 (or 404 where "not yours" must not leak).
MATRIX: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/auth/login"): OPEN,
    ("GET", "/api/v1/auth/me"): STAFF,
    ("GET", "/api/v1/services"): OPEN,
    ("GET", "/api/v1/client-config"): OPEN,
    ("POST", "/api/v1/sessions"): {"api_key"},
    ("GET", "/api/v1/sessions"): STAFF,
    ("GET", "/api/v1/sessions/{session_id}"): {"agent", "supervisor", "reviewer", "admin"},
    ("GET", "/api/v1/sessions/{session_id}/timeline"): {"agent", "supervisor", "reviewer", "admin"},
    ("PUT", "/api/v1/sessions/{session_id}/reference-photo"): {"agent", "supervisor", "admin"},
    ("GET", "/api/v1/queue/stats"): {"supervisor", "admin"},
    ("GET", "/api/v1/sessions/{session_id}/recordings"): {"reviewer", "admin"},
    ("GET", "/api/v1/recordings/{recording_id}/media"): {"reviewer", "admin"},
    ("POST", "/api/v1/sessions/{session_id}/review"): {"reviewer"},
    ("GET", "/api/v1/sessions/{session_id}/reviews"): {"reviewer", "supervisor", "admin"},
    ("GET", "/api/v1/evidence/public-key"): OPEN,
    ("GET", "/api/v1/sessions/{session_id}/manifest"): {"reviewer", "admin"},
    ("GET", "/api/v1/sessions/{session_id}/verify"): {"reviewer", "admin"},
    ("GET", "/api/v1/audit"): {"admin"},
    ("PUT", "/api/v1/sessions/{session_id}/legal-hold"): {"admin"},
    ("POST", "/api/v1/sessions/{session_id}/evidence-acknowledgement"): {"supervisor", "admin"},
    ("GET", "/api/v1/admin/agents"): {"admin"},
    ("POST", "/api/v1/admin/agents"): {"admin"},
    ("PATCH", "/api/v1/admin/agents/{account_id}"): {"admin"},
    ("GET", "/api/v1/admin/skills"): {"admin"},
    ("POST", "/api/v1/admin/skills"): {"admin"},
    ("GET", "/api/v1/admin/services"): {"admin"},
    ("PUT", "/api/v1/admin/services/{code}"): {"admin"},
    ("POST", "/api/v1/admin/api-keys"): {"admin"},
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/customer/"): OPEN,
    ("GET", "/customer"): OPEN,
    ("GET", "/agent"): OPEN,
    ("GET", "/wallboard"): OPEN,
    ("GET", "/review"): OPEN,
    ("GET", "/"): OPEN,
}


@pytest.fixture
async def branch(sealed, tmp_path):  # noqa: F811
    src, session_id = sealed
    data = tmp_path / "data"
    shutil.copytree(src, data)
    async with run_server(data, demo=False) as srv:  # not demo: session creation needs the key
        srv.session_id = session_id
        yield srv


async def principals(srv) -> dict[str, dict[str, str]]:
    headers = {"anonymous": {}, "api_key": {"X-Api-Key": demo_api_key(srv.runtime.settings.resolved_secret_key())}}
    for name, user in (("agent", "agent1"), ("other_agent", "agent2"), ("supervisor", "supervisor"),
                       ("reviewer", "reviewer"), ("admin", "admin")):
        headers[name] = {"Authorization": f"Bearer {await srv.login(user)}"}
    join, _ = srv.runtime.tokens.issue_join(srv.session_id)
    headers["customer"] = {"Authorization": f"Bearer {join}"}
    return headers


def _flat(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI keeps it whole)
        yield from (_flat(inner.routes) if inner is not None else [route])


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for route in _flat(app.routes):
        if isinstance(route, APIRoute) and not route.path.startswith(("/docs", "/openapi", "/redoc")):
            out |= {(m, route.path) for m in route.methods if m != "HEAD"}
    return out


async def test_every_rest_route_by_role(branch):
    srv = branch
    assert app_routes(srv.app) == set(MATRIX), "every route must have a row in the access matrix"
    heads = await principals(srv)
    async with srv.http() as h:
        accounts = (await h.get("/api/v1/admin/agents", headers=heads["admin"])).json()
        recs = (await h.get(f"/api/v1/sessions/{srv.session_id}/recordings", headers=heads["reviewer"])).json()
    ids = {"session_id": srv.session_id, "account_id": str(next(a["id"] for a in accounts if a["username"] == "agent3")),
           "code": "loan_prescreen", "recording_id": str(recs[0]["id"])}
    tokens = srv.runtime.tokens
    user_ids = {a["username"]: a["id"] for a in accounts}
    failures = []
    async with srv.http() as h:
        for (method, template), allowed in sorted(MATRIX.items()):
            path = template.format(**ids)
            for who in sorted(EVERYONE):
                params = {}
                if template.endswith("/media"):
                    # media URLs carry a per-account token instead of a header
                    account = {"agent": "agent1", "other_agent": "agent2", "supervisor": "supervisor",
                               "reviewer": "reviewer", "admin": "admin"}.get(who)
                    params["token"] = tokens.issue_media(int(ids["recording_id"]), user_ids[account])[0] if account \
                        else "none"
                body = {} if method in ("POST", "PUT", "PATCH") else None
                r = await h.request(method, path, headers=heads[who], params=params, json=body)
                refused = r.status_code in (401, 403) or (r.status_code == 404 and "{session_id}" in template)
                expected_ok = allowed == OPEN or who in allowed
                if refused == expected_ok:
                    failures.append(f"{method} {template} as {who}: {r.status_code} {r.text[:80]}")
    assert not failures, "\n".join(failures)


async def test_every_ws_message_type_by_role(branch):
    srv = branch
    samples = {
        "hello": None, "ping": {}, "rtc.offer": {"sdp": "v=0"}, "rtc.ice": {"candidate": None},
        "consent": {"recording": True, "face": True}, "leave": {},
        "agent.status": {"status": "away"}, "offer.accept": {"session_id": "x"}, "offer.decline": {"session_id": "x"},
        "facecheck.start": {"session_id": "x"}, "checklist.mark": {"session_id": "x", "step": "s"},
        "session.end": {"session_id": "x", "disposition": "d"}, "wrapup.done": {},
        "agent.set_status": {"agent_id": 1, "status": "away"},
    }
    assert set(samples) == CLIENT_TYPES
    async with srv.http() as h:
        r = await h.post("/api/v1/sessions", json={"service": "account_opening", "channel": "app",
                                                   "customer": {"ref": "M", "name": "Matrix"}},
                         headers={"X-Api-Key": demo_api_key(srv.runtime.settings.resolved_secret_key())})
        join = r.json()["join_token"]
    failures = []
    for role, user in (("customer", None), ("agent", "agent1"), ("supervisor", "supervisor"),
                       ("reviewer", "reviewer"), ("admin", "admin")):
        token = join if user is None else await srv.login(user)
        async with srv.connect(token) as ws:
            assert (await ws.request({"type": "hello"}))["type"] == "welcome"
            for mtype, body in samples.items():
                if mtype in ("hello", "leave"):
                    continue
                reply = await ws.request({"type": mtype, **body})
                forbidden = reply.get("type") == "error" and reply.get("code") == "forbidden"
                if forbidden == (mtype in ALLOWED[role]):
                    failures.append(f"{mtype} as {role}: {reply}")
            if role == "customer":
                assert (await ws.request({"type": "leave"}))["type"] == "session.ended"
            else:
                assert (await ws.request({"type": "leave"}))["code"] == "forbidden"
    assert not failures, "\n".join(failures)
