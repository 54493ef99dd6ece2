"""Browser end-to-end support: Debian's Chromium with a fake camera playing a public-domain face.

The y4m is made at test time from scikit-image's astronaut (Eileen Collins, NASA,
public domain): a few seconds of the still face with a pixel of jitter. Chromium
loops the file. Nothing is downloaded; the server binds 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 768}
BASE_ARGS = [
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]


@pytest.fixture(scope="session")
def face_y4m(tmp_path_factory) -> Path:
    import cv2

    from vbranch.facecheck.testing import astronaut_frame, write_y4m

    frame = astronaut_frame()
    rng = np.random.default_rng(6)
    frames = []
    for _ in range(45):  # 3 s at 15 fps
        dx, dy = rng.integers(-1, 2, size=2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frames.append(cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REFLECT))
    path = tmp_path_factory.mktemp("camera") / "astronaut.y4m"
    write_y4m(path, frames, fps=15)
    return path


@pytest.fixture
async def playwright_api():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        yield pw


@pytest.fixture
async def browser(playwright_api, face_y4m):
    """Chromium whose camera shows the astronaut and whose permission prompts are accepted."""
    b = await playwright_api.chromium.launch(
        executable_path=CHROMIUM,
        args=[*BASE_ARGS, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={face_y4m}"])
    try:
        yield b
    finally:
        await b.close()


class PageErrors:
    """JavaScript errors raised on pages (asserted empty at the end of a test)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page, name: str) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))


@pytest.fixture
def page_errors():
    errs = PageErrors()
    yield errs
    assert not errs.errors, errs.errors


async def open_page(browser, url: str, page_errors: PageErrors, name: str, viewport=DESKTOP,
                    init_script: str | None = None, **context_args):
    """A page in a context of its own; ``init_script`` runs before the page's scripts (e.g. to make
    the browser behave like another device)."""
    context_args.setdefault("locale", "zh-CN")
    context = await browser.new_context(viewport=viewport, **context_args)
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    page_errors.watch(page, name)
    await page.goto(url)
    return page


async def screenshot(page, name: str, size: dict | None = None) -> Path:
    """Write test-artifacts/screenshots/<name>.png, at `size` if given (then back to the page's own size)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    path = SCREENSHOTS / f"{name}.png"
    if size and size != before:
        await page.set_viewport_size(size)
        await page.wait_for_timeout(300)
    await page.screenshot(path=str(path))
    if size and size != before:
        await page.set_viewport_size(before)
    return path
