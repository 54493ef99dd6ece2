"""A call with the customer in Firefox (Debian's firefox-esr, default privacy settings) and the
agent in Chromium: both see the other's video and both sides are recorded.

Firefox's fake camera and microphone stand in for real ones. Its WebRTC privacy defaults are
kept, so its offer names this machine only by mDNS host candidates (<uuid>.local), never by
address: the server has to connect all the same.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support.server import run_server

from .conftest import PHONE, SCREENSHOTS, screenshot
from .firefox_support import firefox  # noqa: F401  (fixture)
from .flows import agent_signs_in, playing, rest, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.firefox]

SERVICE = "account_opening"  # agent1 has the skill; its face-check step is optional

# Keeps every RTCPeerConnection the page makes, so the test can read its SDP and state.
WATCH_PEERS = """() => {
    window.__peers = [];
    const setLocal = RTCPeerConnection.prototype.setLocalDescription;
    RTCPeerConnection.prototype.setLocalDescription = function (...args) {
        if (!window.__peers.includes(this)) window.__peers.push(this);
        return setLocal.apply(this, args);
    };
}"""

# The newest of them once its offer is complete (ICE gathering done): offer, answer, states, pairs.
LAST_PEER = """async () => {
    const pc = (window.__peers || [])[(window.__peers || []).length - 1];
    if (!pc || pc.iceGatheringState !== 'complete' || !pc.localDescription) return null;
    const pairs = [];
    (await pc.getStats()).forEach((s) => {
        if (s.type === 'candidate-pair') pairs.push({state: s.state, nominated: !!s.nominated});
    });
    return {offer: pc.localDescription.sdp, answer: pc.remoteDescription && pc.remoteDescription.sdp,
            ice: pc.iceConnectionState, connection: pc.connectionState, pairs,
            all: window.__peers.map((p) => p.iceConnectionState)};
}"""


def candidates(sdp: str) -> list[str]:
    return [line[len("a=candidate:"):] for line in sdp.splitlines() if line.startswith("a=candidate:")]


async def recordings_of(srv, sid: str, timeout: float = 20.0) -> list[dict]:
    """The session's recordings once both parties' are finalised."""
    async with asyncio.timeout(timeout):
        while True:
            recs = (await rest(srv, "GET", f"/api/v1/sessions/{sid}/recordings", "reviewer")).json()
            if sorted(r["party"] for r in recs) == ["agent", "customer"]:
                return recs
            await asyncio.sleep(0.3)


def save_sdp(peer: dict) -> None:
    """test-artifacts/firefox-offer.sdp and firefox-answer.sdp, for a look after a run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "firefox-offer.sdp").write_text(peer["offer"] or "")
    (SCREENSHOTS.parent / "firefox-answer.sdp").write_text(peer["answer"] or "")


async def report_firefox(page) -> None:
    """On a failure: what Firefox's peer connection and console said."""
    try:
        peer = await page.evaluate(LAST_PEER)
        if peer:
            save_sdp(peer)
            peer = {k: v for k, v in peer.items() if k not in ("offer", "answer")}
        print("\nFirefox peer connection:", peer)
        await page.screenshot("firefox-customer-failure-phone")
    except Exception as exc:  # the browser may be gone
        print("\nFirefox peer connection: unreadable:", exc)
    print("Firefox console:", *page.console, sep="\n  ")


async def test_firefox_customer_with_chromium_agent(tmp_path, browser, firefox, page_errors):  # noqa: F811
    async with run_server(tmp_path / "data", offer_timeout_s=30, wrapup_s=120) as srv:
        created = await srv.create_session(SERVICE)
        sid = created["session_id"]

        # the customer, in Firefox: consent, camera preview, join the queue
        customer = firefox
        await customer.set_viewport_size(PHONE)
        await customer.add_init_script(WATCH_PEERS)
        await customer.goto(f"{srv.base_url}/customer/#token={created['join_token']}")
        await customer.click("[data-testid=consent-accept]")
        await customer.wait_for_function("() => !document.querySelector('[data-testid=join]').disabled")
        await customer.wait_for_function("() => document.querySelector('[data-testid=local-video]').videoWidth > 0")
        await customer.screenshot("firefox-customer-preview-phone")
        await customer.click("[data-testid=join]")
        await customer.wait_for_selector("[data-testid=queue-position][data-position='1']")
        assert await customer.evaluate("() => document.body.dataset.screen") == "queue"

        # the agent, in Chromium, goes available and accepts
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        await agent.get_by_test_id("offer-accept").click()
        await customer.wait_for_selector("body[data-screen=call] [data-testid=remote-video]")
        await wait_state(srv, sid, "connected")

        try:
            # Firefox's offer, made with its default privacy: host candidates are mDNS names only
            peer = await customer.wait_for_function(LAST_PEER)
            save_sdp(peer)
            hosts = [c for c in candidates(peer["offer"]) if " typ host" in c]
            assert hosts, peer["offer"]
            for c in hosts:
                assert re.search(r" [0-9a-f-]{36}\.local \d+ typ host", c), c  # no address is given away

            # both see the other's video moving
            await customer.wait_for_function("() => window.__peers.some((p) => p.remoteDescription)", timeout_ms=30_000)
            save_sdp(await customer.evaluate(LAST_PEER))
            await playing(customer, "remote-video")
            await playing(agent, "remote-video")
        except Exception:
            await report_firefox(customer)
            raise
        await customer.screenshot("firefox-customer-call-phone")
        await screenshot(agent, "firefox-agent-call-desktop")

        # the agent marks the manual steps and ends the call
        for step in ("random_questions", "id_shown"):
            await agent.get_by_test_id(f"checklist-step-{step}").click()
            await agent.wait_for_selector(f"[data-testid=checklist-step-{step}][aria-pressed=true]")
        await agent.get_by_test_id("end-session").click()
        await customer.wait_for_selector("[data-testid=end-reason][data-reason=completed]")
        await customer.screenshot("firefox-customer-end-phone")
        await agent.get_by_test_id("wrapup-done").click()
        await wait_state(srv, sid, "completed")
        await agent.context.close()

        # both parties were recorded
        recs = await recordings_of(srv, sid)
        for rec in recs:
            assert rec["duration_s"] > 0 and rec["size_bytes"] > 0, rec
