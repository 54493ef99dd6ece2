"""Debian's firefox-esr as a test browser, driven by tests/browser/firefox/customer.mjs.

Playwright's own Firefox build cannot be had here, so a small Node script drives the system
Firefox over WebDriver BiDi with puppeteer-core (installed by `make install-test`). The script
holds one headless page; this side sends it one JSON command per line on stdin and reads one
JSON line per answer (matched by id) or event (console, pageerror) on stdout.

`FirefoxPage` offers the few Playwright-like calls the tests need (goto, click, evaluate,
wait_for_function, wait_for_selector, screenshot), so flows.playing() works on it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import SCREENSHOTS, PageErrors

FIREFOX = "/usr/bin/firefox-esr"
NODE = shutil.which("node") or "/usr/bin/node"
HERE = Path(__file__).resolve().parent / "firefox"
SCRIPT = HERE / "customer.mjs"


class FirefoxError(RuntimeError):
    """A command failed in the browser (the Node side's message)."""


class FirefoxPage:
    def __init__(self, proc: asyncio.subprocess.Process, name: str, page_errors: PageErrors | None) -> None:
        self.proc = proc
        self.name = name
        self.page_errors = page_errors
        self.console: list[str] = []  # "type: text" of every console message, for failure reports
        self.version = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, name: str = "firefox", page_errors: PageErrors | None = None,
                     timeout: float = 60) -> "FirefoxPage":
        for path, hint in ((FIREFOX, "apt-get install firefox-esr"),
                           (HERE / "node_modules" / "puppeteer-core", f"npm ci --prefix {HERE}")):
            if not Path(path).exists():
                raise RuntimeError(f"{path} is missing: run `make install-test` ({hint})")
        proc = await asyncio.create_subprocess_exec(
            NODE, str(SCRIPT), cwd=HERE, env={**os.environ, "FIREFOX": FIREFOX},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024)
        page = cls(proc, name, page_errors)
        try:
            page.version = (await asyncio.wait_for(asyncio.shield(page._ready), timeout))["version"]
        except BaseException:
            await page.close()
            raise
        return page

    async def _read(self) -> None:
        try:
            while line := await self.proc.stdout.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # not ours (a library printing to stdout)
                if msg.get("event") == "ready":
                    self._ready.set_result(msg)
                elif msg.get("event") == "console":
                    self.console.append(f"{msg['type']}: {msg['text']}")
                elif msg.get("event") == "pageerror":
                    self.console.append(f"pageerror: {msg['text']}")
                    if self.page_errors is not None:
                        self.page_errors.errors.append(f"{self.name}: {msg['text']}")
                elif (fut := self._pending.pop(msg.get("id"), None)) and not fut.done():
                    if msg["ok"]:
                        fut.set_result(msg["value"])
                    else:
                        fut.set_exception(FirefoxError(msg["error"]))
        finally:
            gone = RuntimeError(f"the Firefox driver exited (code {await self.proc.wait()})")
            for fut in [self._ready, *self._pending.values()]:
                if not fut.done():
                    fut.set_exception(gone)
            self._pending.clear()

    async def call(self, cmd: str, timeout: float = 60, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self.proc.stdin.write((json.dumps({"id": msg_id, "cmd": cmd, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(fut, timeout)

    # -- Playwright-like calls ---------------------------------------------------
    async def set_viewport_size(self, size: dict) -> None:
        await self.call("viewport", width=size["width"], height=size["height"])

    async def add_init_script(self, source: str) -> None:
        """`source` is a function's text; it runs in every new document before the page's scripts."""
        await self.call("preload", source=source)

    async def goto(self, url: str) -> None:
        await self.call("goto", url=url)

    async def click(self, selector: str, timeout_ms: float = 20_000) -> None:
        await self.call("click", timeout=timeout_ms / 1000 + 10, selector=selector, ms=timeout_ms)

    async def evaluate(self, fn: str, arg: Any = None) -> Any:
        """fn is a function's source, called with `arg` (like Playwright's page.evaluate)."""
        return await self.call("eval", fn=fn, args=[] if arg is None else [arg])

    async def wait_for_function(self, fn: str, arg: Any = None, timeout_ms: float = 20_000) -> Any:
        return await self.call("wait", timeout=timeout_ms / 1000 + 10, fn=fn,
                               args=[] if arg is None else [arg], ms=timeout_ms)

    async def wait_for_selector(self, selector: str, timeout_ms: float = 20_000) -> None:
        await self.wait_for_function("(sel) => { const e = document.querySelector(sel);"
                                     " return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0; }",
                                     selector, timeout_ms)

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.call("screenshot", path=str(path))
        return path

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("close", timeout=20)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()  # puppeteer closes Firefox on SIGTERM
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 20)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(BaseException):
            await self._reader


@pytest.fixture
async def firefox(page_errors):
    """A headless Firefox page (fake camera and microphone, default WebRTC privacy)."""
    page = await FirefoxPage.launch("firefox", page_errors)
    try:
        yield page
    finally:
        await page.close()
