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

import av
import pytest
import redis

from tests.protocol.test_call_ws import answer_over, connected_call, negotiate, peer_for
from tests.protocol.test_routing_ws import agent, customer, mark_all
from tests.support.process import ServerProcess
from tests.support.server import run_server
from vbranch.clock import FakeClock
from vbranch.media.synthetic import make_clip

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


@pytest.mark.parametrize("sig,presence", [(signal.SIGTERM, "database"), (signal.SIGKILL, "database"),
                                          (signal.SIGKILL, "redis")], ids=["sigterm", "sigkill", "sigkill-redis"])
async def test_waiting_customers_keep_their_places_across_a_restart(tmp_path, sig, presence):
    env = {"VBRANCH_RESUME_WINDOW_S": str(RESUME_WINDOW_S)}
    if presence == "redis":  # the presence store of several nodes; a key prefix of this test's own
        env |= {"VBRANCH_REDIS_URL": "redis://127.0.0.1:6379/0",
                "VBRANCH_REDIS_PREFIX": f"vbranch-test-{tmp_path.name}-{time.time_ns()}"}
    srv = ServerProcess(tmp_path / "data", **env)
    await srv.start()
    clients = []
    peers: list = []
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
        # ... with aiortc media both ways, being recorded
        clip = make_clip(seconds=2.0)
        call_peers = [peer_for(clip), peer_for(clip)]
        peers += call_peers
        await asyncio.gather(negotiate(caller, call_peers[0]), negotiate(a3, call_peers[1], loan["session_id"]))
        await asyncio.gather(*(p.wait_frames("video", 20, 20) for p in call_peers))
        await asyncio.sleep(1.5)

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
        restarted_at = time.monotonic()

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
        # the media before the restart is stored as each party's first segment ...
        reviewer = await srv.login("reviewer")
        async with srv.http() as h:
            recs = (await h.get(f"/api/v1/sessions/{loan['session_id']}/recordings",
                                headers={"Authorization": f"Bearer {reviewer}"})).json()
        assert sorted((r["party"], r["segment"]) for r in recs) == [("agent", 1), ("customer", 1)]
        # ... and the media comes back on new peer connections (recorded as segment 2)
        call_peers = [peer_for(clip), peer_for(clip)]
        peers += call_peers
        await asyncio.gather(negotiate(caller, call_peers[0]), negotiate(a3, call_peers[1], loan["session_id"]))
        await asyncio.gather(*(p.wait_frames("video", 20, 20) for p in call_peers))

        back = customers[GONE:]
        customers_from = time.monotonic()
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
        print(f"restart: the 3 staff and the call's media back {customers_from - restarted_at:.2f} s after the "
              f"server was up; then {len(back)} waiting customers re-attached, one after another, in "
              f"{time.monotonic() - customers_from:.2f} s")
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
            verdict = (await h.get(f"/api/v1/sessions/{loan['session_id']}/verify",
                                   headers={"Authorization": f"Bearer {reviewer}"})).json()
            assert verdict["ok"] is True and "call in progress" in verdict["notes"][0], verdict
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
        for p in peers:
            await p.close()
        for c in clients:
            try:
                await asyncio.wait_for(c.__aexit__(None, None, None), 2)
            except Exception:
                pass
        srv.kill_quietly()
        if presence == "redis":
            with redis.Redis.from_url(env["VBRANCH_REDIS_URL"]) as r:
                r.delete(f"{env['VBRANCH_REDIS_PREFIX']}:presence")


async def test_sessions_whose_join_token_expires_unused_are_ended_by_the_sweeper(tmp_path):
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


