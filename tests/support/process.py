"""`vbranch serve` in its own process, to be stopped with a real signal (SIGTERM, SIGKILL) and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.server import WsClient, free_port

SECRET = "process-secret-" + "x" * 32


class ServerProcess:
    """One server on a fixed port and data folder; ``start`` again after ``stop`` is a restart."""

    def __init__(self, data_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {**os.environ, "VBRANCH_DATA_DIR": str(data_dir), "VBRANCH_SECRET_KEY": SECRET,
                    "VBRANCH_LOG_LEVEL": "warning", **env}
        if database_url:
            self.env["VBRANCH_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        from vbranch.demo import demo_api_key

        return demo_api_key(SECRET)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "vbranch.cli", "serve", "--demo", "--port",
                                          str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient(base_url=self.base_url) as h:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
                try:
                    if (await h.get("/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.to_thread(self.proc.wait, timeout)
        self.proc = None
        return code

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=15)

    def connect(self, token: str) -> WsClient:
        return WsClient(f"ws://127.0.0.1:{self.port}/ws?token={token}")

    async def login(self, username: str, password: str = "demo") -> str:
        async with self.http() as h:
            r = await h.post("/api/v1/auth/login", json={"username": username, "password": password})
            r.raise_for_status()
            return r.json()["token"]

    async def create_session(self, service: str, **extra) -> dict:
        body = {"service": service, "channel": "h5", "customer": {"ref": "C-1", "name": "Li Lei"}, **extra}
        async with self.http() as h:
            r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": self.api_key})
            assert r.status_code == 201, r.text
            return r.json()

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
