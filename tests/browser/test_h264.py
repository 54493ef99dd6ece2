"""An iPhone-like customer (H.264 constrained baseline only) with a Chromium agent: forwarded as is.

iPhones, and so WeChat on iOS, send H.264 (constrained baseline, packetization
mode 1). The customer's Chromium is limited to exactly that with
``RTCRtpTransceiver.setCodecPreferences``; the agent keeps Chromium's defaults
(VP8 first). Whichever party's offer reaches the server first, the call must
use H.264 on both legs: no transcoding, the customer's recording is H.264 and
the reviewer console plays it (an MP4 stream copy of the Matroska file).
"""

from __future__ import annotations

import pytest

from tests.support.server import run_server

from .conftest import open_page, screenshot
from .flows import agent_signs_in, customer_joins, playing, rest, wait_state

pytestmark = pytest.mark.browser

SERVICE = "account_opening"

# what an iPhone offers for video: H.264 constrained baseline, packetization-mode 1
H264_ONLY = """
(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (...args) {
    const t = add.apply(this, args);
    if (t.receiver.track.kind === 'video') {
      const h264 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) =>
        /h264/i.test(c.mimeType) && /packetization-mode=1/.test(c.sdpFmtpLine || '')
        && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || ''));
      t.setCodecPreferences(h264);
    }
    return t;
  };
})();
"""


def delayed_first_offer(ms: int) -> str:
    """Hold this page's first offer back, so the other party's reaches the server first."""
    return """
(() => {
  const create = RTCPeerConnection.prototype.createOffer;
  let first = true;
  RTCPeerConnection.prototype.createOffer = async function (...args) {
    if (first) { first = false; await new Promise((r) => setTimeout(r, %d)); }
    return create.apply(this, args);
  };
})();
""" % ms


@pytest.mark.parametrize("first", ["customer", "agent"])
async def test_h264_customer_is_forwarded_and_recorded_without_transcoding(tmp_path, browser, page_errors, first):
    async with run_server(tmp_path / "data", offer_timeout_s=30, wrapup_s=120) as srv:
        created = await srv.create_session(SERVICE)
        sid = created["session_id"]
        customer_script = H264_ONLY + (delayed_first_offer(2500) if first == "agent" else "")
        agent_script = delayed_first_offer(2500) if first == "customer" else None
        customer = await customer_joins(browser, srv, page_errors, created["join_token"], init_script=customer_script)
        agent = await agent_signs_in(browser, srv, page_errors, "agent1", init_script=agent_script)
        await agent.get_by_test_id("offer-accept").click()

        await playing(agent, "remote-video")
        await playing(customer, "remote-video")
        await agent.wait_for_selector("[data-testid=call-caption][data-state=connected]")
        stats = srv.coordinator.media.hub.stats(sid)
        assert stats["customer"]["negotiated"]["video"] == "h264"
        assert stats["agent"]["negotiated"]["video"] == "h264"  # the agent adapted to the customer
        for party in ("customer", "agent"):
            assert stats[party]["received"]["video"]["codec"] == "h264"
            assert all(f["mode"] == "passthrough" for f in stats[party]["forwarded"].values()), stats

        for step in ("random_questions", "id_shown"):
            await agent.get_by_test_id(f"checklist-step-{step}").click()
            await agent.wait_for_selector(f"[data-testid=checklist-step-{step}][aria-pressed=true]")
        await agent.get_by_test_id("end-session").click()
        await customer.wait_for_selector("[data-testid=end-reason][data-reason=completed]")
        await agent.get_by_test_id("wrapup-done").click()
        await wait_state(srv, sid, "completed")

        events = (await rest(srv, "GET", f"/api/v1/sessions/{sid}/timeline", "supervisor")).json()
        kinds = [e["kind"] for e in events]
        offers = [e["data"] for e in events if e["kind"] == "media.offer_received"]
        assert offers[0]["party"] == first, offers  # the order this case is about
        assert next(o for o in offers if o["party"] == "customer")["video_codecs"] == ["h264"]
        assert "media.transcoding_fallback" not in kinds
        video = [e["data"] for e in events if e["kind"] == "media.forwarding_started" and e["data"]["kind"] == "video"]
        assert {(v["from"], v["to"]) for v in video} == {("customer", "agent"), ("agent", "customer")}
        assert all(v["mode"] == "passthrough" and v["source_codec"] == v["sink_codec"] == "h264" for v in video)

        session = (await rest(srv, "GET", f"/api/v1/sessions/{sid}")).json()
        assert session["evidence_incomplete"] is False, session["evidence_issues"]
        recordings = {r["party"]: r for r in
                      (await rest(srv, "GET", f"/api/v1/sessions/{sid}/recordings", "reviewer")).json()}
        assert recordings["customer"]["video_codec"] == "h264" and recordings["customer"]["container"] == "matroska"
        assert recordings["agent"]["video_codec"] == "h264"
        await customer.context.close()
        await agent.context.close()

        # the reviewer console replays the H.264 recordings (stream-copied to MP4 for the browser)
        reviewer = await open_page(browser, f"{srv.base_url}/review", page_errors, "reviewer")
        await reviewer.get_by_test_id("login-username").fill("reviewer")
        await reviewer.get_by_test_id("login-password").fill("demo")
        await reviewer.get_by_test_id("login-submit").click()
        await reviewer.locator(f"[data-testid=session-row][data-session-id='{sid}']").click()
        for party in ("customer", "agent"):
            await reviewer.wait_for_function(
                f"() => document.querySelector('[data-testid=replay-{party}]')?.readyState >= 2")
        await reviewer.get_by_test_id("replay-play").click()
        await playing(reviewer, "replay-customer")
        await screenshot(reviewer, f"review-h264-{first}-first-desktop")
        await reviewer.context.close()
