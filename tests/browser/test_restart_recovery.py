"""The pages recover by themselves from a server restart (SIGTERM, started again on the same data).

The server runs in its own process. The customer page, waiting third in the
queue, says the branch is restarting, reconnects, and says it kept its place;
the agent console comes back available, as the agent had chosen, without a click.
"""

from __future__ import annotations

import signal

import pytest

from tests.support.process import ServerProcess

from .conftest import DESKTOP, PHONE, screenshot
from .flows import agent_signs_in, customer_joins, playing, rest

pytestmark = pytest.mark.browser

SERVICE = "private_banking"  # agent1 cannot serve it: nobody is offered while the test watches


async def test_customer_page_and_agent_console_recover_from_a_restart(tmp_path, browser, page_errors):
    srv = ServerProcess(tmp_path / "data")
    await srv.start()
    try:
        for _ in range(2):  # two customers ahead who do not come back: the page's place stays 3
            ahead = await srv.create_session(SERVICE)
            async with srv.connect(ahead["join_token"]) as c:
                await c.request({"type": "hello"})
        created = await srv.create_session(SERVICE)
        customer = await customer_joins(browser, srv, page_errors, created["join_token"])
        await customer.wait_for_selector("[data-testid=queue-position][data-position='3']")
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        await screenshot(customer, "restart-1-customer-waiting-phone", PHONE)

        await srv.stop(signal.SIGTERM)
        banner = customer.locator("#banner")
        await customer.wait_for_selector("#banner.banner-warn:not([hidden])", timeout=15_000)
        assert "正在更新" in await banner.text_content()  # told why, not just "network lost"
        await screenshot(customer, "restart-2-customer-reconnecting-phone", PHONE)
        await screenshot(agent, "restart-2-agent-reconnecting-desktop", DESKTOP)

        await srv.start()
        await customer.wait_for_selector("#banner.banner-ok:not([hidden])", timeout=30_000)
        assert "3" in await banner.text_content()  # "you kept your place (3)"
        assert await customer.get_by_test_id("queue-position").text_content() == "3"
        await screenshot(customer, "restart-3-customer-back-in-queue-phone", PHONE)
        await agent.wait_for_selector("[data-testid=agent-status][data-status=available]", timeout=30_000)
        await screenshot(agent, "restart-3-agent-available-again-desktop", DESKTOP)

        sessions = (await rest(srv, "GET", "/api/v1/sessions")).json()
        assert sessions["total"] == 3  # the page went on with its session: no fresh one
        mine = next(s for s in sessions["items"] if s["session_id"] == created["session_id"])
        assert mine["state"] == "queued"
    finally:
        srv.kill_quietly()


async def test_a_call_in_the_pages_survives_a_restart(tmp_path, browser, page_errors):
    """During a call: both pages reconnect by themselves, the agent console takes the call and its
    checklist from the server, and the video flows again both ways on new peer connections."""
    srv = ServerProcess(tmp_path / "data", VBRANCH_EVIDENCE_MAX_GAP_S="60")
    await srv.start()
    try:
        created = await srv.create_session("account_opening")
        customer = await customer_joins(browser, srv, page_errors, created["join_token"])
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        console = []  # a handler's error is logged there by ws-client.js, not raised
        agent.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        await agent.get_by_test_id("offer-accept").click()
        await playing(agent, "remote-video")
        await playing(customer, "remote-video")
        await agent.locator("[data-testid=checklist] button.step-toggle").first.click()
        await agent.wait_for_function("() => JSON.parse(sessionStorage.getItem('vbranch.agent.call') || "
                                      "'{\"marked\":[]}').marked.length === 1")

        await srv.stop(signal.SIGTERM)
        await customer.wait_for_selector("#banner.banner-warn:not([hidden])", timeout=15_000)
        await screenshot(customer, "restart-call-1-customer-reconnecting-phone", PHONE)
        # what the console shows after the restart comes from the server, not from this tab's storage
        await agent.evaluate("() => sessionStorage.removeItem('vbranch.agent.call')")
        await srv.start()

        await playing(agent, "remote-video", 40)
        await playing(customer, "remote-video", 40)
        assert await agent.locator("[data-testid=agent-status]").get_attribute("data-status") == "busy"
        # the step marked before the restart, from the server's welcome (this tab's copy was removed)
        await agent.wait_for_function("() => JSON.parse(sessionStorage.getItem('vbranch.agent.call') || "
                                      "'{\"marked\":[]}').marked.length === 1", timeout=10_000)
        assert await agent.get_by_test_id("checklist-step-random_questions").get_attribute("data-done") == "true"
        assert not [c for c in console if "handler for" in c], console
        await screenshot(customer, "restart-call-2-customer-video-back-phone", PHONE)
        await screenshot(agent, "restart-call-2-agent-call-back-desktop", DESKTOP)
        assert (await rest(srv, "GET", f"/api/v1/sessions/{created['session_id']}")).json()["state"] == "connected"
    finally:
        srv.kill_quietly()
