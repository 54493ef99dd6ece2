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

from signaling.presence import Presence, PresenceStore, token_hash
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
    token_hash: str  # SHA-256 of its current resume token (the token itself is only with the client)
    connection: Connection | None
    grace: asyncio.TimerHandle | None = None


class AttachError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Registry:
    """The parties of this process. Each change a restart must not lose (a new resume token, the
    start of a grace window, a party gone) is written to the presence store before it takes effect
    for the client; ``restore`` reads them back at start."""

    def __init__(self, clock: Clock, resume_window_s: float, store: PresenceStore,
                 on_gone: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._clock = clock
        self.resume_window_s = resume_window_s
        self.store = store
        # a party's resume window passed without it coming back (wired by vbranch.bootstrap)
        self.on_gone = on_gone
        self._parties: dict[str, _Party] = {}
        self._tasks: set[asyncio.Task] = set()

    async def restore(self) -> None:
        """After a restart: every party in the store gets its resume window back (one that was
        connected, a fresh one from now); one whose window has passed is gone."""
        now = self._clock.now()
        records = await self.store.all()
        for record in records:
            entry = self._parties[record.party] = _Party(record.token_hash, None)
            until = now + self.resume_window_s if record.connected else (record.grace_until or now)
            self._start_grace(record.party, entry, until - now)
        # the parties connected when the process stopped: their windows start now (one group commit)
        await asyncio.gather(*(self.store.put(Presence(r.party, r.token_hash, False, now + self.resume_window_s))
                               for r in records if r.connected))

    async def attach(self, party: str, conn: Connection, resume_token: str | None) -> tuple[str, bool]:
        """Bind conn to party. Returns (new resume token, resumed?) once the token is stored.

        A hello carrying the party's resume token takes over (even from a live
        connection, e.g. a reload); without one, a party whose connection is
        still live is refused, and one inside its grace window continues.
        """
        current = self._parties.get(party)
        resumed = False
        if current is not None:
            token_ok = resume_token is not None and secrets.compare_digest(token_hash(resume_token),
                                                                           current.token_hash)
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
        entry = _Party(token_hash(token), conn)
        self._parties[party] = entry
        conn.party = party
        await self.store.put(Presence(party, entry.token_hash, True))
        return token, resumed

    async def detach(self, conn: Connection) -> None:
        """The connection closed: start the party's grace window."""
        party = conn.party
        entry = self._parties.get(party) if party else None
        if entry is None or entry.connection is not conn:
            return
        entry.connection = None
        self._start_grace(party, entry, self.resume_window_s)
        await self.store.put(Presence(party, entry.token_hash, False, self._clock.now() + self.resume_window_s))

    def _start_grace(self, party: str, entry: _Party, delay_s: float) -> None:
        entry.grace = asyncio.get_running_loop().call_later(max(0.0, delay_s),
                                                            lambda: self._spawn(self._expire(party, entry)))

    async def _expire(self, party: str, entry: _Party) -> None:
        if self._parties.get(party) is entry and entry.connection is None:
            del self._parties[party]
            await self.store.remove(party)
            if self.on_gone is not None:
                await self.on_gone(party)

    async def forget(self, party: str) -> None:
        """Drop a party now (e.g. its session ended) without calling on_gone."""
        entry = self._parties.pop(party, None)
        if entry and entry.grace:
            entry.grace.cancel()
        if entry is not None:
            await self.store.remove(party)

    def holds(self, party: str) -> bool:
        """Connected, or inside its resume window."""
        return party in self._parties

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
        await self.store.close()
