"""The queue over the real WebSocket: offers, accept, decline, timeout, disconnect, wrap-up, abandonment."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest

from tests.support.server import run_server
from vbranch.domain.errors import Conflict
from vbranch.facecheck.testing import astronaut_bgr, encode_jpeg


@pytest.fixture
async def branch(tmp_path):
    async with run_server(tmp_path / "data", offer_timeout_s=1.0, wrapup_s=1.0) as srv:
        yield srv


@contextlib.asynccontextmanager
async def customer(srv, service="loan_prescreen", **extra):
    created = await srv.create_session(service, **extra)
    async with srv.connect(created["join_token"]) as c:
        c.session_id = created["session_id"]
        c.welcome = await c.request({"type": "hello"})
        yield c


@contextlib.asynccontextmanager
async def agent(srv, username, available=True):
    token = await srv.login(username)
    async with srv.connect(token) as a:
        a.welcome = await a.request({"type": "hello"})
        a.token = token
        if available:
            reply = await a.request({"type": "agent.status", "status": "available"})
            assert reply["status"] in ("available", "offered")
        yield a


async def position_reaches(c, position, timeout=5.0):
    async with asyncio.timeout(timeout):
        while (await c.recv_type("queue.update", timeout))["position"] != position:
            pass
    return True


async def session_state(srv, session_id):
    token = await srv.login("supervisor")
    async with srv.http() as h:
        r = await h.get(f"/api/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"})
        return r.json()["state"]


async def test_offer_accept_connects_both_parties(branch):
    async with customer(branch) as c, agent(branch, "agent1") as a:
        offer = await a.recv_type("offer")
        assert offer["session_id"] == c.session_id and offer["service"] == "loan_prescreen"
        assert offer["customer"]["name"] == "Li Lei" and 0 < offer["expires_in_s"] <= 1.0
        assert await session_state(branch, c.session_id) == "offered"
        reply = await a.request({"type": "offer.accept", "session_id": c.session_id})
        assert reply == {"type": "ack", "ref": reply["ref"], "for": "offer.accept", "session_id": c.session_id}
        assert (await a.recv_type("session.connected"))["session_id"] == c.session_id
        assert (await c.recv_type("session.assigned"))["agent_name"].startswith("坐席一号")
        assert await session_state(branch, c.session_id) == "connected"


async def test_agent_without_the_skill_gets_no_offer(branch):
    async with customer(branch, "private_banking") as c, agent(branch, "agent1") as a:
        with pytest.raises(asyncio.TimeoutError):
            await a.recv_type("offer", timeout=1.0)
        async with agent(branch, "agent3") as a3:
            assert (await a3.recv_type("offer"))["session_id"] == c.session_id


async def test_decline_keeps_the_place_and_goes_to_the_next_agent(branch):
    async with customer(branch) as first, customer(branch) as second:
        async with agent(branch, "agent1") as a1:
            offer = await a1.recv_type("offer")
            assert offer["session_id"] == first.session_id
            await a1.request({"type": "offer.decline", "session_id": first.session_id})
            assert (await a1.recv_type("offer.revoked"))["reason"] == "declined"
            # the declined session is not offered back to the same agent at once; the next one is
            assert (await a1.recv_type("offer"))["session_id"] == second.session_id
            assert await session_state(branch, first.session_id) == "queued"
            async with agent(branch, "agent3") as a3:
                assert (await a3.recv_type("offer"))["session_id"] == first.session_id


async def test_offer_timeout_makes_the_agent_not_responding(branch):
    async with customer(branch) as c, agent(branch, "agent1") as a:
        await a.recv_type("offer")
        revoked = await a.recv_type("offer.revoked", timeout=5)
        assert revoked == {"type": "offer.revoked", "session_id": c.session_id, "reason": "timeout"}
        status = await a.recv_type("agent.status")
        while status["status"] != "not_responding":
            status = await a.recv_type("agent.status")
        assert await session_state(branch, c.session_id) == "queued"
        # back to available by itself: the offer comes again
        await a.request({"type": "agent.status", "status": "available"})
        assert (await a.recv_type("offer"))["session_id"] == c.session_id


async def test_agent_disconnect_during_offer_revokes_at_once(branch):
    async with customer(branch) as c:
        async with agent(branch, "agent1") as a1:
            await a1.recv_type("offer")
        # agent1's socket is closed: the offer is revoked without waiting for its timeout
        for _ in range(50):
            if await session_state(branch, c.session_id) == "queued":
                break
            await asyncio.sleep(0.02)
        assert await session_state(branch, c.session_id) == "queued"
        async with agent(branch, "agent3") as a3:
            assert (await a3.recv_type("offer", timeout=0.9))["session_id"] == c.session_id


async def mark_all(a, session_id, steps=("random_questions", "id_shown")):
    for step in steps:
        reply = await a.request({"type": "checklist.mark", "session_id": session_id, "step": step})
        assert reply["type"] == "ack", reply
    return reply


async def test_end_wrap_up_and_back_to_available(branch):
    async with customer(branch, "account_opening") as c, agent(branch, "agent1") as a:
        await a.recv_type("offer")
        await a.request({"type": "offer.accept", "session_id": c.session_id})
        await a.recv_type("session.connected")
        bad = await a.request({"type": "checklist.mark", "session_id": c.session_id, "step": "nope"})
        assert bad["code"] == "unknown_step"
        auto = await a.request({"type": "checklist.mark", "session_id": c.session_id, "step": "identity_verified"})
        assert auto["code"] == "step_automatic"
        early = await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "opened"})
        assert early["code"] == "checklist_incomplete"
        assert [d["problem"] for d in early["details"]] == ["random_questions", "id_shown"]
        last = await mark_all(a, c.session_id)
        assert [s["done"] for s in last["checklist"]] == [True, True, False]
        photo = {"photo": base64.b64encode(encode_jpeg(astronaut_bgr())).decode()}  # the ID, scanned
        auth = {"Authorization": f"Bearer {await branch.login('agent1')}"}
        async with branch.http() as h:
            during = await h.put(f"/api/v1/sessions/{c.session_id}/reference-photo", json=photo, headers=auth)
            assert during.status_code == 200, during.text
        await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "opened",
                         "notes": "good file"})
        assert (await c.recv_type("session.ended"))["reason"] == "completed"
        assert await c.closed() == (1000, "session ended")  # the sealed session takes nothing more
        async with branch.http() as h:
            after = await h.put(f"/api/v1/sessions/{c.session_id}/reference-photo", json=photo, headers=auth)
        assert after.status_code == 409 and after.json()["error"]["code"] == "session_ended"
        with pytest.raises(Conflict) as refused:  # a consent that was on its way meanwhile
            await branch.app.state.branch.sessions.update(c.session_id, "consent", "customer", {"face": True},
                                                          {"consent": {"face": True}}, while_live=True)
        assert refused.value.code == "session_ended"
        status = await a.recv_type("agent.status")
        while status["status"] != "wrap_up":
            status = await a.recv_type("agent.status")
        assert await session_state(branch, c.session_id) == "wrap_up"
        await a.request({"type": "wrapup.done"})
        status = await a.recv_type("agent.status")
        assert status["status"] == "available"
        for _ in range(50):
            if await session_state(branch, c.session_id) == "completed":
                break
            await asyncio.sleep(0.02)
        assert await session_state(branch, c.session_id) == "completed"


async def test_supervisor_ends_an_incomplete_call_with_a_reason(branch):
    token = await branch.login("supervisor")
    async with customer(branch, "account_opening") as c, agent(branch, "agent1") as a, \
            branch.connect(token) as sup:
        await sup.request({"type": "hello"})
        await a.recv_type("offer")
        await a.request({"type": "offer.accept", "session_id": c.session_id})
        no_reason = await sup.request({"type": "session.end", "session_id": c.session_id, "disposition": "x"})
        assert no_reason["code"] == "missing_field"
        ok = await sup.request({"type": "session.end", "session_id": c.session_id, "disposition": "line_dropped",
                                "override_reason": "customer's line kept dropping"})
        assert ok["type"] == "ack"
        assert (await c.recv_type("session.ended"))["reason"] == "ended_by_supervisor"
    admin = await branch.login("admin")
    async with branch.http() as h:
        r = await h.get("/api/v1/audit", params={"session_id": c.session_id},
                        headers={"Authorization": f"Bearer {admin}"})
        entries = [e for e in r.json() if e["action"] == "session.override_end"]
    assert entries and entries[0]["detail"]["missing_steps"] == ["random_questions", "id_shown"]


async def test_wrap_up_times_out_to_available(branch):
    async with customer(branch, "account_opening") as c, agent(branch, "agent1") as a:
        await a.recv_type("offer")
        await a.request({"type": "offer.accept", "session_id": c.session_id})
        await mark_all(a, c.session_id)
        await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "done"})
        status = await a.recv_type("agent.status", timeout=5)
        while status["status"] != "available":
            status = await a.recv_type("agent.status", timeout=5)


async def test_ending_someone_elses_session_is_refused(branch):
    async with customer(branch) as c, agent(branch, "agent1") as a1, agent(branch, "agent3", available=False) as a3:
        await a1.recv_type("offer")
        await a1.request({"type": "offer.accept", "session_id": c.session_id})
        reply = await a3.request({"type": "session.end", "session_id": c.session_id, "disposition": "x"})
        assert reply["code"] == "not_your_session"
        reply = await a3.request({"type": "offer.accept", "session_id": c.session_id})
        assert reply["type"] == "error"


async def test_abandonment_while_waiting_shows_on_the_wallboard(branch):
    token = await branch.login("supervisor")
    async with branch.connect(token) as board:
        await board.request({"type": "hello"})
        await board.recv_type("wallboard.update")
        async with customer(branch, "risk_assessment") as c:
            await c.request({"type": "leave"})
        assert await session_state(branch, c.session_id) == "abandoned"
        for _ in range(10):
            update = await board.recv_type("wallboard.update", timeout=3)
            if update["abandoned"] == 1:
                break
        assert update["services"]["risk_assessment"]["abandoned"] == 1, update
        assert update["services"]["risk_assessment"]["waiting"] == 0


async def test_positions_move_as_others_are_served(branch):
    async with customer(branch) as c1, customer(branch) as c2, customer(branch) as c3:
        last = {}
        for c in (c1, c2, c3):
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    last[c.session_id] = (await c.recv_type("queue.update", timeout=0.3))["position"]
                    continue
                break
        assert [last[c.session_id] for c in (c1, c2, c3)] == [1, 2, 3]
        async with agent(branch, "agent1") as a:
            offer = await a.recv_type("offer")
            assert offer["session_id"] == c1.session_id
            await a.request({"type": "offer.accept", "session_id": c1.session_id})
            # updates also come when the estimate changes (an agent staffed); wait for the move
            assert await position_reaches(c2, 1) and await position_reaches(c3, 2)


async def test_priority_goes_first(branch):
    async with customer(branch) as low, customer(branch, priority=9) as vip:
        async with agent(branch, "agent1") as a:
            assert (await a.recv_type("offer"))["session_id"] == vip.session_id
        assert low.session_id


async def test_supervisor_takes_an_agent_out_of_rotation(branch):
    token = await branch.login("supervisor")
    async with agent(branch, "agent1") as a, branch.connect(token) as sup:
        await sup.request({"type": "hello"})
        agent_id = a.welcome["agent"]["id"]
        reply = await sup.request({"type": "agent.set_status", "agent_id": agent_id, "status": "away"})
        assert reply["status"] == "away"
        async with customer(branch) as c:
            with pytest.raises(asyncio.TimeoutError):
                await a.recv_type("offer", timeout=0.8)
            assert c.session_id
        bad = await sup.request({"type": "agent.set_status", "agent_id": 9999, "status": "away"})
        assert bad["code"] == "unknown_agent"


async def test_service_closed_is_told_clearly(tmp_path):
    async with run_server(tmp_path / "d") as srv:
        admin = await srv.login("admin")
        svc = {"code": "night_desk", "name_zh": "夜间", "name_en": "Night desk", "required_skills": {"lending": 1},
               "business_hours": {"timezone": "UTC", "days": [], "open": "09:00", "close": "10:00"}}
        async with srv.http() as h:
            r = await h.put("/api/v1/admin/services/night_desk", json=svc,
                            headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 200, r.text
        async with customer(srv, "night_desk") as c:
            update = await c.recv_type("queue.update")
            assert update["service_open"] is False and update["notice"] == "service_closed"
