"""Per-service queue settings through the admin API (SQLite and PostgreSQL), and their migration."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from vbranch.db.database import alembic_config, driver_urls, upgrade

SETTINGS = ("aging_points_per_min", "offer_timeout_s", "wrapup_s", "decline_cooldown_s",
            "service_level_threshold_s")

FX = {"code": "fx_exchange", "name_zh": "外汇兑换", "name_en": "FX exchange", "required_skills": {"lending": 3},
      "escalation": [{"after_s": 0, "min_proficiency": 4}, {"after_s": 60, "min_proficiency": 3}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin_services(h, admin) -> dict[str, dict]:
    r = await h.get("/api/v1/admin/services", headers=admin)
    assert r.status_code == 200, r.text
    return {s["code"]: s for s in r.json()}


async def test_queue_settings_round_trip(any_db_server):
    srv = any_db_server
    admin = bearer(await srv.login("admin"))
    async with srv.http() as h:
        loan = (await admin_services(h, admin))["loan_prescreen"]
        assert {k: loan[k] for k in SETTINGS} == dict.fromkeys(SETTINGS)  # null: the global defaults
        assert loan["effective"] == {"aging_points_per_min": 1.0, "offer_timeout_s": 15.0, "wrapup_s": 30.0,
                                     "decline_cooldown_s": 30.0, "service_level_threshold_s": 20.0}

        own = {"aging_points_per_min": 2.5, "offer_timeout_s": 20, "wrapup_s": 0, "decline_cooldown_s": 0,
               "service_level_threshold_s": 45}
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin, json={**FX, **own})
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in SETTINGS} == own and r.json()["effective"] == own
        fx = (await admin_services(h, admin))["fx_exchange"]
        assert {k: fx[k] for k in SETTINGS} == own and fx["active"] is True

        # PUT replaces: what is left out goes back to the default
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin, json={**FX, "offer_timeout_s": 8.5})
        assert r.status_code == 200, r.text
        fx = (await admin_services(h, admin))["fx_exchange"]
        assert fx["offer_timeout_s"] == 8.5 and fx["wrapup_s"] is None and fx["effective"]["wrapup_s"] == 30.0

        # the public catalogue does not show queue internals
        public = {s["code"]: s for s in (await h.get("/api/v1/services")).json()}
        assert "offer_timeout_s" not in public["fx_exchange"] and "effective" not in public["fx_exchange"]

        audit = (await h.get("/api/v1/audit", headers=admin)).json()
        puts = [e["detail"] for e in audit if e["action"] == "admin.service_put"]
        assert puts[-1]["offer_timeout_s"] == 8.5 and puts[-1]["active"] is True


@pytest.mark.parametrize("patch, field", [
    ({"offer_timeout_s": 0}, "offer_timeout_s"),
    ({"offer_timeout_s": 301}, "offer_timeout_s"),
    ({"offer_timeout_s": "15"}, "offer_timeout_s"),
    ({"wrapup_s": -1}, "wrapup_s"),
    ({"wrapup_s": True}, "wrapup_s"),
    ({"decline_cooldown_s": 3601}, "decline_cooldown_s"),
    ({"service_level_threshold_s": 0}, "service_level_threshold_s"),
    ({"aging_points_per_min": 61}, "aging_points_per_min"),
    ({"aging_points_per_min": -0.5}, "aging_points_per_min"),
    ({"active": "maybe"}, "active"),
    ({"queue_priority": 3}, "queue_priority"),
])
async def test_invalid_queue_settings_are_refused(any_db_server, patch, field):
    admin = bearer(await any_db_server.login("admin"))
    async with any_db_server.http() as h:
        r = await h.put("/api/v1/admin/services/loan_prescreen", headers=admin,
                        json={**FX, "code": "loan_prescreen", **patch})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and field in {d["field"] for d in err["details"]}
        loan = (await admin_services(h, admin))["loan_prescreen"]
    assert loan["required_skills"] == {"lending": 2} and loan["offer_timeout_s"] is None  # nothing stored


@pytest.mark.parametrize("patch", [
    {"escalation": [{"after_s": 60, "min_proficiency": 2}, {"after_s": 0, "min_proficiency": 4}]},
    {"business_hours": {"timezone": "Mars/Olympus"}},
    {"business_hours": {"timezone": "UTC", "open": "09:00", "close": "24:30"}},
])
async def test_rules_the_queue_could_not_run_are_refused_before_they_are_stored(any_db_server, patch):
    admin = bearer(await any_db_server.login("admin"))
    async with any_db_server.http() as h:
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin, json={**FX, **patch})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_rules"
        assert "fx_exchange" not in await admin_services(h, admin)
        # the queue still works for everything else
        assert (await h.get("/api/v1/queue/stats", headers=bearer(await any_db_server.login("supervisor")))
                ).status_code == 200


async def test_deactivated_service_takes_no_new_sessions(any_db_server):
    srv = any_db_server
    admin = bearer(await srv.login("admin"))
    async with srv.http() as h:
        r = await h.put("/api/v1/admin/services/fx_exchange", headers=admin, json={**FX, "active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        assert "fx_exchange" in await admin_services(h, admin)
        assert "fx_exchange" not in {s["code"] for s in (await h.get("/api/v1/services")).json()}
        body = {"service": "fx_exchange", "channel": "app", "customer": {"ref": "C9", "name": "Han Meimei"}}
        r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": srv.api_key})
        assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_service"


def test_migration_0004_adds_and_removes_the_columns(database_url):
    from alembic import command

    _, sync_url = driver_urls(database_url)
    upgrade(sync_url)
    engine = sa.create_engine(sync_url)
    try:
        cols = {c["name"]: c for c in sa.inspect(engine).get_columns("service")}
        assert all(cols[name]["nullable"] for name in SETTINGS)
        command.downgrade(alembic_config(sync_url), "0003")
        assert not set(SETTINGS) & {c["name"] for c in sa.inspect(engine).get_columns("service")}
        upgrade(sync_url)
        assert set(SETTINGS) <= {c["name"] for c in sa.inspect(engine).get_columns("service")}
    finally:
        engine.dispose()