async def call_across_a_restart(srv: ServerProcess, sig: int, peers: list) -> dict:
    """agent1 and a customer in a call with aiortc media; the server is stopped with ``sig`` and started
    again; both come back with new peer connections and the call is ended. What happened, with times."""
    clip = make_clip(seconds=2.0)
    agent_token = await srv.login("agent1")
    a = await srv.connect(agent_token).__aenter__()
    agent_resume = (await a.request({"type": "hello"}))["resume_token"]
    await a.request({"type": "agent.status", "status": "available"})
    created = await srv.create_session("account_opening")
    sid = created["session_id"]
    c = await srv.connect(created["join_token"]).__aenter__()
    customer_resume = (await c.request({"type": "hello"}))["resume_token"]
    await a.request({"type": "offer.accept", "session_id": (await a.recv_type("offer"))["session_id"]})
    await c.recv_type("session.assigned")
    cust, ag = peer_for(clip), peer_for(clip)
    peers += [cust, ag]
    await asyncio.gather(negotiate(c, cust), negotiate(a, ag, sid))
    await asyncio.gather(cust.wait_frames("video", 20, 20), ag.wait_frames("video", 20, 20))
    await asyncio.sleep(2.0)
    stopped_at = time.time()
    await srv.stop(sig)
    await asyncio.gather(cust.close(), ag.close())
    await srv.start()
    restarted_at = time.time()

    a, welcome, _ = await hello_again(srv, agent_token, agent_resume)
    assert welcome["status"] == "busy" and welcome["call"]["session_id"] == sid
    c, welcome, _ = await hello_again(srv, created["join_token"], customer_resume)
    assert welcome["state"] == "connected"
    cust, ag = peer_for(clip), peer_for(clip)  # a new peer connection each, as the pages make
    peers += [cust, ag]
    await asyncio.gather(negotiate(c, cust), negotiate(a, ag, sid))
    await asyncio.gather(cust.wait_frames("video", 20, 20), ag.wait_frames("video", 20, 20))
    media_back_s = time.time() - restarted_at
    await asyncio.sleep(2.0)
    await mark_all(a, sid)
    await a.request({"type": "session.end", "session_id": sid, "disposition": "done"})
    reviewer = await srv.login("reviewer")
    async with srv.http() as h:
        for _ in range(150):  # sealed once the end-of-call work is done
            if (await h.get(f"/api/v1/sessions/{sid}/manifest",
                            headers={"Authorization": f"Bearer {reviewer}"})).status_code == 200:
                break
            await asyncio.sleep(0.2)
    for ws in (a, c):
        await ws.__aexit__(None, None, None)
    return {"session_id": sid, "stopped_at": stopped_at, "media_back_s": media_back_s}


@pytest.mark.media
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_call_goes_on_across_a_restart_in_recording_segments(tmp_path, sig):
    """aiortc parties in a call; the server restarts; the media comes back on new peer connections and
    each party's recording has one segment per side of the restart, all sealed and verified."""
    # the restart is a gap on the timeline; this test lets it pass the completeness rule
    srv = ServerProcess(tmp_path / "data", VBRANCH_EVIDENCE_MAX_GAP_S="60")
    await srv.start()
    peers: list = []
    try:
        call = await call_across_a_restart(srv, sig, peers)
        sid = call["session_id"]
        reviewer = await srv.login("reviewer")
        auth = {"Authorization": f"Bearer {reviewer}"}
        async with srv.http() as h:
            manifest = (await h.get(f"/api/v1/sessions/{sid}/manifest", headers=auth)).json()["manifest"]
            recs = (await h.get(f"/api/v1/sessions/{sid}/recordings", headers=auth)).json()
            timeline = (await h.get(f"/api/v1/sessions/{sid}/timeline", headers=auth)).json()
            verdict = (await h.get(f"/api/v1/sessions/{sid}/verify", headers=auth)).json()
            assert sorted((r["party"], r["segment"]) for r in recs) == [
                ("agent", 1), ("agent", 2), ("customer", 1), ("customer", 2)]
            assert sorted((r["party"], r["segment"], r["sha256"]) for r in manifest["recordings"]) == sorted(
                (r["party"], r["segment"], r["sha256"]) for r in recs)
            for rec in recs:  # every segment plays
                path = tmp_path / f"{rec['party']}-{rec['segment']}.webm"
                path.write_bytes((await h.get(rec["media_url"])).content)
                with av.open(str(path)) as container:
                    assert sum(1 for _ in container.decode(video=0)) >= 15
            for rec in recs:  # the first segment ends at most 2 s before the stop
                if rec["segment"] == 1:
                    assert rec["started_at_epoch"] + rec["duration_s"] >= call["stopped_at"] - 2.0, rec
        kinds = [e["kind"] for e in timeline]
        # segments 1 stored at the shutdown (SIGTERM) or recovered at the start (SIGKILL), then segments 2
        recovered = 0 if sig == signal.SIGTERM else 2
        assert (kinds.count("recording.recovered"), kinds.count("recording.finalised")) == (recovered, 4 - recovered)
        # the gap is on the timeline: the parties' media went and came back
        assert kinds.count("media.party_connected") >= 4
        assert verdict["ok"] is True, verdict
        print(f"media back {call['media_back_s']:.2f} s after the restart")
    finally:
        for p in peers:
            await p.close()
        srv.kill_quietly()


