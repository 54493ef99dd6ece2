"""Steps the browser tests share: a customer joining, an agent taking the call, REST checks."""

from __future__ import annotations

import asyncio
import base64

from .conftest import DESKTOP, PHONE, open_page, screenshot


def photo_b64(which: str = "astronaut") -> str:
    from vbranch.facecheck import testing

    img = testing.astronaut_bgr() if which == "astronaut" else testing.grace_hopper_bgr()
    return base64.b64encode(testing.encode_jpeg(img)).decode()


async def customer_joins(browser, srv, page_errors, join_token: str, viewport=PHONE, shots: str | None = None,
                         init_script: str | None = None):
    """Open the join link, consent, check the camera preview, join; returns the page once queued."""
    page = await open_page(browser, f"{srv.base_url}/customer/#token={join_token}", page_errors, "customer", viewport,
                           init_script=init_script)
    await page.get_by_test_id("consent-accept").wait_for()
    if shots:
        await screenshot(page, f"{shots}-consent-phone", PHONE)
    await page.get_by_test_id("consent-accept").click()
    join = page.get_by_test_id("join")
    await join.wait_for()
    await page.wait_for_function("() => !document.querySelector('[data-testid=join]').disabled")
    if shots:
        await page.wait_for_function("() => document.querySelector('[data-testid=local-video]').videoWidth > 0")
        await screenshot(page, f"{shots}-preview-phone", PHONE)
    await join.click()
    await page.wait_for_function(
        "() => /^\\d+$/.test(document.querySelector('[data-testid=queue-position]').textContent)")
    return page


async def agent_signs_in(browser, srv, page_errors, username: str = "agent1", viewport=DESKTOP,
                         init_script: str | None = None):
    page = await open_page(browser, f"{srv.base_url}/agent", page_errors, username, viewport, init_script=init_script)
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill("demo")
    await page.get_by_test_id("login-submit").click()
    await page.get_by_test_id("status-available").click()
    await page.wait_for_selector("[data-testid=agent-status][data-status=available], "
                                 "[data-testid=agent-status][data-status=offered]")
    return page


async def staff_signs_in(browser, srv, page_errors, path: str, username: str, viewport=DESKTOP):
    page = await open_page(browser, f"{srv.base_url}{path}", page_errors, username, viewport)
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill("demo")
    await page.get_by_test_id("login-submit").click()
    return page


async def rest(srv, method: str, path: str, username: str = "supervisor", **kw):
    token = await srv.login(username)
    async with srv.http() as h:
        r = await h.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
        return r


async def session_state(srv, session_id: str) -> str:
    return (await rest(srv, "GET", f"/api/v1/sessions/{session_id}")).json()["state"]


async def wait_state(srv, session_id: str, state: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while (now := await session_state(srv, session_id)) != state:
            await asyncio.sleep(0.2)
    assert now == state


async def playing(page, testid: str, timeout_s: float = 20.0) -> dict:
    """Wait until a <video> shows frames and its time advances; returns what was seen."""
    seen = await page.evaluate(
        """async ([testid, timeoutMs]) => {
            const v = document.querySelector(`[data-testid="${testid}"]`);
            const t0 = performance.now();
            let first = null;
            while (performance.now() - t0 < timeoutMs) {
                if (v.videoWidth > 0 && !v.paused && v.readyState >= 2) {
                    if (first === null) first = v.currentTime;
                    else if (v.currentTime > first + 0.5) break;
                }
                await new Promise(r => setTimeout(r, 100));
            }
            return {width: v.videoWidth, height: v.videoHeight, first, now: v.currentTime};
        }""",
        [testid, timeout_s * 1000],
    )
    assert seen["width"] > 0 and seen["first"] is not None and seen["now"] > seen["first"] + 0.5, (testid, seen)
    return seen
