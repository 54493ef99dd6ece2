"""ICE as real browsers do it, and missing media as evidence, over the real WebSocket with aiortc peers.

- An offer whose only candidates are mDNS names plus ``a=end-of-candidates``
  (Firefox with default privacy, Chromium without camera permission) connects:
  the hub learns the party's address from its checks.
- Trickle both ways: the client's candidates go as ``rtc.ice`` after an offer
  without any; the hub's come back as ``rtc.ice`` after the answer, then a null.
- Bad or unusable candidates get a typed answer, never a silent dead call.
- A party whose media never connects flags the session (evidence_incomplete),
  ``vbranch verify`` exits 1 naming it until a supervisor acknowledges it, and a
  service that requires complete recordings refuses ``session.end``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid

import pytest
from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from tests.protocol.test_call_ws import clip, connected_call, negotiate, peer_for  # noqa: F401 (fixture)
from tests.protocol.test_routing_ws import agent, customer, mark_all
from tests.support.server import run_server

pytestmark = pytest.mark.media

CANDIDATE = re.compile(r"^a=candidate:(\S+ \d+ udp \d+ )(\S+)( \d+ typ host.*)$", re.IGNORECASE)


def mdns_only(sdp: str) -> str:
    """What Firefox sends by default: host addresses hidden behind <uuid>.local names, then the end."""
    names: dict[str, str] = {}

    def hide(line: str) -> str:
        m = CANDIDATE.match(line)
        if not m:
            return line
        name = names.setdefault(m.group(2), f"{uuid.uuid4()}.local")
        return f"a=candidate:{m.group(1)}{name}{m.group(3)}"

    lines = [hide(line) for line in sdp.split("\r\n")]
    assert any(".local " in line for line in lines)
    return "\r\n".join(lines)


def without_candidates(sdp: str) -> tuple[str, list[tuple[str | None, str]]]:
    """The SDP with its candidate lines (and end-of-candidates) taken out, and those (mid, line)."""
    kept, taken, mid = [], [], None
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        if line.startswith("a=candidate:"):
            taken.append((mid, line[2:]))
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept), taken


async def timeline(srv, session_id: str) -> list[dict]:
    token = await srv.login("supervisor")
    async with srv.http() as h:
        r = await h.get(f"/api/v1/sessions/{session_id}/timeline", headers={"Authorization": f"Bearer {token}"})
        return r.json()


async def test_mdns_only_offer_with_end_of_candidates_connects(tmp_path, clip):  # noqa: F811
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                async def hidden_answer(sdp: str) -> str:
                    reply = await c.request({"type": "rtc.offer", "sdp": mdns_only(sdp)}, timeout=15)
                    assert reply["type"] == "rtc.answer", reply
                    assert "a=candidate:" in reply["sdp"], "the hub must offer its own candidates"
                    return reply["sdp"]

                await asyncio.gather(cust.connect(hidden_answer), negotiate(a, ag, c.session_id))
                await asyncio.gather(cust.wait_frames("video", 15, 20), ag.wait_frames("video", 15, 20))
            finally:
                await asyncio.gather(cust.close(), ag.close())
            events = await timeline(srv, c.session_id)
            offer = next(e["data"] for e in events if e["kind"] == "media.offer_received"
                         and e["data"]["party"] == "customer")
            assert offer["mdns_ignored"] > 0 and offer["candidates"] == 0
            connected = next(e["data"] for e in events if e["kind"] == "media.party_connected"
                             and e["data"]["party"] == "customer")
            assert connected["ignored_candidates"]["mdns"] > 0


async def test_trickle_in_both_directions(tmp_path, clip):  # noqa: F811
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                offer = await cust.pc.createOffer()
                await cust.pc.setLocalDescription(offer)
                bare, mine = without_candidates(cust.pc.localDescription.sdp)
                assert mine, "aiortc gathered candidates"
                await c.send({"type": "rtc.offer", "sdp": bare, "id": "offer"})
                statuses = []
                for mid, line in mine:  # trickled after the offer, then the end
                    ack = await c.request({"type": "rtc.ice", "candidate": {"candidate": line, "sdpMid": mid}})
                    statuses.append(ack.get("status"))
                statuses.append((await c.request({"type": "rtc.ice", "candidate": None}))["status"])
                # queued: the offer's answer is still waiting for the agent's offer
                assert set(statuses[:-1]) <= {"added", "queued"} and statuses[-1] in ("end", "queued"), statuses
                # (the answer waits for the agent's offer, so the call uses one codec)
                agent_side = asyncio.create_task(negotiate(a, ag, c.session_id))
                answer, hub_candidates = None, []
                async with asyncio.timeout(20):
                    while not hub_candidates or hub_candidates[-1] is not None:
                        msg = await c.recv(20)
                        if msg.get("ref") == "offer":
                            answer = msg
                        elif msg["type"] == "rtc.ice":
                            assert answer is not None, "the hub's candidates come after its answer"
                            hub_candidates.append(msg["candidate"])
                assert answer["type"] == "rtc.answer", answer
                assert hub_candidates and hub_candidates[-1] is None, "the hub's candidates end with null"
                assert all(h["candidate"].startswith("candidate:") and h["sdpMid"] is not None
                           for h in hub_candidates[:-1])
                # the client takes the hub's candidates from rtc.ice only, not from the answer
                bare_answer, _ = without_candidates(answer["sdp"])
                await cust.pc.setRemoteDescription(RTCSessionDescription(sdp=bare_answer, type="answer"))
                for h in hub_candidates[:-1]:
                    ice = candidate_from_sdp(h["candidate"][len("candidate:"):])
                    ice.sdpMid, ice.sdpMLineIndex = h["sdpMid"], h["sdpMLineIndex"]
                    await cust.pc.addIceCandidate(ice)
                await cust.pc.addIceCandidate(None)
                await agent_side
                await asyncio.gather(cust.wait_frames("video", 15, 20), ag.wait_frames("video", 15, 20))
            finally:
                await asyncio.gather(cust.close(), ag.close())


async def test_bad_and_unusable_candidates_get_typed_answers(tmp_path, clip):  # noqa: F811
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                await asyncio.gather(negotiate(c, cust), negotiate(a, ag, c.session_id))

                async def ice(candidate):
                    return await c.request({"type": "rtc.ice", "candidate": candidate})

                for garbage in ("hello", "candidate:1 1 udp x 1.2.3.4 9 typ host", "candidate:1 1 udp 1 1.2.3.4 99999 typ host",
                                "candidate:1 1 udp 1 1.2.3.4 9 host"):
                    reply = await ice({"candidate": garbage, "sdpMid": "0"})
                    assert reply["type"] == "error" and reply["code"] == "invalid_candidate", (garbage, reply)
                wrong_mid = await ice({"candidate": "candidate:1 1 udp 2122260223 192.0.2.77 40000 typ host",
                                       "sdpMid": "nine"})
                assert wrong_mid["code"] == "invalid_candidate" and "nine" in wrong_mid["message"]
                wrong_type = await c.request({"type": "rtc.ice", "candidate": {"candidate": 42}})
                assert wrong_type["code"] == "invalid_field"
                mdns = await ice({"candidate": f"candidate:1 1 udp 2122260223 {uuid.uuid4()}.local 40000 typ host",
                                  "sdpMid": "0"})
                assert mdns == {**mdns, "type": "ack", "status": "ignored:mdns"}
                tcp = await ice({"candidate": "candidate:2 1 tcp 1518280447 192.0.2.77 9 typ host tcptype active",
                                 "sdpMid": "0"})
                assert tcp["status"] == "ignored:tcp"
                # none of it broke the call
                before = cust.received["video"].frames
                await cust.wait_frames("video", before + 10, 10)
                assert (await c.request({"type": "ping"}))["type"] == "pong"
            finally:
                await asyncio.gather(cust.close(), ag.close())


async def recorded(srv, session_id: str, party: str, frames: int = 10) -> None:
    """Wait until the hub has recorded some of ``party``'s video (a recording is not made of nothing)."""
    hub = srv.coordinator.media.hub
    async with asyncio.timeout(15):
        while ((hub.stats(session_id)[party]["recording"] or {}).get("video_frames") or 0) < frames:
            await asyncio.sleep(0.1)


