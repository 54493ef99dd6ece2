"""The truth about media, end to end: a customer whose media never connects.

The customer's page is made unable to offer (its ``createOffer`` never
returns), as when a phone's network blocks UDP or a web-view lacks WebRTC.
The agent console must not claim "video connected" on a black screen: it says
the customer's media never connected. The session then carries the
evidence_incomplete flag, which the reviewer console shows, until a supervisor
acknowledges it with a reason.
"""

from __future__ import annotations

import pytest

from tests.support.server import run_server

from .conftest import open_page, screenshot
from .flows import agent_signs_in, customer_joins, rest, wait_state

pytestmark = pytest.mark.browser

NO_OFFER = """
RTCPeerConnection.prototype.createOffer = function () { return new Promise(() => {}); };
"""


async def test_customer_media_that_never_connects_is_told_and_flagged(tmp_path, browser, page_errors):
    async with run_server(tmp_path / "data", offer_timeout_s=30, wrapup_s=120, media_connect_timeout_s=2.0,
                          media_pair_wait_s=1.0) as srv:
        created = await srv.create_session("account_opening")
        sid = created["session_id"]
        customer = await customer_joins(browser, srv, page_errors, created["join_token"], init_script=NO_OFFER)
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        await agent.get_by_test_id("offer-accept").click()

        # the agent's own media connects, the customer's never does: the console says so
        caption = agent.get_by_test_id("call-caption")
        await agent.wait_for_selector("[data-testid=call-caption][data-state=peer_not_connected]", timeout=20_000)
        assert "未接通" in await caption.text_content()
        assert await agent.get_by_test_id("remote-video").get_attribute("data-video") == "none"
        await screenshot(agent, "agent-customer-media-not-connected-desktop")

        for step in ("random_questions", "id_shown"):
            await agent.get_by_test_id(f"checklist-step-{step}").click()
            await agent.wait_for_selector(f"[data-testid=checklist-step-{step}][aria-pressed=true]")
        await agent.get_by_test_id("end-session").click()
        await agent.get_by_test_id("wrapup-done").click()
        await wait_state(srv, sid, "completed")
        await customer.context.close()
        await agent.context.close()

        session = (await rest(srv, "GET", f"/api/v1/sessions/{sid}")).json()
        assert session["evidence_incomplete"] and session["evidence_acknowledged"] is None
        assert {"party": "customer", "reason": "never_connected"} in session["evidence_issues"]

        reviewer = await open_page(browser, f"{srv.base_url}/review", page_errors, "reviewer")
        await reviewer.get_by_test_id("login-username").fill("reviewer")
        await reviewer.get_by_test_id("login-password").fill("demo")
        await reviewer.get_by_test_id("login-submit").click()
        row = reviewer.locator(f"[data-testid=session-row][data-session-id='{sid}']")
        assert await row.get_by_test_id("evidence-badge").text_content() == "双录不完整"
        await row.click()
        flag = reviewer.get_by_test_id("evidence-flag")
        await flag.wait_for()
        assert await flag.get_attribute("data-state") == "incomplete"
        assert await flag.locator("li[data-party=customer][data-reason=never_connected]").count() == 1
        await reviewer.wait_for_selector("[data-testid=integrity-status][data-state=bad]", timeout=10_000)
        await screenshot(reviewer, "review-evidence-incomplete-desktop")

        ack = await rest(srv, "POST", f"/api/v1/sessions/{sid}/evidence-acknowledgement", "supervisor",
                         json={"reason": "客户手机网络限制，已电话回访确认"})
        assert ack.status_code == 200, ack.text
        await reviewer.reload()
        await reviewer.locator(f"[data-testid=session-row][data-session-id='{sid}']").click()
        await reviewer.wait_for_selector("[data-testid=evidence-flag][data-state=acknowledged]")
        assert "客户手机网络限制" in await reviewer.get_by_test_id("evidence-ack").text_content()
        await reviewer.wait_for_selector("[data-testid=integrity-status][data-state=ok]", timeout=10_000)
        await reviewer.context.close()