@pytest.mark.media
async def test_a_lost_path_comes_back_by_ice_restart_and_the_recording_shows_the_gap(tmp_path):
    """The customer's path is lost for 5 s (its ICE sockets go silent, as when a phone leaves a
    Wi-Fi network). The client restarts ICE over the same WebSocket (``rtc.offer`` with
    ``ice_restart``): the same peer connection and DTLS session carry on over new candidates, the
    recording stays one file with the 5 s as a gap on the timeline and in the evidence, and the
    first frame after the gap is a key frame."""

    clip = make_clip(seconds=2.0)
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                await asyncio.gather(negotiate(c, cust), negotiate(a, ag, c.session_id))
                await asyncio.gather(cust.wait_frames("video", 20, 20), ag.wait_frames("video", 20, 20))
                await asyncio.sleep(1.0)
                lost_at = time.monotonic()
                cust.lose_path()  # no more packets either way; nothing tells the server
                await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - lost_at)))
                before_ag, before_cust = ag.received["video"].frames, cust.received["video"].frames
                back_from = time.monotonic()
                switched_s = await cust.restart_ice(answer_over(c, ice_restart=True))  # same socket, same session
                await asyncio.gather(ag.wait_frames("video", before_ag + 10, 20),
                                     cust.wait_frames("video", before_cust + 10, 20))
                media_back = time.monotonic() - back_from
                # a restart offer from a peer connection the server does not hold is refused, typed
                stranger = peer_for(clip)
                await stranger.pc.setLocalDescription(await stranger.pc.createOffer())
                refused = await c.request({"type": "rtc.offer", "sdp": stranger.pc.localDescription.sdp,
                                           "ice_restart": True})
                await stranger.close()
                assert refused["type"] == "error" and refused["code"] == "ice_restart_unavailable", refused
                await asyncio.sleep(1.0)
                await mark_all(a, c.session_id)
                await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "done"})
                await srv.coordinator.settled(c.session_id)
            finally:
                await asyncio.gather(cust.close(), ag.close())
        sup = await srv.login("reviewer")
        async with srv.http() as h:
            auth = {"Authorization": f"Bearer {sup}"}
            recs = (await h.get(f"/api/v1/sessions/{c.session_id}/recordings", headers=auth)).json()
            detail = (await h.get(f"/api/v1/sessions/{c.session_id}", headers=auth)).json()
            timeline = (await h.get(f"/api/v1/sessions/{c.session_id}/timeline", headers=auth)).json()
            rec = next(r for r in recs if r["party"] == "customer")
            media = await h.get(rec["media_url"])
        assert sorted((r["party"], r["segment"]) for r in recs) == [("agent", 1), ("customer", 1)]
        mine = [e["kind"] for e in timeline if e["data"].get("party") == "customer" and e["kind"] in (
            "media.party_connected", "media.party_disconnected", "media.party_stalled", "media.ice_restarted",
            "media.party_resumed")]
        assert mine[:4] == ["media.party_connected", "media.party_stalled", "media.ice_restarted",
                            "media.party_resumed"], mine
        assert "media.party_disconnected" not in mine[:4]  # one connection all along
        gaps = [i for i in detail["evidence_issues"] if i["party"] == "customer" and i["reason"] == "gap"]
        assert len(gaps) == 1 and gaps[0]["duration_s"] >= 1.0, detail["evidence_issues"]
        assert media.status_code == 200, media.text
        path = tmp_path / "customer.webm"  # the recording itself: the first frame after the gap is a key frame
        path.write_bytes(media.content)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [(float(p.pts * stream.time_base), p.is_keyframe)
                       for p in container.demux(stream) if p.pts is not None and p.size]
        jumps = [i for i in range(1, len(packets)) if packets[i][0] - packets[i - 1][0] > 3.0]
        assert len(jumps) == 1 and packets[jumps[0]][1], jumps
        print(f"ICE restart switched in {switched_s:.2f} s; customer media back {media_back:.2f} s after its "
              f"restart offer; recorded gap {gaps[0]['duration_s']} s")


