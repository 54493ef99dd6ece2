"""The REST API v1, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def png_b64(size=(64, 64)) -> str:
    """A valid image with no face in it."""
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def face_b64() -> str:
    from vbranch.facecheck.testing import astronaut_bgr, encode_jpeg

    return base64.b64encode(encode_jpeg(astronaut_bgr())).decode()


async def test_login_roles_and_me(any_db_server):
    async with any_db_server.http() as h:
        for username, role in [("agent1", "agent"), ("supervisor", "supervisor"), ("reviewer", "reviewer"),
                               ("admin", "admin")]:
            r = await h.post("/api/v1/auth/login", json={"username": username, "password": "demo"})
            assert r.status_code == 200
            body = r.json()
            assert body["role"] == role and body["expires_at"].endswith("+00:00")
            me = (await h.get("/api/v1/auth/me", headers=bearer(body["token"]))).json()
            assert me["username"] == username


@pytest.mark.parametrize("body", [{"username": "agent1", "password": "wrong"},
                                  {"username": "nobody", "password": "demo"}])
async def test_login_failure_is_one_answer(any_db_server, body):
    async with any_db_server.http() as h:
        r = await h.post("/api/v1/auth/login", json=body)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "invalid_credentials", "message": "wrong username or password"}}


async def test_services_list(any_db_server):
    async with any_db_server.http() as h:
        services = (await h.get("/api/v1/services")).json()
        english = (await h.get("/api/v1/services", headers={"Accept-Language": "en-US"})).json()
    codes = {s["code"] for s in services}
    assert codes == {"loan_prescreen", "f2f_signing", "risk_assessment", "account_opening", "private_banking"}
    loan = next(s for s in services if s["code"] == "loan_prescreen")
    assert loan["name"] == "贷款预审" and loan["required_skills"] == {"lending": 2}
    assert loan["checklist"][0]["code"] == "identity_verified"
    assert next(s for s in english if s["code"] == "loan_prescreen")["name"] == "Loan pre-screening"


async def test_create_session_and_read_it_back(any_db_server):
    srv = any_db_server
    created = await srv.create_session("risk_assessment", priority=3, reference_photo=face_b64())
    assert created["join_url"].startswith(srv.runtime.settings.public_base_url + "/customer/#token=")
    token = await srv.login("supervisor")
    async with srv.http() as h:
        detail = (await h.get(f"/api/v1/sessions/{created['session_id']}", headers=bearer(token))).json()
        assert detail["state"] == "queued" and detail["priority"] == 3 and detail["service"] == "risk_assessment"
        timeline = (await h.get(f"/api/v1/sessions/{created['session_id']}/timeline", headers=bearer(token))).json()
        assert timeline[0]["kind"] == "session.created" and timeline[0]["data"]["reference_photo"] is True
        listing = (await h.get("/api/v1/sessions", params={"service": "risk_assessment"},
                               headers=bearer(token))).json()
        assert listing["total"] == 1 and listing["items"][0]["session_id"] == created["session_id"]
        stats = (await h.get("/api/v1/queue/stats", headers=bearer(token))).json()
        assert stats["services"]["risk_assessment"]["waiting"] == 0, "not waiting until the customer is there"
        async with srv.connect(created["join_token"]) as customer:
            await customer.request({"type": "hello"})
            stats = (await h.get("/api/v1/queue/stats", headers=bearer(token))).json()
        assert stats["services"]["risk_assessment"]["waiting"] == 1


async def test_create_session_needs_a_valid_api_key(any_db_server):
    body = {"service": "loan_prescreen", "channel": "h5", "customer": {"ref": "C", "name": "N"}}
    async with any_db_server.http() as h:
        r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": "vbk_wrong_key_1234567890"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("patch, code, status", [
    ({"service": "no_such_service"}, "unknown_service", 422),
    ({"channel": "fax"}, "invalid_request", 422),
    ({"priority": 10}, "invalid_request", 422),
    ({"priority": "high"}, "invalid_request", 422),
    ({"customer": {"ref": "C"}}, "invalid_request", 422),
    ({"surprise": 1}, "invalid_request", 422),
    ({"reference_photo": "@@not base64@@"}, "invalid_photo", 422),
    ({"reference_photo": base64.b64encode(b"GIF89a....").decode()}, "invalid_photo", 422),
    ({"reference_photo": base64.b64encode(b"\xff\xd8\xff" + b"\x00" * 100).decode()}, "invalid_photo", 422),
])
async def test_create_session_bad_input(any_db_server, patch, code, status):
    body = {"service": "loan_prescreen", "channel": "h5", "customer": {"ref": "C", "name": "N"}, **patch}
    async with any_db_server.http() as h:
        r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": any_db_server.api_key})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("photo, reason", [(png_b64(), "no_face"), (png_b64((2000, 20)), "no_face")])
async def test_reference_photo_without_a_usable_face(any_db_server, photo, reason):
    body = {"service": "loan_prescreen", "channel": "h5", "customer": {"ref": "C", "name": "N"},
            "reference_photo": photo}
    async with any_db_server.http() as h:
        r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": any_db_server.api_key})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_photo" and r.json()["error"]["details"] == {"reason": reason}


async def test_malformed_json_body(any_db_server):
    async with any_db_server.http() as h:
        r = await h.post("/api/v1/auth/login", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


async def test_unknown_route_uses_the_error_shape(any_db_server):
    async with any_db_server.http() as h:
        r = await h.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("username, path, method", [
    ("agent1", "/api/v1/queue/stats", "GET"),
    ("reviewer", "/api/v1/queue/stats", "GET"),
    ("agent1", "/api/v1/admin/agents", "GET"),
    ("supervisor", "/api/v1/admin/agents", "GET"),
    ("reviewer", "/api/v1/admin/services", "GET"),
    ("supervisor", "/api/v1/admin/api-keys", "POST"),
])
async def test_staff_role_calling_what_it_may_not(any_db_server, username, path, method):
    token = await any_db_server.login(username)
    async with any_db_server.http() as h:
        r = await h.request(method, path, headers=bearer(token), json={"name": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_staff_routes_need_a_token(any_db_server):
    async with any_db_server.http() as h:
        for path in ("/api/v1/sessions", "/api/v1/queue/stats", "/api/v1/admin/agents", "/api/v1/auth/me"):
            r = await h.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", path
        r = await h.get("/api/v1/sessions", headers=bearer("garbage"))
        assert r.json()["error"]["code"] == "invalid_token"
        join = (await any_db_server.create_session())["join_token"]
        r = await h.get("/api/v1/sessions", headers=bearer(join))
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"


async def test_agent_sees_only_sessions_it_handled(any_db_server):
    created = await any_db_server.create_session()
    token = await any_db_server.login("agent1")
    async with any_db_server.http() as h:
        r = await h.get(f"/api/v1/sessions/{created['session_id']}", headers=bearer(token))
        assert r.status_code == 404
        r = await h.get(f"/api/v1/sessions/{created['session_id']}/timeline", headers=bearer(token))
        assert r.status_code == 404
        assert (await h.get("/api/v1/sessions", headers=bearer(token))).json()["total"] == 0


async def test_admin_manages_agents_skills_services_and_keys(any_db_server):
    srv = any_db_server
    admin = bearer(await srv.login("admin"))
    async with srv.http() as h:
        r = await h.post("/api/v1/admin/skills", json={"code": "fx", "name_zh": "外汇", "name_en": "FX"},
                         headers=admin)
        assert r.status_code == 201
        r = await h.post("/api/v1/admin/agents", headers=admin, json={
            "username": "agent9", "password": "s3cret-pass", "display_name": "Agent Nine",
            "skills": {"fx": 5, "lending": 2}})
        assert r.status_code == 201, r.text
        agent9 = r.json()
        assert agent9["skills"] == {"fx": 5, "lending": 2}
        r = await h.post("/api/v1/admin/agents", headers=admin, json={
            "username": "agent9", "password": "s3cret-pass", "display_name": "Dup"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "username_taken"
        r = await h.post("/api/v1/admin/agents", headers=admin, json={
            "username": "agent10", "password": "s3cret-pass", "display_name": "X", "skills": {"fx": 6}})
        assert r.status_code == 422
        r = await h.post("/api/v1/admin/agents", headers=admin, json={
            "username": "agent10", "password": "s3cret-pass", "display_name": "X", "skills": {"nope": 3}})
        assert r.json()["error"]["code"] == "unknown_skill"

        token9 = await srv.login("agent9", "s3cret-pass")
        r = await h.patch(f"/api/v1/admin/agents/{agent9['id']}", headers=admin, json={"active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        r = await h.get("/api/v1/auth/me", headers=bearer(token9))
        assert r.status_code == 401, "a disabled account's token stops working"

        svc = {"code": "fx_exchange", "name_zh": "外汇兑换", "name_en": "FX exchange", "required_skills": {"fx": 3},
               "checklist": [{"code": "rate_quoted", "name_zh": "报价", "name_en": "Rate quoted"}],
               "business_hours": {"timezone": "Asia/Shanghai", "days": [0, 1, 2, 3, 4], "open": "09:00",
                                  "close": "17:00"},
               "escalation": [{"after_s": 0, "min_proficiency": 4}, {"after_s": 60, "min_proficiency": 3}]}
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin, json=svc)
        assert r.status_code == 200, r.text
        assert "fx_exchange" in {s["code"] for s in (await h.get("/api/v1/services")).json()}
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin,
                        json={**svc, "business_hours": {"open": "25:00"}})
        assert r.status_code == 422

        r = await h.post("/api/v1/admin/api-keys", headers=admin, json={"name": "core banking"})
        key = r.json()["key"]
        body = {"service": "fx_exchange", "channel": "app", "customer": {"ref": "C9", "name": "Han Meimei"}}
        r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": key})
        assert r.status_code == 201


async def test_healthz_and_metrics(any_db_server):
    await any_db_server.create_session()
    async with any_db_server.http() as h:
        assert (await h.get("/healthz")).json() == {"status": "ok", "database": "ok"}
        text = (await h.get("/metrics")).text
    assert 'vbranch_sessions_created_total{channel="h5",service="loan_prescreen"} 1.0' in text
    assert "vbranch_http_requests_total" in text


async def test_openapi_docs(any_db_server):
    async with any_db_server.http() as h:
        spec = (await h.get("/openapi.json")).json()
        assert (await h.get("/docs")).status_code == 200
    assert "/api/v1/sessions" in spec["paths"] and "/api/v1/auth/login" in spec["paths"]


async def test_concurrent_account_creation_and_logins_all_succeed(any_db_server):
    """Admin writes and logins at once: none fails on a busy database (the bench's preparation does this)."""
    admin = await any_db_server.login("admin")

    async def create_and_login(i: int) -> int:
        async with any_db_server.http() as h:
            r = await h.post("/api/v1/admin/agents", headers=bearer(admin), json={
                "username": f"burst{i}", "password": "burst-password", "display_name": f"Burst {i}",
                "skills": {"accounts": 2}})
            assert r.status_code == 201, r.text
            r = await h.post("/api/v1/auth/login", json={"username": f"burst{i}", "password": "burst-password"})
            assert r.status_code == 200, r.text
            return r.json()["account_id"]

    ids = await asyncio.gather(*(create_and_login(i) for i in range(16)))
    assert len(set(ids)) == 16
    async with any_db_server.http() as h:
        audit = (await h.get("/api/v1/audit", headers=bearer(admin), params={"limit": 200})).json()
    creates = [row for row in audit if row["action"] == "admin.account_create"]
    assert {row["detail"]["account"] for row in creates} >= {f"burst{i}" for i in range(16)}


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/sessions?offset=1180591620717411303424"),  # 2**70
    ("GET", "/api/v1/sessions?since=nan"),
    ("GET", "/api/v1/sessions?until=inf"),
    ("PATCH", "/api/v1/admin/agents/1180591620717411303424"),
    ("GET", "/api/v1/recordings/1180591620717411303424/media?token=x"),
])
async def test_numbers_no_database_holds_are_422_in_the_error_shape(any_db_server, method, path):
    admin = await any_db_server.login("admin")
    async with any_db_server.http() as h:
        r = await h.request(method, path, headers={"Authorization": f"Bearer {admin}"},
                            json={"display_name": "x"} if method == "PATCH" else None)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request" and r.json()["error"]["message"]
