"""Admin changes reach the running queue at once, over the real WebSocket: a service's rules,
switching a service off and on, an agent's skills (no restart, no re-login)."""

from __future__ import annotations

import asyncio

import pytest

from tests.protocol.test_routing_ws import agent, customer
from tests.support.server import run_server


DESK = {"code": "fx_desk", "name_zh": "外汇", "name_en": "FX desk", "required_skills": {"lending": 1}}


@pytest.fixture
async def branch(tmp_path):
    async with run_server(tmp_path / "data") as srv:  # global defaults: 15 s offers, 30 s wrap-up
        srv.admin = {"Authorization": f"Bearer {await srv.login('admin')}"}
        yield srv


async def put_service(srv, **changes):
    async with srv.http() as h:
        r = await h.put(f"/api/v1/admin/services/{DESK['code']}", json={**DESK, **changes}, headers=srv.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def no_offer(a, within=0.8):
    with pytest.raises(asyncio.TimeoutError):
        await a.recv_type("offer", timeout=within)
    return True


async def test_a_stricter_requirement_applies_at_once(branch):
    await put_service(branch)
    async with agent(branch, "agent2", available=False) as a:  # lending 2
        await put_service(branch, required_skills={"lending": 3})
        async with customer(branch, DESK["code"]) as c:
            await a.request({"type": "agent.status", "status": "available"})
            assert await no_offer(a)
            await put_service(branch, required_skills={"lending": 2})
            assert (await a.recv_type("offer"))["session_id"] == c.session_id


async def test_offer_timeout_and_decline_cooldown_of_the_service_apply_at_once(branch):
    await put_service(branch)
    async with customer(branch, DESK["code"]) as c, agent(branch, "agent1") as a:
        first = await a.recv_type("offer")
        assert first["expires_in_s"] > 10  # the global 15 s
        await put_service(branch, offer_timeout_s=1.0, decline_cooldown_s=0)
        # the running offer keeps its expiry; the decline and the next offer follow the new rules:
        # no cool-down, so the only agent gets it again at once, for 1 s
        await a.request({"type": "offer.decline", "session_id": c.session_id})
        again = await a.recv_type("offer", timeout=3)
        assert again["session_id"] == c.session_id and again["expires_in_s"] <= 1.0
        revoked = await a.recv_type("offer.revoked", timeout=4)
        assert revoked["reason"] == "timeout"


async def test_switching_a_service_off_and_on(branch):
    await put_service(branch)
    async with customer(branch, DESK["code"]) as c:
        await c.recv_type("queue.update")
        svc = await put_service(branch, active=False)
        assert svc["active"] is False
        # the waiting customer keeps the place and is told the service is closed, with no opening time
        async with asyncio.timeout(3):
            while (update := await c.recv_type("queue.update", timeout=3))["service_open"]:
                pass
        assert update["position"] == 1
        assert update["notice"] == "service_closed" and update.get("opens_at") is None
        assert update["estimated_wait_s"] is None
        async with agent(branch, "agent1") as a:
            assert await no_offer(a)
            await put_service(branch, active=True)
            assert (await a.recv_type("offer", timeout=3))["session_id"] == c.session_id


async def test_an_agents_new_skills_apply_without_logging_in_again(branch):
    async with customer(branch, "private_banking") as c, agent(branch, "agent1") as a:
        assert await no_offer(a)  # agent1 has no private banking skill
        skills = {"lending": 4, "signing": 4, "accounts": 3, "private_banking": 4, "wealth": 3}
        async with branch.http() as h:
            r = await h.patch(f"/api/v1/admin/agents/{a.welcome['agent']['id']}", headers=branch.admin,
                              json={"skills": skills})
        assert r.status_code == 200 and r.json()["skills"] == skills
        assert (await a.recv_type("offer", timeout=3))["session_id"] == c.session_id


async def test_customers_of_a_switched_off_service_keep_their_place_over_a_restart(tmp_path):
    data = tmp_path / "data"
    async with run_server(data) as srv:
        srv.admin = {"Authorization": f"Bearer {await srv.login('admin')}"}
        await put_service(srv)
        created = await srv.create_session(DESK["code"])
        async with srv.connect(created["join_token"]) as c:
            await c.request({"type": "hello"})
        await put_service(srv, active=False)
    async with run_server(data, demo=False) as srv:
        srv.admin = {"Authorization": f"Bearer {await srv.login('admin')}"}
        async with srv.connect(created["join_token"]) as c:
            await c.request({"type": "hello"})
            update = await c.recv_type("queue.update")
            assert update["position"] == 1 and update["notice"] == "service_closed"
            await put_service(srv, active=True)
            async with agent(srv, "agent1") as a:
                assert (await a.recv_type("offer", timeout=3))["session_id"] == created["session_id"]
