"""A customer's network changes during a call, for real, in Chromium.

The customer's Chromium runs on a host of its own (a network namespace joined
by a veth pair, tests/support/netns.py). During the call its address is taken
away for 5 s (the phone left the Wi-Fi) and it comes back on a new address
(4G). The page restarts ICE on its peer connection: the call, its DTLS session
and the customer's recording go on (one connection, one file), the gap is on
the timeline and in the evidence, and media flows both ways again. The agent is
an aiortc peer on this host.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.protocol.test_call_ws import negotiate, peer_for
from tests.protocol.test_routing_ws import agent, mark_all
from tests.support import netns
from tests.support.server import run_server
from vbranch.media.synthetic import make_clip

from .conftest import BASE_ARGS, CHROMIUM, PHONE, screenshot
from .flows import customer_joins, playing, rest

pytestmark = pytest.mark.browser

LOST_S = 5.0


async def test_the_call_survives_the_customers_network_change_by_ice_restart(
        tmp_path, playwright_api, face_y4m, page_errors):
    assert netns.available(), "this test needs root and iproute2 (ip netns, veth): `make install-test` installs iproute2"
    clip = make_clip(seconds=2.0)
    with netns.ClientHost() as net:
        async with run_server(tmp_path / "d", host=net.server_ip) as srv:
            origin = srv.base_url
            browser = await playwright_api.chromium.launch(
                executable_path=net.wrap(CHROMIUM, tmp_path),
                args=[*BASE_ARGS, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={face_y4m}",
                      f"--unsafely-treat-insecure-origin-as-secure={origin}"])  # camera over plain http
            ag = peer_for(clip)
            try:
                created = await srv.create_session("account_opening")
                session_id = created["session_id"]
                async with agent(srv, "agent1") as a:
                    page = await customer_joins(browser, srv, page_errors, created["join_token"])
                    offer = await a.recv_type("offer", 20)
                    await a.request({"type": "offer.accept", "session_id": offer["session_id"]})
                    await negotiate(a, ag, session_id)
                    await ag.wait_frames("video", 30, 30)  # the customer's camera, through the server
                    await playing(page, "remote-video")
                    await screenshot(page, "network-1-customer-in-call-phone", PHONE)

                    net.drop_address()  # the phone left the Wi-Fi
                    lost_at = time.monotonic()
                    await asyncio.sleep(LOST_S)
                    frames = ag.received["video"].frames
                    net.move_to(f"{net.prefix}.3")  # ... and is on 4G
                    back_at = time.monotonic()
                    # the page says so while it restarts (Chromium calls the connection disconnected ~7 s in)
                    await page.wait_for_selector("#banner.banner-warn:not([hidden])", timeout=15_000)
                    await screenshot(page, "network-2-customer-reconnecting-phone", PHONE)
                    await ag.wait_frames("video", frames + 30, 60)
                    media_back = time.monotonic() - back_at
                    await playing(page, "remote-video", 30)
                    await page.wait_for_function(
                        "() => document.querySelector('[data-testid=remote-video]').dataset.connection === 'connected'")
                    await screenshot(page, "network-3-customer-back-in-call-phone", PHONE)

                    await mark_all(a, session_id)
                    reply = await a.request({"type": "session.end", "session_id": session_id, "disposition": "done"})
                    assert reply["type"] == "ack", reply
                    await srv.coordinator.settled(session_id)
            finally:
                await ag.close()
                await browser.close()

            timeline = (await rest(srv, "GET", f"/api/v1/sessions/{session_id}/timeline", "reviewer")).json()
            detail = (await rest(srv, "GET", f"/api/v1/sessions/{session_id}", "reviewer")).json()
            recs = (await rest(srv, "GET", f"/api/v1/sessions/{session_id}/recordings", "reviewer")).json()
    mine = [e for e in timeline if e["data"].get("party") == "customer"]
    kinds = [e["kind"] for e in mine]
    restarted = [e for e in mine if e["kind"] == "media.ice_restarted"]
    assert restarted, [(e["kind"], e["data"].get("reason")) for e in mine]  # the page restarted ICE ...
    assert kinds.count("media.party_connected") == 1, kinds  # ... on its one connection
    assert "media.party_disconnected" not in kinds[:kinds.index("media.ice_restarted")], kinds
    assert sorted((r["party"], r["segment"]) for r in recs) == [("agent", 1), ("customer", 1)]
    gaps = [i for i in detail["evidence_issues"] if i["party"] == "customer" and i["reason"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["duration_s"] >= LOST_S - 1.5, detail["evidence_issues"]
    print(f"network change: customer media back at the agent {media_back:.1f} s after the new address; "
          f"ICE restart switched {restarted[0]['data']['after_s']} s after the page's offer; "
          f"recorded gap {gaps[0]['duration_s']} s")
