"""The customer side of waiting: the demo join path, a dropped connection, leaving the queue (seen on
the wallboard), and what the page says when the camera cannot be used."""

from __future__ import annotations

import pytest

from signaling.registry import customer_party
from tests.support.server import run_server

from .conftest import BASE_ARGS, CHROMIUM, DESKTOP, PHONE, open_page, screenshot
from .flows import agent_signs_in, rest, staff_signs_in, wait_state

pytestmark = pytest.mark.browser

SERVICE = "risk_assessment"


def service_cell(field: str) -> str:
    return f"[data-testid=wallboard-service-{SERVICE}] [data-field={field}]"


async def test_customer_who_leaves_while_waiting_is_abandoned_on_the_wallboard(tmp_path, browser, page_errors):
    async with run_server(tmp_path / "data") as srv:
        board = await staff_signs_in(browser, srv, page_errors, "/wallboard", "supervisor")
        await board.get_by_test_id("wallboard-live").wait_for()
        assert await board.locator(service_cell("waiting")).text_content() == "0"

        # demo mode, no join link: the page offers the services and makes its own session
        customer = await open_page(browser, f"{srv.base_url}/customer/", page_errors, "customer", PHONE)
        await customer.get_by_test_id("consent-accept").click()
        await customer.get_by_test_id("demo-service").select_option(SERVICE)
        await customer.get_by_test_id("demo-name").fill("王芳")
        await customer.wait_for_function("() => !document.querySelector('[data-testid=join]').disabled")
        await customer.wait_for_function("() => document.querySelector('[data-testid=local-video]').videoWidth > 0")
        await screenshot(customer, "customer-demo-setup-phone")
        await customer.get_by_test_id("join").click()
        position = customer.get_by_test_id("queue-position")
        await customer.wait_for_selector("[data-testid=queue-position][data-position='1']")
        page = (await rest(srv, "GET", "/api/v1/sessions")).json()
        assert page["total"] == 1
        session = page["items"][0]
        sid = session["session_id"]
        assert session["service"] == SERVICE and session["customer"]["name"] == "王芳"
        assert session["state"] == "queued" and session["consent"]["recording"] is True

        await board.wait_for_function(f"() => document.querySelector('{service_cell('waiting')}')?.textContent === '1'")
        assert await board.get_by_test_id("wallboard-waiting-total").text_content() == "1"
        await screenshot(board, "wallboard-waiting-desktop")

        # the network drops: the page reconnects with its resume token and keeps its place
        conn = srv.coordinator.registry.connection(customer_party(sid))
        await conn.transport.close(1012, "test: connection dropped")
        await customer.wait_for_selector("#banner.banner-ok:not([hidden])", timeout=15_000)
        assert await position.text_content() == "1"
        assert await session_state_of(srv, sid) == "queued"
        await screenshot(customer, "customer-queue-reconnected-phone")
        # a reload of the tab carries on with the same session (resume token in sessionStorage)
        await customer.reload()
        await customer.wait_for_selector("[data-testid=queue-position][data-position='1']")
        assert await session_state_of(srv, sid) == "queued"

        # an agent declines the offer: the customer keeps the place
        agent = await agent_signs_in(browser, srv, page_errors, "agent2")
        await agent.get_by_test_id("offer-accept").wait_for()
        assert "王芳" in await agent.get_by_test_id("offer").text_content()
        await board.wait_for_selector("[data-testid^=wallboard-agent-][data-state=offered]")
        await screenshot(board, "wallboard-offered-desktop")
        await agent.get_by_test_id("offer-decline").click()
        await agent.get_by_test_id("offer").wait_for(state="hidden")
        await agent.wait_for_selector("[data-testid=agent-status][data-status=available]")
        assert await session_state_of(srv, sid) == "queued"
        assert await position.text_content() == "1"
        await agent.context.close()

        # the customer leaves: the session is abandoned and the wallboard counts it
        await customer.get_by_test_id("leave").click()
        await customer.wait_for_selector("[data-testid=end-reason][data-reason=customer_left]")
        await wait_state(srv, sid, "abandoned")
        await board.wait_for_function(f"() => document.querySelector('{service_cell('abandoned')}')?.textContent === '1'")
        assert await board.locator(service_cell("waiting")).text_content() == "0"
        assert await board.get_by_test_id("wallboard-abandoned").text_content() == "1"
        await screenshot(board, "wallboard-desktop")
        await screenshot(board, "wallboard-phone", PHONE)
        await screenshot(customer, "customer-left-phone")
        await customer.get_by_test_id("restart").wait_for()  # a demo session made here can start again
        await board.context.close()
        await customer.context.close()


async def session_state_of(srv, sid: str) -> str:
    return (await rest(srv, "GET", f"/api/v1/sessions/{sid}")).json()["state"]


@pytest.mark.parametrize("kind", ["denied", "no_device"])
async def test_camera_problems_are_explained_with_what_to_do(tmp_path, playwright_api, page_errors, kind):
    # denied: a fake camera but nobody accepts the permission prompt (headless refuses it);
    # no_device: prompts accepted but no camera at all
    args = [a for a in BASE_ARGS if kind == "denied" or a != "--use-fake-device-for-media-stream"]
    if kind == "no_device":
        args.append("--use-fake-ui-for-media-stream")
    browser = await playwright_api.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        async with run_server(tmp_path / "data") as srv:
            created = await srv.create_session(SERVICE)
            page = await open_page(browser, f"{srv.base_url}/customer/#token={created['join_token']}",
                                   page_errors, "customer", PHONE)
            await page.get_by_test_id("consent-accept").click()
            help_box = page.get_by_test_id("media-error")
            await help_box.wait_for()
            assert await help_box.get_attribute("data-kind") == kind
            text = await help_box.text_content()
            if kind == "denied":
                assert "拒绝" in text and "允许" in text  # says what happened and where to allow it
            else:
                assert "未检测到摄像头" in text
            assert await page.get_by_test_id("join").is_disabled()
            retry = page.get_by_test_id("media-retry")
            assert await retry.is_visible()
            await screenshot(page, f"customer-camera-{kind}-phone")
            await screenshot(page, f"customer-camera-{kind}-desktop", DESKTOP)
            if kind == "denied":
                # the customer allows the camera and tries again: the preview starts and joining is possible
                await page.context.grant_permissions(["camera", "microphone"])
                await retry.click()
                await page.wait_for_function("() => document.querySelector('[data-testid=local-video]').videoWidth > 0")
                assert await help_box.is_hidden()
                assert await page.get_by_test_id("join").is_enabled()
            await page.context.close()
    finally:
        await browser.close()
