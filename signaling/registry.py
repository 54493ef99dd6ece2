"""Who is connected: one live connection per party, resume tokens and grace windows.

A party is a customer session ("customer:<session_id>") or a staff account
("staff:<account_id>"). When its connection drops, the party is kept for the
resume window; a `hello` with its resume token within that window continues
where it left off, otherwise `on_gone` fires once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vbranch.clock import Clock


def customer_party(session_id: str) -> str:
    return f"customer:{session_id}"


def staff_party(account_id: int | str) -> str:
    return f"staff:{account_id}"


class Transport(Protocol):
    async def send_json(self, message: dict[str, Any]) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


@dataclass(eq=False)
class Connection:
    transport: Transport
    role: str
    party: str | None = None  # set by hello
    identity: Any = None
    sent: int = 0

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.transport.send_json(message)
            self.sent += 1
        except Exception:  # a peer that vanished mid-send is cleaned up by its reader task
            pass


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
                 on_gone: Callable[[str], Awaitable[None]]) -> None:
        self._clock = clock
        self.resume_window_s = resume_window_s
        self._on_gone = on_gone
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
                self._spawn(old.transport.close(4001, "superseded by a newer connection"))
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
            await self._on_gone(party)

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
