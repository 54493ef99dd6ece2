"""The reviewer replays a call recorded across a server restart: its segments play as one timeline."""

from __future__ import annotations

import signal

import pytest

from tests.protocol.test_restart_ws import call_across_a_restart
from tests.support.process import ServerProcess

from .conftest import DESKTOP, open_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.media]


async def test_segments_replay_on_one_clock_with_the_gap_shown(tmp_path, browser, page_errors):
    srv = ServerProcess(tmp_path / "data", VBRANCH_EVIDENCE_MAX_GAP_S="60")
    await srv.start()
    peers: list = []
    try:
        call = await call_across_a_restart(srv, signal.SIGKILL, peers)
        sid = call["session_id"]
        page = await open_page(browser, f"{srv.base_url}/review", page_errors, "reviewer", DESKTOP)
        await page.get_by_test_id("login-username").fill("reviewer")
        await page.get_by_test_id("login-password").fill("demo")
        await page.get_by_test_id("login-submit").click()
        await page.locator(f"[data-testid=session-row][data-session-id='{sid}']").click()
        for party in ("customer", "agent"):
            await page.get_by_test_id(f"replay-{party}-2").wait_for(state="attached")
        offsets = await page.evaluate("""() => [1, 2].map(n => Number(document.querySelector(
            `[data-testid=replay-customer${n === 1 ? '' : '-2'}]`).dataset.offset))""")
        token = await srv.login("reviewer")
        async with srv.http() as h:
            recs = (await h.get(f"/api/v1/sessions/{sid}/recordings",
                                headers={"Authorization": f"Bearer {token}"})).json()
        first = next(r for r in recs if (r["party"], r["segment"]) == ("customer", 1))
        gap_at = offsets[0] + first["duration_s"] + 0.2
        second = {"offset": offsets[1]}
        assert second["offset"] > gap_at  # the restart is a gap between the segments
        seek = page.get_by_test_id("replay-seek")

        async def seek_to(t: float) -> None:
            await seek.evaluate("(el, t) => { el.value = String(t); el.dispatchEvent(new Event('input')); "
                                "el.dispatchEvent(new Event('change')); }", t)
            await page.wait_for_timeout(400)

        assert "null" not in await page.locator("#detail").inner_text()  # a complete session has no flag
        await seek_to(gap_at)  # in the gap: the first segment's last frame, and a note saying why
        assert await page.get_by_test_id("replay-customer-gap").is_visible()
        assert await page.get_by_test_id("replay-customer").is_visible()
        await screenshot(page, "review-segments-gap-desktop", DESKTOP)
        await seek_to(second["offset"] + 0.5)  # in the second segment: it is shown and plays
        assert await page.get_by_test_id("replay-customer-2").is_visible()
        assert not await page.get_by_test_id("replay-customer").is_visible()
        assert not await page.get_by_test_id("replay-customer-gap").is_visible()
        await page.get_by_test_id("replay-play").click()
        await page.wait_for_function("""() => document.querySelector('[data-testid=replay-customer-2]')
            .currentTime > 0.9""", timeout=15_000)
        await screenshot(page, "review-segments-second-desktop", DESKTOP)
    finally:
        for p in peers:
            await p.close()
        srv.kill_quietly()
