"""Presence in the branch's database (the one-box default).

Writes are group-committed: every put or remove made while a commit is under
way goes into the next one, merged per party (the newest wins), so a burst of
hellos costs a few commits; each caller returns once its write is durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import delete
from sqlmodel import select

from signaling.presence import Presence
from vbranch.db.database import Database
from vbranch.db.models import PresenceRow

_TABLE = PresenceRow.__table__  # type: ignore[attr-defined]


class DatabasePresence:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[str, Presence | None] = {}  # party -> record, or None to remove
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def put(self, record: Presence) -> None:
        await self._write(record.party, record)

    async def remove(self, party: str) -> None:
        await self._write(party, None)

    async def all(self) -> list[Presence]:
        async with self.db.session() as s:
            rows = (await s.exec(select(PresenceRow))).all()
        return [Presence(r.party, r.token_hash, r.connected, r.grace_until) for r in rows]

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write(self, party: str, record: Presence | None) -> None:
        self._pending[party] = record
        done = asyncio.get_running_loop().create_future()
        self._waiters.append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="presence-writer")
        await done

    async def _write_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            try:
                await self._commit(batch)
            except Exception as exc:  # the callers hear of it (a hello then fails; nothing is half-said)
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _commit(self, batch: dict[str, Presence | None]) -> None:
        rows: list[dict[str, Any]] = [{"party": r.party, "token_hash": r.token_hash, "connected": r.connected,
                                       "grace_until": r.grace_until} for r in batch.values() if r is not None]
        async with self.db.session() as s:
            # delete-then-insert is one upsert that reads the same on SQLite and PostgreSQL
            await s.exec(delete(PresenceRow).where(PresenceRow.party.in_(list(batch))))  # type: ignore[attr-defined]
            if rows:
                conn = await s.connection()
                await conn.execute(_TABLE.insert(), rows)
            await s.commit()
