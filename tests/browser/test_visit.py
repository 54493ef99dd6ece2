"""A whole visit in Chromium: customer page, agent console and reviewer console on the real server.

The fake camera shows a still face (the astronaut), so the face check matches the
identity and fails liveness; account_opening is used because its face-check step
is optional, so the call can end without a passing check.
"""

from __future__ import annotations

import pytest

from tests.support.server import run_server

from .conftest import DESKTOP, PHONE, open_page, screenshot
from .flows import agent_signs_in, customer_joins, photo_b64, playing, rest, staff_signs_in, wait_state

pytestmark = pytest.mark.browser

SERVICE = "account_opening"  # agent1 has the skill; identity_verified (face check) is optional there


async def test_whole_visit_from_join_to_verdict(tmp_path, browser, page_errors):
    async with run_server(tmp_path / "data", offer_timeout_s=30, wrapup_s=120,
                          facecheck_challenge_timeout_s=2.0) as srv:
        created = await srv.create_session(SERVICE, reference_photo=photo_b64("astronaut"))
        sid = created["session_id"]

        # the customer consents, sees the camera preview, joins and waits
        customer = await customer_joins(browser, srv, page_errors, created["join_token"], shots="customer")
        assert (await customer.get_by_test_id("queue-position").text_content()).strip() == "1"
        await customer.wait_for_selector("[data-testid=queue-notice][data-notice=no_agents]")
        await screenshot(customer, "customer-queue-phone")
        await screenshot(customer, "customer-queue-desktop", DESKTOP)

        # the agent signs in, goes available and accepts the offer
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        await agent.get_by_test_id("offer-accept").wait_for()
        assert "Li Lei" in await agent.get_by_test_id("offer").text_content()
        await screenshot(agent, "agent-offer-desktop")
        await agent.get_by_test_id("offer-accept").click()

        # both see the other party's video moving
        await playing(agent, "remote-video")
        await playing(customer, "remote-video")
        await playing(customer, "local-video")
        assert await agent.get_by_test_id("summary-name").text_content() == "Li Lei"

        # face check: the customer is prompted, the agent sees the result
        await agent.get_by_test_id("facecheck-start").click()
        prompt = customer.get_by_test_id("facecheck-prompt")
        await prompt.wait_for()
        assert await prompt.get_attribute("data-action") in ("blink", "turn_left", "turn_right", "open_mouth")
        await screenshot(customer, "customer-facecheck-phone")
        result = agent.get_by_test_id("facecheck-result")
        await result.wait_for(timeout=60_000)
        assert await result.get_attribute("data-match") == "true"
        assert await result.get_attribute("data-liveness") == "false"  # a still picture is not alive
        assert await result.locator("tbody tr").count() == 2  # one row per challenge
        assert float(await agent.get_by_test_id("facecheck-distance").text_content()) < 0.5
        await customer.wait_for_selector("[data-testid=facecheck-prompt][data-action=done], "
                                         "[data-testid=facecheck-prompt][hidden]")

        # the checklist: manual steps are marked; the face-check step stays undone (optional here)
        for step in ("random_questions", "id_shown"):
            await agent.get_by_test_id(f"checklist-step-{step}").click()
            await agent.wait_for_selector(f"[data-testid=checklist-step-{step}][aria-pressed=true]")
        assert await agent.get_by_test_id("checklist-step-identity_verified").get_attribute("data-done") == "false"
        await agent.get_by_test_id("notes").fill("客户出示身份证，回答问题正确。")
        await screenshot(agent, "agent-call-desktop")
        await screenshot(agent, "agent-call-phone", PHONE)
        await screenshot(customer, "customer-call-desktop", DESKTOP)
        await screenshot(customer, "customer-call-phone")
        # the language switch re-translates the console
        await agent.get_by_test_id("lang-toggle").click()
        assert (await agent.get_by_test_id("end-session").text_content()).strip() == "End call"
        await screenshot(agent, "agent-call-desktop-en")
        await agent.get_by_test_id("lang-toggle").click()
        assert (await agent.get_by_test_id("end-session").text_content()).strip() == "结束通话"

        # end the call; the customer sees the end screen, the agent wraps up
        await agent.get_by_test_id("end-session").click()
        await customer.wait_for_selector("[data-testid=end-reason][data-reason=completed]")
        await screenshot(customer, "customer-end-phone")
        await agent.get_by_test_id("wrapup-done").wait_for()
        await agent.wait_for_selector("[data-testid=agent-status][data-status=wrap_up]")
        assert "秒" in await agent.get_by_test_id("wrapup-countdown").text_content()
        await screenshot(agent, "agent-wrapup-desktop")
        await agent.get_by_test_id("wrapup-done").click()
        await agent.wait_for_selector("[data-testid=agent-status][data-status=available]")
        await wait_state(srv, sid, "completed")
        await customer.context.close()
        await agent.context.close()

        # the reviewer finds the session and replays both sides in sync
        # (by keyboard: sign in, then open the session from the list)
        reviewer = await open_page(browser, f"{srv.base_url}/review", page_errors, "reviewer")
        await reviewer.get_by_test_id("login-username").wait_for()
        await reviewer.keyboard.type("reviewer")
        await reviewer.keyboard.press("Tab")
        await reviewer.keyboard.type("demo")
        await reviewer.keyboard.press("Enter")
        row = reviewer.locator(f"[data-testid=session-row][data-session-id='{sid}']")
        await row.focus()
        await reviewer.keyboard.press("Enter")
        for party in ("customer", "agent"):
            await reviewer.wait_for_function(
                f"() => document.querySelector('[data-testid=replay-{party}]')?.readyState >= 2")
        await reviewer.get_by_test_id("replay-play").click()
        await reviewer.wait_for_timeout(1500)
        clocks = await reviewer.evaluate("""() => ['customer', 'agent'].map(p => {
            const v = document.querySelector(`[data-testid=replay-${p}]`);
            return {t: v.currentTime, offset: Number(v.dataset.offset), width: v.videoWidth, paused: v.paused};
        })""")
        for c in clocks:
            assert c["width"] > 0 and c["t"] > 0.5 and not c["paused"], clocks
        shared = [c["t"] + c["offset"] for c in clocks]
        assert abs(shared[0] - shared[1]) < 0.35, clocks

        # a timeline marker seeks both videos to its place
        marker = reviewer.locator("[data-testid=timeline-marker][data-kind='facecheck.result']")
        at = float(await marker.get_attribute("data-offset"))
        await reviewer.get_by_test_id("replay-play").click()  # pause, so the check is exact
        await marker.click()
        await reviewer.wait_for_timeout(400)
        after = await reviewer.evaluate("""() => ['customer', 'agent'].map(p => {
            const v = document.querySelector(`[data-testid=replay-${p}]`);
            return v.currentTime + Number(v.dataset.offset);
        })""")
        for shared_t in after:
            assert abs(shared_t - at) < 0.25, (after, at)

        # integrity: hashes shown, verification from the server
        recordings = (await rest(srv, "GET", f"/api/v1/sessions/{sid}/recordings", "reviewer")).json()
        for rec in recordings:
            assert await reviewer.get_by_test_id(f"sha256-{rec['party']}").text_content() == rec["sha256"]
        integrity = reviewer.get_by_test_id("integrity-status")
        await reviewer.wait_for_selector("[data-testid=integrity-status]:not([data-state=pending])", timeout=10_000)
        assert await integrity.get_attribute("data-state") == "ok"

        # the verdict is saved
        await reviewer.get_by_test_id("verdict-comment").fill("流程完整，核验记录清楚。")
        await reviewer.get_by_test_id("verdict-approve").click()
        await reviewer.wait_for_selector("[data-testid=verdict-status][data-verdict=approved]")
        reviews = (await rest(srv, "GET", f"/api/v1/sessions/{sid}/reviews", "reviewer")).json()
        assert [(r["verdict"], r["comment"]) for r in reviews] == [("approved", "流程完整，核验记录清楚。")]
        await reviewer.evaluate("window.scrollTo(0, 0)")
        await screenshot(reviewer, "review-session-desktop")
        await screenshot(reviewer, "review-session-phone", PHONE)
        await reviewer.get_by_test_id("back-to-list").wait_for(state="attached")
        await reviewer.set_viewport_size(PHONE)
        await reviewer.get_by_test_id("back-to-list").click()
        await screenshot(reviewer, "review-list-phone")
        await reviewer.context.close()


