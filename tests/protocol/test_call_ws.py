"""A whole call over the real WebSocket with real aiortc peers: media, recordings, replay, face check."""

from __future__ import annotations

import asyncio
import base64
import json

import av
import pytest

from tests.protocol.test_routing_ws import agent, customer, mark_all
from tests.support.server import run_server
from vbranch.media.synthetic import ClientPeer, PreEncodedAudioTrack, PreEncodedVideoTrack, make_clip

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def clip():
    return make_clip(seconds=2.0)


def peer_for(clip, video=None) -> ClientPeer:
    return ClientPeer(video=video or PreEncodedVideoTrack(clip.video, clip.fps),
                      audio=PreEncodedAudioTrack(clip.audio))


def answer_over(ws, session_id: str | None = None, *, ice_restart: bool = False):
    """``answer_for(offer_sdp)`` over the WebSocket (rtc.offer -> rtc.answer)."""
    async def answer_for(sdp: str) -> str:
        msg = {"type": "rtc.offer", "sdp": sdp}
        if session_id:
            msg["session_id"] = session_id
        if ice_restart:
            msg["ice_restart"] = True
        reply = await ws.request(msg, timeout=15)
        assert reply["type"] == "rtc.answer", reply
        return reply["sdp"]

    return answer_for


async def negotiate(ws, peer: ClientPeer, session_id: str | None = None) -> None:
    await peer.connect(answer_over(ws, session_id))


async def connected_call(srv, c, a):
    offer = await a.recv_type("offer")
    await a.request({"type": "offer.accept", "session_id": offer["session_id"]})
    await c.recv_type("session.assigned")


async def assert_sealed_as_stored(srv, session_id: str) -> dict:
    """The manifest sealed from what the branch held in memory is the one its database rows give."""
    from vbranch.db.models import Manifest
    from vbranch.evidence.manifests import manifest_body, read_seal_facts

    rt = srv.runtime
    async with rt.db.session() as db:
        manifest = await db.get(Manifest, session_id)
    sealed = json.loads(manifest.body)
    rebuilt = manifest_body(await read_seal_facts(rt, session_id), timeline_head=sealed["timeline_head"],
                            audit_head=sealed["audit_head"], sealed_at=sealed["sealed_at"])
    assert json.loads(rebuilt) == sealed
    assert rebuilt == manifest.body
    assert rt.metrics.manifests_sealed.labels("memory")._value.get() >= 1, "sealed without a read"
    return sealed


async def test_call_is_relayed_recorded_and_replayable(tmp_path, clip):
    async with run_server(tmp_path / "d") as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            bad = await c.request({"type": "rtc.offer", "sdp": "v=0\r\n"})
            assert bad["code"] == "invalid_state", "no media before an agent takes the call"
            await connected_call(srv, c, a)
            garbage = await c.request({"type": "rtc.offer", "sdp": "this is not sdp"})
            assert garbage["type"] == "error" and garbage["code"] == "invalid_sdp"
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                # both at once, as real clients do (the first answer waits for the other offer)
                await asyncio.gather(negotiate(c, cust), negotiate(a, ag, c.session_id))
                await asyncio.gather(cust.wait_frames("video", 20, 20), ag.wait_frames("video", 20, 20))
                await asyncio.sleep(1.0)
                await mark_all(a, c.session_id)
                await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "done"})
                await c.recv_type("session.ended")
                await srv.coordinator.settled(c.session_id)  # recordings stored, evidence sealed
            finally:
                await asyncio.gather(cust.close(), ag.close())
        sealed = await assert_sealed_as_stored(srv, c.session_id)
        assert len(sealed["recordings"]) == 2
        assert {s["code"] for s in sealed["checklist"] if s["done"]} == {"random_questions", "id_shown"}

        reviewer = await srv.login("reviewer")
        auth = {"Authorization": f"Bearer {reviewer}"}
        async with srv.http() as h:
            recs = (await h.get(f"/api/v1/sessions/{c.session_id}/recordings", headers=auth)).json()
            assert sorted(r["party"] for r in recs) == ["agent", "customer"]
            for rec in recs:
                assert rec["video_codec"] == "vp8" and rec["audio_codec"] == "opus"
                assert rec["duration_s"] > 1.0 and len(rec["sha256"]) == 64
                head = await h.get(rec["media_url"], headers={"Range": "bytes=0-99"})
                assert head.status_code == 206 and len(head.content) == 100
                full = await h.get(rec["media_url"])
                assert len(full.content) == rec["size_bytes"]
                path = tmp_path / f"{rec['party']}.webm"
                path.write_bytes(full.content)
                with av.open(str(path)) as container:
                    frames = sum(1 for _ in container.decode(video=0))
                assert frames >= 15
            # a media URL is bound to its recording and needs a replay role
            other = recs[0]["media_url"].replace(f"/recordings/{recs[0]['id']}/", f"/recordings/{recs[1]['id']}/")
            assert (await h.get(other)).status_code == 403
            agent_token = await srv.login("agent1")
            r = await h.get(f"/api/v1/sessions/{c.session_id}/recordings",
                            headers={"Authorization": f"Bearer {agent_token}"})
            assert r.status_code == 403
            timeline = (await h.get(f"/api/v1/sessions/{c.session_id}/timeline", headers=auth)).json()
            kinds = [e["kind"] for e in timeline]
            assert kinds.count("recording.finalised") == 2 and "state.wrap_up" in kinds
            review = await h.post(f"/api/v1/sessions/{c.session_id}/review", headers=auth,
                                  json={"verdict": "approved", "comment": "clear and complete"})
            assert review.status_code in (201, 409)  # 409 while the agent is still wrapping up