async def test_sigterm_drains_first_when_asked(tmp_path):
    """VBRANCH_DRAIN_S: after SIGTERM /healthz says draining and new sessions are refused, while the
    connected go on; then every socket is closed with 1012 and the process stops."""
    srv = ServerProcess(tmp_path / "data", VBRANCH_DRAIN_S="3")
    await srv.start()
    try:
        created = await srv.create_session("account_opening")
        c = await srv.connect(created["join_token"]).__aenter__()
        await c.request({"type": "hello"})
        srv.proc.send_signal(signal.SIGTERM)
        async with srv.http() as h:
            for _ in range(50):
                health = await h.get("/healthz")
                if health.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert health.status_code == 503 and health.json()["error"]["code"] == "draining"
            refused = await h.post("/api/v1/sessions", headers={"X-Api-Key": srv.api_key},
                                   json={"service": "account_opening", "channel": "h5",
                                         "customer": {"ref": "C-2", "name": "Han Meimei"}})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert (await c.request({"type": "ping"}))["type"] == "pong"  # the connected go on meanwhile
        code, _ = await c.closed(timeout=15)
        assert code == 1012
        assert await asyncio.to_thread(srv.proc.wait, 15) == -signal.SIGTERM
    finally:
        srv.kill_quietly()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_call_in_wrap_up_at_the_restart_is_sealed_and_completed(tmp_path, sig):
    """The end-of-call work of a call that had ended (its seal, its completion after the wrap-up) is
    lost with the process: the next start does it."""
    srv = ServerProcess(tmp_path / "data", VBRANCH_WRAPUP_S="600")
    await srv.start()
    try:
        token = await srv.login("agent1")
        a = await srv.connect(token).__aenter__()
        await a.request({"type": "hello"})
        await a.request({"type": "agent.status", "status": "available"})
        created = await srv.create_session("account_opening")
        sid = created["session_id"]
        c = await srv.connect(created["join_token"]).__aenter__()
        await c.request({"type": "hello"})
        await a.request({"type": "offer.accept", "session_id": (await a.recv_type("offer"))["session_id"]})
        await a.recv_type("session.connected")
        await mark_all(a, sid)
        await a.request({"type": "session.end", "session_id": sid, "disposition": "done"})
        await srv.stop(sig)  # at once: in wrap-up for ten more minutes, maybe not even sealed
        await srv.start()
        reviewer = await srv.login("reviewer")
        auth = {"Authorization": f"Bearer {reviewer}"}
        async with srv.http() as h:
            for _ in range(100):
                detail = (await h.get(f"/api/v1/sessions/{sid}", headers=auth)).json()
                if detail["state"] == "completed":
                    break
                await asyncio.sleep(0.1)
            assert detail["state"] == "completed"
            assert (await h.get(f"/api/v1/sessions/{sid}/manifest", headers=auth)).status_code == 200
            verdict = (await h.get(f"/api/v1/sessions/{sid}/verify", headers=auth)).json()
            # intact and sealed; this call had no media, which the evidence says (and verify reports)
            assert verdict["sealed"] and [p.split(": ", 1)[1] for p in verdict["problems"]] == [
                "evidence incomplete: customer media never connected; agent media never connected "
                "(not acknowledged by a supervisor)"], verdict
    finally:
        srv.kill_quietly()
