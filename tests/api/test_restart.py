"""A restart keeps sessions, accounts and the queue (file-backed database)."""

from __future__ import annotations

from tests.support.server import run_server


async def test_restart_keeps_sessions_accounts_and_queue(tmp_path, database_url):
    data = tmp_path / "data"
    async with run_server(data, database_url) as srv:
        first = await srv.create_session("account_opening")
        second = await srv.create_session("account_opening", priority=5)
        for created in (first, second):
            async with srv.connect(created["join_token"]) as c:
                await c.request({"type": "hello"})
        admin = await srv.login("admin")
        async with srv.http() as h:
            r = await h.post("/api/v1/admin/agents", headers={"Authorization": f"Bearer {admin}"},
                             json={"username": "newhire", "password": "long-enough-pw", "display_name": "New Hire",
                                   "skills": {"accounts": 3}})
            assert r.status_code == 201
    # restart without demo seeding: what is there came from the database
    async with run_server(data, database_url, demo=False) as srv:
        token = await srv.login("newhire", "long-enough-pw")
        async with srv.http() as h:
            sup = await srv.login("supervisor")
            detail = (await h.get(f"/api/v1/sessions/{first['session_id']}",
                                  headers={"Authorization": f"Bearer {sup}"})).json()
            assert detail["state"] == "queued"
            stats = (await h.get("/api/v1/queue/stats", headers={"Authorization": f"Bearer {sup}"})).json()
            assert stats["services"]["account_opening"]["waiting"] == 2
        assert token
        # the join token issued before the restart still works and the order is kept
        async with srv.connect(first["join_token"]) as c:
            await c.request({"type": "hello"})
            assert (await c.recv_type("queue.update"))["position"] == 2
        async with srv.connect(second["join_token"]) as c:
            await c.request({"type": "hello"})
            assert (await c.recv_type("queue.update"))["position"] == 1
