"""A server restart (SIGTERM or SIGKILL) over real WebSockets: every waiting customer keeps its place.

The server runs in its own process; the customers reconnect as the pages do: a
hello with their resume token (kept, hashed, in the presence store, so it is
still good after the restart), and on resume_failed a plain hello with their
join token. Customers who do not come back are never offered to an agent.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from tests.support.process import ServerProcess

WAITING = 20
GONE = 3  # the first three never come back
RESUME_WINDOW_S = 12


async def hello_again(srv: ServerProcess, token: str, resume_token: str | None):
    """Reconnect as the pages do; returns (client, welcome, how it got back)."""
    c = await srv.connect(token).__aenter__()
    reply = await c.request({"type": "hello", "resume_token": resume_token})
    how = "resumed"
    if reply["type"] == "error":
        assert reply["code"] == "resume_failed", reply
        reply = await c.request({"type": "hello"})
        how = "hello"
    assert reply["type"] == "welcome", reply
    return c, reply, how


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_waiting_customers_keep_their_places_across_a_restart(tmp_path, sig):
    srv = ServerProcess(tmp_path / "data", VBRANCH_RESUME_WINDOW_S=str(RESUME_WINDOW_S))
    await srv.start()
    clients = []
    try:
        agents = {name: await srv.login(name) for name in ("agent1", "agent2")}
        staff_resume = {}
        for name, token in agents.items():  # logged in and away: nobody is served before the restart
            c = srv.connect(token)
            clients.append(await c.__aenter__())
            staff_resume[name] = (await c.request({"type": "hello"}))["resume_token"]
        # a call in progress (agent3, loan pre-screening) with one checklist step marked
        agent3 = await srv.login("agent3")
        a3 = await srv.connect(agent3).__aenter__()
        clients.append(a3)
        a3_resume = (await a3.request({"type": "hello"}))["resume_token"]
        await a3.request({"type": "agent.status", "status": "available"})
        loan = await srv.create_session("loan_prescreen")
        caller = await srv.connect(loan["join_token"]).__aenter__()
        clients.append(caller)
        caller_resume = (await caller.request({"type": "hello"}))["resume_token"]
        offer = await a3.recv_type("offer")
        await a3.request({"type": "offer.accept", "session_id": offer["session_id"]})
        await a3.recv_type("session.connected")
        reply = await a3.request({"type": "checklist.mark", "session_id": loan["session_id"],
                                  "step": "income_confirmed"})
        assert reply["type"] == "ack", reply

        customers = []
        for i in range(WAITING):
            created = await srv.create_session("account_opening")
            c = await srv.connect(created["join_token"]).__aenter__()
            clients.append(c)
            welcome = await c.request({"type": "hello"})
            position = (await c.recv_type("queue.update"))["position"]
            assert position == i + 1
            customers.append({"session_id": created["session_id"], "join_token": created["join_token"],
                              "resume_token": welcome["resume_token"], "position": position, "client": c})

        assert await srv.stop(sig) == -sig  # after a clean shutdown uvicorn re-raises SIGTERM
        if sig == signal.SIGTERM:  # told to come back: 1012 is "service restart"
            closed = await asyncio.gather(*(c["client"].closed() for c in customers))
            assert {code for code, _ in closed} == {1012}
        await srv.start()

        staff = {}
        for name, token in agents.items():
            staff[name], _, how = await hello_again(srv, token, staff_resume[name])
            assert how == "resumed"  # resume tokens are kept (hashed) across the restart
            clients.append(staff[name])
        await staff["agent1"].request({"type": "agent.status", "status": "available"})

        # the agent in a call is back in it, busy, with the checklist as the server has it
        a3, welcome, how = await hello_again(srv, agent3, a3_resume)
        clients.append(a3)
        assert how == "resumed" and welcome["status"] == "busy"
        assert welcome["call"]["session_id"] == loan["session_id"]
        assert {s["code"]: s["done"] for s in welcome["call"]["checklist"]} == {
            "identity_verified": False, "income_confirmed": True, "purpose_recorded": False}
        caller, welcome, how = await hello_again(srv, loan["join_token"], caller_resume)
        clients.append(caller)
        assert how == "resumed" and welcome["state"] == "connected"
        reply = await a3.request({"type": "checklist.mark", "session_id": loan["session_id"],
                                  "step": "purpose_recorded"})
        assert reply["type"] == "ack", reply  # the call goes on where it was

        back = customers[GONE:]
        random.Random(7).shuffle(back)
        for n, cust in enumerate(back):
            c, welcome, how = await hello_again(srv, cust["join_token"], cust["resume_token"])
            clients.append(c)
            assert how == "resumed"
            assert welcome["session_id"] == cust["session_id"] and welcome["state"] in ("queued", "offered")
            assert (await c.recv_type("queue.update"))["position"] == cust["position"]  # the same place
            if n == 0:  # the first customer back is the only one there: agent1 is offered it
                offer = await staff["agent1"].recv_type("offer", timeout=10)
                assert offer["session_id"] == cust["session_id"]
        # agent2 gets the longest-waiting customer who is back, never one who is not
        await staff["agent2"].request({"type": "agent.status", "status": "available"})
        offer = await staff["agent2"].recv_type("offer", timeout=10)
        expected = min((c for c in back[1:]), key=lambda c: c["position"])
        assert offer["session_id"] == expected["session_id"]

        supervisor = await srv.login("supervisor")
        async with srv.http() as h:
            auth = {"Authorization": f"Bearer {supervisor}"}
            for cust in customers:
                detail = (await h.get(f"/api/v1/sessions/{cust['session_id']}", headers=auth)).json()
                assert detail["state"] in ("queued", "offered")
                if cust in customers[:GONE]:
                    assert detail["state"] == "queued"  # never offered while away
            stats = (await h.get("/api/v1/queue/stats", headers=auth)).json()
            assert stats["services"]["account_opening"]["waiting"] == WAITING  # no session lost or added
            # those who never came back are abandoned when their resume window (restored from the
            # presence store) passes
            for cust in customers[:GONE]:
                for _ in range(200):
                    detail = (await h.get(f"/api/v1/sessions/{cust['session_id']}", headers=auth)).json()
                    if detail["state"] != "queued":
                        break
                    await asyncio.sleep(0.1)
                assert detail["state"] == "abandoned"
                assert detail["end_reason"] == "customer_disconnected"
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.__aexit__(None, None, None), 2)
            except Exception:
                pass
        srv.kill_quietly()


async def test_sessions_whose_join_token_expires_unused_are_ended_by_the_sweeper(tmp_path):
    from tests.support.server import run_server
    from vbranch.clock import FakeClock

    clock = FakeClock(time.time())  # tokens carry real issue times
    async with run_server(tmp_path / "data", clock=clock, join_token_ttl_s=600, expiry_sweep_s=0.1) as srv:
        never = await srv.create_session("account_opening")
        waiting = await srv.create_session("account_opening")
        async with srv.connect(waiting["join_token"]) as c:
            await c.request({"type": "hello"})
            clock.advance(601)
            supervisor = await srv.login("supervisor")
            async with srv.http() as h:
                auth = {"Authorization": f"Bearer {supervisor}"}
                for _ in range(100):
                    state = (await h.get(f"/api/v1/sessions/{never['session_id']}", headers=auth)).json()["state"]
                    if state != "queued":
                        break
                    await asyncio.sleep(0.05)
                assert state == "abandoned"
                timeline = (await h.get(f"/api/v1/sessions/{never['session_id']}/timeline", headers=auth)).json()
                assert timeline[-1]["data"]["reason"] == "join_token_expired"
                # the customer who is here waits on, token expired or not
                assert (await h.get(f"/api/v1/sessions/{waiting['session_id']}", headers=auth)).json()["state"] \
                    == "queued"
            assert (await c.request({"type": "ping"}))["type"] == "pong"
        # and the expired token no longer opens the session
        async with srv.connect(never["join_token"]) as c:
            code, _ = await c.closed()
            assert code == 1008