async def test_face_check_over_a_real_call_matches_the_reference(tmp_path, clip):
    from vbranch.facecheck import analyse_frame
    from vbranch.facecheck.testing import Puppet, PuppetCamera, astronaut_bgr, astronaut_frame, encode_jpeg
    from vbranch.facecheck.testing import puppet_video_track

    frame = astronaut_frame()
    camera = PuppetCamera(Puppet(frame, analyse_frame(frame).landmarks.astype(float)), jitter=1.0)
    photo = base64.b64encode(encode_jpeg(astronaut_bgr())).decode()
    async with run_server(tmp_path / "d", facecheck_challenge_timeout_s=5.0) as srv:
        async with customer(srv, reference_photo=photo) as c, agent(srv, "agent1") as a:
            await connected_call(srv, c, a)
            refused = await a.request({"type": "facecheck.start", "session_id": c.session_id})
            assert refused["code"] == "consent_required"
            await c.request({"type": "consent", "recording": True, "face": True})
            refused = await a.request({"type": "facecheck.start", "session_id": c.session_id})
            assert refused["code"] == "no_customer_video"
            cust = peer_for(clip, video=puppet_video_track(camera))
            ag = peer_for(clip)
            try:
                # both at once, as real clients do (the first answer waits for the other offer)
                await asyncio.gather(negotiate(c, cust), negotiate(a, ag, c.session_id))
                await ag.wait_frames("video", 10, 20)
                started = await a.request({"type": "facecheck.start", "session_id": c.session_id})
                assert started["type"] == "ack", started

                async def obey_challenges():
                    while True:
                        challenge = await c.recv_type("facecheck.challenge", timeout=60)
                        await camera.send_challenge(challenge["action"], challenge["timeout_s"])

                obeying = asyncio.create_task(obey_challenges())
                result = await a.recv_type("facecheck.result", timeout=90)
                obeying.cancel()
                await asyncio.gather(obeying, return_exceptions=True)
            finally:
                await asyncio.gather(cust.close(), ag.close())
            assert result["match"] is True, result
            assert result["distance"] < result["threshold"] == 0.5
            assert len(result["liveness"]["challenges"]) == 2
            assert len(camera.sent) == 2
            await c.request({"type": "leave"})
            await srv.coordinator.settled(c.session_id)
        # the seal made from memory states the photo, the consent and the check as the rows do
        sealed = await assert_sealed_as_stored(srv, c.session_id)
        assert sealed["session"]["reference_photo_sha256"] and sealed["consent"]["face"] is True
        assert [f["match"] for f in sealed["face_checks"]] == [True]
        assert sealed["session"]["end_reason"] == "customer_left" and sealed["session"]["ended_at"]
