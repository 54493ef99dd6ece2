"""A real vbranch server on 127.0.0.1 inside the test's event loop, and a WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
import websockets

from vbranch.app import create_app
from vbranch.clock import Clock
from vbranch.config import load_settings

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_database() -> Any:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    name = "vbranch_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RunningServer:
    app: Any
    base_url: str
    api_key: str | None

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    @property
    def runtime(self):
        return self.app.state.branch.runtime

    @property
    def coordinator(self):
        return self.app.state.branch.coordinator

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)

    async def login(self, username: str, password: str = "demo") -> str:
        async with self.http() as c:
            r = await c.post("/api/v1/auth/login", json={"username": username, "password": password})
            r.raise_for_status()
            return r.json()["token"]

    async def create_session(self, service: str = "loan_prescreen", **extra: Any) -> dict[str, Any]:
        body = {"service": service, "channel": "h5", "customer": {"ref": "C-1", "name": "Li Lei"}, **extra}
        async with self.http() as c:
            r = await c.post("/api/v1/sessions", json=body, headers={"X-Api-Key": self.api_key or ""})
            assert r.status_code == 201, r.text
            return r.json()

    def connect(self, token: str | None) -> "WsClient":
        url = self.ws_url + (f"?token={token}" if token is not None else "")
        return WsClient(url)


@contextlib.asynccontextmanager
async def run_server(data_dir: Path, database_url: str | None = None, clock: Clock | None = None,
                     host: str = "127.0.0.1", **settings: Any) -> AsyncIterator[RunningServer]:
    port = free_port()
    s = load_settings(data_dir=data_dir, database_url=database_url, port=port, demo=settings.pop("demo", True),
                      secret_key=settings.pop("secret_key", "test-secret-" + "x" * 32), **settings)
    app = create_app(s, clock)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            ws_max_size=s.ws_max_frame_bytes, ws_ping_interval=s.heartbeat_interval_s,
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.02)
    demo = app.state.demo
    try:
        yield RunningServer(app=app, base_url=f"http://{host}:{port}", api_key=demo.api_key if demo else None)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class WsClient:
    """A thin JSON client over a real WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: websockets.ClientConnection | None = None
        self.backlog: list[dict[str, Any]] = []  # messages skipped while waiting for something else

    async def __aenter__(self) -> "WsClient":
        self.ws = await websockets.connect(self.url, max_size=None, open_timeout=10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def _next(self, timeout: float) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await self._next(timeout)

    async def recv_type(self, mtype: str, timeout: float = 5) -> dict[str, Any]:
        """The next message of this type; others are dropped (e.g. queue updates)."""
        for i, msg in enumerate(self.backlog):
            if msg["type"] == mtype:
                del self.backlog[: i + 1]
                return msg
        self.backlog.clear()
        async with asyncio.timeout(timeout):
            while True:
                msg = await self._next(timeout)
                if msg["type"] == mtype:
                    return msg

    async def request(self, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Send with an id and wait for the reply that refs it."""
        message = {"id": uuid.uuid4().hex[:8], **message}
        await self.send(message)
        async with asyncio.timeout(timeout):
            while True:
                msg = await self._next(timeout)
                if msg.get("ref") == message["id"]:
                    return msg
                self.backlog.append(msg)

    async def closed(self, timeout: float = 5) -> tuple[int | None, str]:
        """Wait for the server to close; returns (code, reason)."""
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        return self.ws.close_code, self.ws.close_reason or ""