async def test_face_check_fails_for_another_person(tmp_path, browser, page_errors):
    """The reference photo is Grace Hopper: the check fails, so loan_prescreen's mandatory face-check
    step is not done; the agent cannot end the call and a supervisor ends it with a reason."""
    async with run_server(tmp_path / "data", offer_timeout_s=30, facecheck_challenge_timeout_s=1.5) as srv:
        board = await staff_signs_in(browser, srv, page_errors, "/wallboard", "supervisor")
        created = await srv.create_session("loan_prescreen", reference_photo=photo_b64("grace_hopper"))
        customer = await customer_joins(browser, srv, page_errors, created["join_token"])
        agent = await agent_signs_in(browser, srv, page_errors, "agent1")
        await agent.get_by_test_id("offer-accept").click()
        await playing(agent, "remote-video")

        # the agent's connection drops mid-call: the console reconnects and the call goes on
        [conn] = [c for c in srv.coordinator.registry.connected("staff:") if c.role == "agent"]
        await conn.transport.close(1012, "test: connection dropped")
        await agent.wait_for_selector("#banner.banner-ok:not([hidden])", timeout=15_000)
        assert await agent.get_by_test_id("agent-status").get_attribute("data-status") == "busy"
        await playing(agent, "remote-video")

        await agent.get_by_test_id("facecheck-start").click()
        result = agent.get_by_test_id("facecheck-result")
        await result.wait_for(timeout=60_000)
        assert await result.get_attribute("data-match") == "false"
        assert await agent.get_by_test_id("facecheck-match").text_content() == "身份不一致"
        await agent.wait_for_selector("[data-testid=facecheck-reasons] li[data-code=mismatch]")
        assert float(await agent.get_by_test_id("facecheck-distance").text_content()) >= 0.5
        step = agent.get_by_test_id("checklist-step-identity_verified")
        assert await step.get_attribute("data-done") == "false" and await step.is_disabled()
        await screenshot(agent, "agent-facecheck-mismatch-desktop")

        # ending is refused while mandatory steps are missing
        await agent.get_by_test_id("checklist-step-income_confirmed").click()
        await agent.get_by_test_id("end-session").click()
        await agent.wait_for_selector("#end-error:has-text('人脸核验通过')")
        assert await agent.get_by_test_id("remote-video").is_visible()

        # the supervisor ends the call from the wallboard, giving a reason
        await board.locator("[data-testid^=wallboard-end-call-]").click()
        await board.get_by_test_id("override-confirm").click()
        await board.wait_for_selector("#override-error:not(:empty)")  # a reason is required
        await board.get_by_test_id("override-reason").fill("人脸核验未通过，客户将到网点办理")
        await board.get_by_test_id("override-disposition").select_option("identity_failed")
        await screenshot(board, "wallboard-override-desktop")
        await board.get_by_test_id("override-confirm").click()
        await customer.wait_for_selector("[data-testid=end-reason][data-reason=ended_by_supervisor]")
        await agent.get_by_test_id("wrapup-done").wait_for()
        session = (await rest(srv, "GET", f"/api/v1/sessions/{created['session_id']}")).json()
        assert session["disposition"] == "identity_failed" and session["end_reason"] == "ended_by_supervisor"
        for page in (board, customer, agent):
            await page.context.close()
