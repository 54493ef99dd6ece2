"""Who is connected: one live connection per party, resume tokens and grace windows.

A party is a customer session ("customer:<session_id>") or a staff account
("staff:<account_id>"). When its connection drops, the party is kept for the
resume window; a `hello` with its resume token within that window continues
where it left off, otherwise `on_gone` fires once.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vbranch.clock import Clock


def customer_party(session_id: str) -> str:
    return f"customer:{session_id}"


def staff_party(account_id: int | str) -> str:
    return f"staff:{account_id}"


class Transport(Protocol):
    async def send_json(self, message: dict[str, Any]) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


CLOSE_TOO_SLOW = 1013  # "try again later": the client reconnects and resumes


@dataclass(eq=False)
class Connection:
    """One client's socket. Sending never waits for the network: messages go to this connection's
    own outbox, written in order by its own task, so one slow phone holds up nobody else. A client
    that falls ``max_outbox`` messages behind is closed (1013) and resumes when it reconnects."""

    transport: Transport
    role: str
    party: str | None = None  # set by hello
    identity: Any = None
    sent: int = 0
    max_outbox: int = 1000
    _outbox: collections.deque = field(default_factory=collections.deque)
    _wake: asyncio.Event | None = None
    _writer: asyncio.Task | None = None
    _closing: bool = False

    async def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if len(self._outbox) >= self.max_outbox:
            self._closing = True
            self._outbox.clear()
            asyncio.ensure_future(self._close_now(CLOSE_TOO_SLOW, "too slow: reconnect to resume"))
            return
        self._outbox.append(message)
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.ensure_future(self._write_loop())
        assert self._wake is not None
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until what was sent so far is written (or the timeout passes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._outbox and self._writer is not None and not self._writer.done():
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    async def close(self, code: int, reason: str = "") -> None:
        """Close after what was sent so far is written (e.g. session.ended before 1000)."""
        await self.drain(2.0)
        await self._close_now(code, reason)

    def stop(self) -> None:
        """The socket is gone: stop writing."""
        self._closing = True
        self._outbox.clear()
        if self._writer is not None:
            self._writer.cancel()

    async def _close_now(self, code: int, reason: str) -> None:
        self._closing = True
        try:
            await self.transport.close(code, reason)
        except Exception:  # already closed
            pass

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                message = self._outbox.popleft()
                try:
                    await self.transport.send_json(message)
                    self.sent += 1
                except Exception:  # a peer that vanished mid-send is cleaned up by its reader task
                    self._outbox.clear()
                    return


@dataclass
class _Party:
    resume_token: str
    connection: Connection | None
    grace: asyncio.TimerHandle | None = None


class AttachError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Registry:
    def __init__(self, clock: Clock, resume_window_s: float,
                 on_gone: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._clock = clock
        self.resume_window_s = resume_window_s
        # a party's resume window passed without it coming back (wired by vbranch.bootstrap)
        self.on_gone = on_gone
        self._parties: dict[str, _Party] = {}
        self._tasks: set[asyncio.Task] = set()

    def attach(self, party: str, conn: Connection, resume_token: str | None) -> tuple[str, bool]:
        """Bind conn to party. Returns (new resume token, resumed?).

        A hello carrying the party's resume token takes over (even from a live
        connection, e.g. a reload); without one, a party whose connection is
        still live is refused, and one inside its grace window continues.
        """
        current = self._parties.get(party)
        resumed = False
        if current is not None:
            token_ok = resume_token is not None and secrets.compare_digest(resume_token, current.resume_token)
            if resume_token is not None and not token_ok:
                raise AttachError("resume_failed", "the resume token is not valid for this party")
            if current.connection is not None and not token_ok:
                raise AttachError("session_in_use", "this party is already connected elsewhere")
            if current.grace is not None:
                current.grace.cancel()
            old = current.connection
            if old is not None and old is not conn:
                old.party = None  # its close will not count as the party leaving
                self._spawn(old.close(4001, "superseded by a newer connection"))
            resumed = True
        elif resume_token is not None:
            raise AttachError("resume_failed", "nothing to resume: the resume window has passed")
        token = secrets.token_urlsafe(24)
        self._parties[party] = _Party(token, conn)
        conn.party = party
        return token, resumed

    def detach(self, conn: Connection) -> None:
        """The connection closed: start the party's grace window."""
        party = conn.party
        entry = self._parties.get(party) if party else None
        if entry is None or entry.connection is not conn:
            return
        entry.connection = None
        loop = asyncio.get_running_loop()
        entry.grace = loop.call_later(self.resume_window_s, lambda: self._spawn(self._expire(party)))

    async def _expire(self, party: str) -> None:
        entry = self._parties.get(party)
        if entry is not None and entry.connection is None:
            del self._parties[party]
            if self.on_gone is not None:
                await self.on_gone(party)

    def expect(self, party: str) -> None:
        """A party not connected yet but owed a resume window (e.g. waiting before a restart)."""
        if party not in self._parties:
            entry = _Party(secrets.token_urlsafe(24), None)
            self._parties[party] = entry
            entry.grace = asyncio.get_running_loop().call_later(
                self.resume_window_s, lambda: self._spawn(self._expire(party)))

    def forget(self, party: str) -> None:
        """Drop a party now (e.g. its session ended) without calling on_gone."""
        entry = self._parties.pop(party, None)
        if entry and entry.grace:
            entry.grace.cancel()

    def connection(self, party: str) -> Connection | None:
        entry = self._parties.get(party)
        return entry.connection if entry else None

    def connected(self, prefix: str = "") -> list[Connection]:
        return [p.connection for k, p in self._parties.items() if p.connection and k.startswith(prefix)]

    async def send(self, party: str, message: dict[str, Any]) -> bool:
        conn = self.connection(party)
        if conn is None:
            return False
        await conn.send(message)
        return True

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for entry in self._parties.values():
            if entry.grace:
                entry.grace.cancel()
        self._parties.clear()
        for task in list(self._tasks):
            task.cancel()
