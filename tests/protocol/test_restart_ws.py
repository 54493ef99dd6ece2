"""A server restart (SIGTERM or SIGKILL) over real WebSockets: every waiting customer keeps its place.

The server runs in its own process; the customers reconnect as the pages do: a
hello with their resume token, and on resume_failed a plain hello with their
join token. Customers who do not come back are never offered to an agent.
"""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from tests.support.process import ServerProcess

WAITING = 20
GONE = 3  # the first three never come back


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
    srv = ServerProcess(tmp_path / "data")
    await srv.start()
    clients = []
    try:
        agents = {name: await srv.login(name) for name in ("agent1", "agent2")}
        for token in agents.values():  # logged in and away: nobody is served before the restart
            c = srv.connect(token)
            clients.append(await c.__aenter__())
            await c.request({"type": "hello"})
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
            staff[name], _, _ = await hello_again(srv, token, None)
            clients.append(staff[name])
        await staff["agent1"].request({"type": "agent.status", "status": "available"})

        back = customers[GONE:]
        random.Random(7).shuffle(back)
        for n, cust in enumerate(back):
            c, welcome, _ = await hello_again(srv, cust["join_token"], cust["resume_token"])
            clients.append(c)
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
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.__aexit__(None, None, None), 2)
            except Exception:
                pass
        srv.kill_quietly()