def run_verify(data_dir, session_id: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VBRANCH_DATA_DIR": str(data_dir), "VBRANCH_SECRET_KEY": "test-secret-" + "x" * 32}
    return subprocess.run([sys.executable, "-m", "vbranch.cli", "verify", session_id], env=env,
                          capture_output=True, text=True, timeout=60)


async def test_a_party_that_never_connects_flags_the_session_until_acknowledged(tmp_path, clip):  # noqa: F811
    data = tmp_path / "d"
    async with run_server(data) as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            ag = peer_for(clip)
            try:
                await negotiate(a, ag, c.session_id)  # the customer's media never comes
                await ag.wait_connected(15)
                await recorded(srv, c.session_id, "agent")
                await mark_all(a, c.session_id)
                reply = await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "done"})
                assert reply["type"] == "ack", reply  # this service does not require complete recordings
                await c.recv_type("session.ended")
                await srv.coordinator.settled(c.session_id)  # recordings stored, evidence sealed
            finally:
                await ag.close()
        sid = c.session_id
        supervisor = {"Authorization": f"Bearer {await srv.login('supervisor')}"}
        async with srv.http() as h:
            session = (await h.get(f"/api/v1/sessions/{sid}", headers=supervisor)).json()
            assert session["evidence_incomplete"] is True
            assert {"party": "customer", "reason": "never_connected"} in session["evidence_issues"]
            assert not any(i["party"] == "agent" for i in session["evidence_issues"]), session["evidence_issues"]
            reviewer = {"Authorization": f"Bearer {await srv.login('reviewer')}"}
            manifest = (await h.get(f"/api/v1/sessions/{sid}/manifest", headers=reviewer)).json()["manifest"]
            assert manifest["evidence_complete"] is False
            assert manifest["recording_issues"] == session["evidence_issues"]
            events = [e["kind"] for e in await timeline(srv, sid)]
            assert "evidence.incomplete" in events
            # the agent's console was told as it happened? (a party not connected is a timeline fact)
            verified = (await h.get(f"/api/v1/sessions/{sid}/verify", headers=reviewer)).json()
            assert not verified["ok"] and any("customer media never connected" in p for p in verified["problems"])

    result = run_verify(data, sid)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "customer media never connected" in result.stdout and "not acknowledged" in result.stdout

    async with run_server(data) as srv:
        async with srv.http() as h:
            for who, status in (("agent1", 403), ("reviewer", 403)):
                r = await h.post(f"/api/v1/sessions/{sid}/evidence-acknowledgement", json={"reason": "test"},
                                 headers={"Authorization": f"Bearer {await srv.login(who)}"})
                assert r.status_code == status, (who, r.text)
            supervisor = {"Authorization": f"Bearer {await srv.login('supervisor')}"}
            short = await h.post(f"/api/v1/sessions/{sid}/evidence-acknowledgement", json={"reason": ""},
                                 headers=supervisor)
            assert short.status_code == 422
            ok = await h.post(f"/api/v1/sessions/{sid}/evidence-acknowledgement",
                              json={"reason": "客户摄像头故障，已电话回访确认"}, headers=supervisor)
            assert ok.status_code == 200, ok.text
            again = await h.post(f"/api/v1/sessions/{sid}/evidence-acknowledgement", json={"reason": "again"},
                                 headers=supervisor)
            assert again.status_code == 409 and again.json()["error"]["code"] == "already_acknowledged"
            admin = {"Authorization": f"Bearer {await srv.login('admin')}"}
            audit = (await h.get("/api/v1/audit", params={"session_id": sid}, headers=admin)).json()
            assert any(r["action"] == "session.evidence_acknowledged" and r["actor"] == "supervisor" for r in audit)

    result = run_verify(data, sid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acknowledged by supervisor" in result.stdout


async def test_a_service_that_requires_complete_recordings_refuses_to_end_without_them(tmp_path, clip):  # noqa: F811
    steps = ("risk_disclosure_read", "risk_level_confirmed", "verbal_confirmation", "signature")
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "risk_assessment") as c, agent(srv, "agent2") as a:
            await connected_call(srv, c, a)
            ag = peer_for(clip)
            try:
                await negotiate(a, ag, c.session_id)
                await ag.wait_connected(15)
                await mark_all(a, c.session_id, steps)
                reply = await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "done"})
                assert reply["type"] == "error" and reply["code"] == "evidence_incomplete", reply
                assert {"field": "recordings", "problem": "never_connected", "party": "customer"} in reply["details"]
                # a supervisor may still end it, with a reason; the audit keeps what was missing
                async with agent(srv, "supervisor", available=False) as sup:
                    ended = await sup.request({"type": "session.end", "session_id": c.session_id,
                                               "disposition": "incomplete", "override_reason": "客户网络无法恢复"})
                    assert ended["type"] == "ack", ended
                await c.recv_type("session.ended")
                await srv.coordinator.settled(c.session_id)  # recordings stored, evidence sealed
            finally:
                await ag.close()
        admin = {"Authorization": f"Bearer {await srv.login('admin')}"}
        async with srv.http() as h:
            audit = (await h.get("/api/v1/audit", params={"session_id": c.session_id}, headers=admin)).json()
        override = next(r for r in audit if r["action"] == "session.override_end")
        assert {"party": "customer", "reason": "never_connected"} in override["detail"]["recording_issues"]
