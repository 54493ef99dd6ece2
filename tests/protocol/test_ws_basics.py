"""The WebSocket protocol over a real socket: greetings, resume, and every kind of bad input."""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest

from vbranch.domain.roles import Role


async def test_customer_gets_welcome_then_queue_update_and_agent_gets_welcome(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as customer:
        await customer.send({"type": "hello", "id": "h1"})
        welcome = await customer.recv()
        assert welcome["type"] == "welcome" and welcome["ref"] == "h1"
        assert welcome["session_id"] == created["session_id"] and welcome["state"] == "queued"
        assert len(welcome["resume_token"]) >= 20
        update = await customer.recv()
        assert update["type"] == "queue.update"
        assert update["position"] == 1
        # nobody staffed yet: no estimate, and the customer is told why
        assert update["estimated_wait_s"] is None and update["notice"] == "no_agents"

    token = await server.login("agent1")
    async with server.connect(token) as agent:
        welcome = await agent.request({"type": "hello"})
        assert welcome["type"] == "welcome"
        assert welcome["agent"]["username"] == "agent1" and welcome["agent"]["skills"]["lending"] == 4
        assert welcome["status"] in ("away", "offline")


async def test_ping_gets_pong_with_ref(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        assert (await c.request({"type": "ping"}))["type"] == "pong"


async def _expect_error(client, message, code):
    reply = await client.request(message) if isinstance(message, dict) else None
    if reply is None:
        await client.send(message)
        reply = await client.recv_type("error")
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert reply["message"]
    return reply


@pytest.fixture
async def greeted_customer(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        await c.request({"type": "hello"})
        await c.recv_type("queue.update")
        yield c


async def _still_serving(server, client):
    """The connection stays up and another client is served."""
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    other = await server.create_session()
    async with server.connect(other["join_token"]) as c2:
        assert (await c2.request({"type": "hello"}))["type"] == "welcome"


async def test_invalid_json(server, greeted_customer):
    await _expect_error(greeted_customer, "{not json", "invalid_json")
    await _still_serving(server, greeted_customer)


@pytest.mark.parametrize("frame, why", [
    ('{"type": "ping", "x": ' + "[" * 20000 + "]" * 20000 + "}", "nests deeper"),  # past the parser's recursion
    ('{"type": "ping", "x": ' + "[" * 17 + "]" * 17 + "}", "nests deeper"),  # past the protocol's depth
    ('{"type": "consent", "recording": true, "face": true, "location": {"lat": NaN, "lon": 1}}', "not JSON"),
    ('{"type": "consent", "recording": true, "face": true, "location": {"lat": 1, "lon": -Infinity}}', "not JSON"),
    ('{"type": "consent", "recording": true, "face": true, "location": {"lat": 1, "lon": 1, "accuracy_m": 1e999}}',
     "out of range"),
    ('{"type": "ping", "id": 1180591620717411303424}', "out of range"),  # 2**70: no database holds it
])
async def test_strict_json_only(server, greeted_customer, frame, why):
    """What is accepted is what evidence can store and export as JSON: a clear error, the socket stays."""
    reply = await _expect_error(greeted_customer, frame, "invalid_json")
    assert why in reply["message"]
    await _still_serving(server, greeted_customer)


async def test_a_reply_echoing_a_lone_surrogate_is_still_sent(server, greeted_customer):
    await greeted_customer.send('{"type": "ping", "id": "\\ud800"}')  # not text an id can be
    reply = await greeted_customer.recv_type("error")
    assert reply["code"] == "invalid_field" and reply["ref"] == "\ud800"
    await _still_serving(server, greeted_customer)


async def test_not_an_object(server, greeted_customer):
    await _expect_error(greeted_customer, "[1, 2]", "invalid_message")
    await _still_serving(server, greeted_customer)


async def test_unknown_type_echoes_ref(server, greeted_customer):
    reply = await _expect_error(greeted_customer, {"type": "teleport"}, "unknown_type")
    assert reply["ref"]
    await _still_serving(server, greeted_customer)


async def test_wrong_field_types(server, greeted_customer):
    reply = await _expect_error(greeted_customer, {"type": "consent", "recording": "yes", "face": 1},
                                "invalid_field")
    assert {d["field"] for d in reply["details"]} == {"recording", "face"}
    await _still_serving(server, greeted_customer)


async def test_missing_fields(server, greeted_customer):
    reply = await _expect_error(greeted_customer, {"type": "consent", "recording": True}, "missing_field")
    assert "face" in reply["message"]
    await _still_serving(server, greeted_customer)


async def test_binary_frame_is_refused(server, greeted_customer):
    await _expect_error(greeted_customer, b"\x00\x01", "invalid_message")
    await _still_serving(server, greeted_customer)


async def test_frame_over_64k_closes_1009(server, greeted_customer):
    await greeted_customer.send(json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}))
    code, _ = await greeted_customer.closed()
    assert code == 1009
    other = await server.create_session()
    async with server.connect(other["join_token"]) as c2:
        assert (await c2.request({"type": "hello"}))["type"] == "welcome"


async def test_frame_just_under_limit_is_parsed(server, greeted_customer):
    reply = await _expect_error(greeted_customer, {"type": "ping", "pad": "x" * 60_000}, "invalid_field")
    assert reply["details"][0]["field"] == "pad"


async def test_flood_over_rate_limit(server, greeted_customer):
    for i in range(60):
        await greeted_customer.send({"type": "ping", "id": i})
    replies = [await greeted_customer.recv() for _ in range(60)]
    limited = [r for r in replies if r["type"] == "error" and r["code"] == "rate_limited"]
    assert replies[0]["type"] == "pong"
    assert len(limited) >= 10
    assert all(r["ref"] is not None for r in limited)
    await asyncio.sleep(1.0)  # the bucket refills: the same connection is served again
    await _still_serving(server, greeted_customer)


async def test_sustained_flood_closes_1008(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        await c.request({"type": "hello"})
        for i in range(400):
            await c.send({"type": "ping", "id": i})
        assert (await c.closed())[0] == 1008


async def test_sustained_abuse_closes_1008(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        for _ in range(40):
            await c.send("garbage")
        code, _ = await c.closed()
        assert code == 1008


async def test_no_token(server):
    async with server.connect(None) as c:
        msg = await c.recv()
        assert msg == {"type": "error", "code": "unauthenticated", "message": msg["message"]}
        assert (await c.closed())[0] == 1008


async def test_garbage_token(server):
    async with server.connect("not.a.jwt") as c:
        assert (await c.recv())["code"] == "invalid_token"
        assert (await c.closed())[0] == 1008


async def test_token_signed_with_another_key(server):
    forged = jwt.encode({"typ": "staff", "sub": "1", "usr": "admin", "role": "admin", "exp": 9e9}, "another-key-of-32-bytes-or-more-xxxxxxx",
                        algorithm="HS256")
    async with server.connect(forged) as c:
        assert (await c.recv())["code"] == "invalid_token"


async def test_expired_token(server):
    tokens = server.runtime.tokens
    token, _ = tokens.issue_join("whatever")
    payload = jwt.decode(token, options={"verify_signature": False})
    payload["exp"] = server.runtime.clock.now() - 1
    expired = jwt.encode(payload, server.runtime.settings.resolved_secret_key(), algorithm="HS256")
    async with server.connect(expired) as c:
        assert (await c.recv())["code"] == "token_expired"
        assert (await c.closed())[0] == 1008


async def test_expired_staff_token(server):
    secret = server.runtime.settings.resolved_secret_key()
    expired = jwt.encode({"typ": "staff", "sub": "1", "usr": "agent1", "role": "agent",
                          "exp": server.runtime.clock.now() - 5}, secret, algorithm="HS256")
    async with server.connect(expired) as c:
        assert (await c.recv())["code"] == "token_expired"


async def test_customer_token_cannot_act_on_another_session(server):
    mine = await server.create_session()
    other = await server.create_session()
    async with server.connect(mine["join_token"]) as c:
        welcome = await c.request({"type": "hello"})
        assert welcome["session_id"] == mine["session_id"]
        # a customer's messages carry no session id of their choosing; naming one is refused
        reply = await c.request({"type": "rtc.offer", "sdp": "v=0", "session_id": other["session_id"]})
        assert reply["type"] == "error" and reply["code"] == "forbidden"


async def test_customer_may_not_send_agent_messages(server, greeted_customer):
    for message in ({"type": "offer.accept", "session_id": "x"}, {"type": "agent.status", "status": "available"},
                    {"type": "session.end", "session_id": "x", "disposition": "done"}):
        await _expect_error(greeted_customer, message, "forbidden")
    await _still_serving(server, greeted_customer)


@pytest.mark.parametrize("username", ["reviewer", "supervisor"])
async def test_staff_role_calling_what_it_may_not(server, username):
    token = await server.login(username)
    async with server.connect(token) as c:
        await c.request({"type": "hello"})
        await _expect_error(c, {"type": "offer.accept", "session_id": "abc"}, "forbidden")
        await _expect_error(c, {"type": "consent", "recording": True, "face": True}, "forbidden")


async def test_messages_before_hello_are_refused(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        await _expect_error(c, {"type": "consent", "recording": True, "face": True}, "hello_required")
        assert (await c.request({"type": "hello"}))["type"] == "welcome"
        await _expect_error(c, {"type": "hello"}, "already_greeted")


async def test_second_live_connection_is_refused_and_resume_token_takes_over(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as first:
        welcome = await first.request({"type": "hello"})
        async with server.connect(created["join_token"]) as second:
            await _expect_error(second, {"type": "hello"}, "session_in_use")
            await _expect_error(second, {"type": "hello", "resume_token": "forged-token"}, "resume_failed")
            resumed = await second.request({"type": "hello", "resume_token": welcome["resume_token"]})
            assert resumed["type"] == "welcome" and resumed["resume_token"] != welcome["resume_token"]
            assert (await first.closed())[0] == 4001
            assert (await second.recv_type("queue.update"))["position"] == 1


async def test_resume_after_reconnect_keeps_the_place(server):
    first = await server.create_session()
    second = await server.create_session()
    async with server.connect(first["join_token"]) as c:
        welcome = await c.request({"type": "hello"})
    async with server.connect(second["join_token"]) as c2:
        await c2.request({"type": "hello"})
        assert (await c2.recv_type("queue.update"))["position"] == 2
    async with server.connect(first["join_token"]) as c:
        back = await c.request({"type": "hello", "resume_token": welcome["resume_token"]})
        assert back["state"] == "queued"
        assert (await c.recv_type("queue.update"))["position"] == 1


async def test_resume_window_passing_abandons_the_session(tmp_path):
    from tests.support.server import run_server

    async with run_server(tmp_path / "d", resume_window_s=0.3) as srv:
        created = await srv.create_session()
        async with srv.connect(created["join_token"]) as c:
            welcome = await c.request({"type": "hello"})
        await asyncio.sleep(0.8)
        async with srv.connect(created["join_token"]) as c:
            reply = await c.request({"type": "hello", "resume_token": welcome["resume_token"]})
            assert reply["code"] == "session_closed"
        token = await srv.login("supervisor")
        async with srv.http() as h:
            detail = (await h.get(f"/api/v1/sessions/{created['session_id']}",
                                  headers={"Authorization": f"Bearer {token}"})).json()
        assert detail["state"] == "abandoned"


async def test_leave_while_waiting_abandons(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        await c.request({"type": "hello"})
        ended = await c.request({"type": "leave"})
        assert ended == {"type": "session.ended", "reason": "customer_left", "ref": ended["ref"]}
        assert (await c.closed())[0] == 1000
    assert Role.SUPERVISOR  # role enum importable for the matrix below


async def test_consent_is_recorded_on_the_timeline(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        await c.request({"type": "hello"})
        reply = await c.request({"type": "consent", "recording": True, "face": True,
                                 "location": {"lat": 31.23, "lon": 121.47}})
        assert reply["type"] == "consent.recorded" and reply["consent"]["location"]["lat"] == 31.23
    token = await server.login("reviewer")
    async with server.http() as h:
        events = (await h.get(f"/api/v1/sessions/{created['session_id']}/timeline",
                              headers={"Authorization": f"Bearer {token}"})).json()
    assert [e["kind"] for e in events] == ["session.created", "consent"]
    assert events[1]["data"]["face"] is True


async def test_a_resume_token_that_is_not_ascii_is_a_field_error(server):
    created = await server.create_session()
    async with server.connect(created["join_token"]) as c:
        reply = await c.request({"type": "hello", "resume_token": "résumé-令牌"})
        assert reply["type"] == "error" and reply["code"] == "invalid_field", reply
        assert (await c.request({"type": "hello"}))["type"] == "welcome"
