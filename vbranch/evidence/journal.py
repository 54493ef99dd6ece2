"""The evidence journal: the one writer of timeline and audit rows.

Every timeline event and audit row goes through :class:`EvidenceJournal`:

- **Chained in memory, in call order.** Each chain's head (a session's
  timeline, the audit log) is kept in memory, so an append computes its link
  at once without reading the database; appends are ordered as they are made.
- **Group commit.** A writer task commits everything appended meanwhile in one
  transaction; a caller's ``await`` returns once its row is durable, so what
  the branch acknowledges is in the journal before anyone is told, and many
  concurrent appends cost one commit.
- **State change and event together.** ``record(..., change=...)`` commits
  the change in the same transaction as the event. Changes are data, not code:
  ``SessionUpdate`` (a session's new column values; the batch's updates are
  merged per session in order and written in one statement) and ``NewRows``
  (rows to insert, optionally replacing). So a batch costs a handful of round
  trips to the database whatever its size: each round trip waits for the
  event loop, which is busy exactly when batches are big.
- **No forks.** The database refuses a second row on a chain position
  (timeline: unique ``(session_id, seq)``; audit: unique ``prev_hash``). If
  another writer (another process) took the position, the batch is rolled
  back, the heads reloaded, the links recomputed and the batch retried; after
  ``MAX_ATTEMPTS`` the callers get the error. Nothing is dropped silently.
- ``flush()`` waits for everything appended so far (before a manifest is
  sealed, and at shutdown by ``close()``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vbranch.clock import Clock
from vbranch.db.database import Database
from vbranch.db.models import AuditLog, CustomerSession, TimelineEvent
from vbranch.db.repositories import audit_record, timeline_record
from vbranch.domain.evidence import GENESIS, chain_hash

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_ATTEMPTS = 5

@dataclass(frozen=True)
class SessionUpdate:
    """New values for one customer session's columns, committed with the event that records them."""

    session_id: str
    values: dict[str, Any]

    def __post_init__(self) -> None:  # a bulk update would ignore a misspelt column silently
        unknown = set(self.values) - set(CustomerSession.model_fields)
        if unknown:
            raise ValueError(f"customer_session has no column(s) {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class NewRows:
    """Rows inserted with the event (a new session and its photo, a sealed manifest).

    ``replace``: a row with the same primary key is deleted first (a manifest sealed again).
    """

    rows: tuple[SQLModel, ...]
    replace: bool = False


Change = SessionUpdate | NewRows


class JournalError(Exception):
    """An append could not be made durable (after retries)."""


@dataclass(eq=False)
class _Entry:
    row: TimelineEvent | AuditLog
    change: Change | None
    done: asyncio.Future[Any]
    attempts: int = 0


@dataclass
class _Head:
    seq: int  # timeline: last seq; audit: unused (0)
    hash: str


def _plain(data: dict[str, Any] | None) -> dict[str, Any]:
    """What the database gives back for a JSON column: hash that, not the caller's objects."""
    return json.loads(json.dumps(data or {}, ensure_ascii=False))


@dataclass
class JournalStats:
    commits: int = 0
    rows: int = 0
    retries: int = 0


class EvidenceJournal:
    def __init__(self, db: Database, clock: Clock, *, on_commit: Callable[[int], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.stats = JournalStats()
        self._on_commit = on_commit
        self._heads: dict[str, _Head] = {}  # session id -> its timeline head
        self._committed: dict[str, _Head] = {}  # session id -> its newest committed event (for sealing)
        self._loading: dict[str, asyncio.Lock] = {}
        self._audit: _Head | None = None
        self._audit_loading: asyncio.Lock | None = None
        self._queue: list[_Entry] = []
        self._appending: set[asyncio.Task[Any]] = set()  # appends under way (for flush)
        self._last_of: dict[str, asyncio.Task[Any]] = {}  # a session's newest append (for forget)
        self._last_audit: asyncio.Task[Any] | None = None  # the audit log's newest append (for audit_head)
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # ---------------------------------------------------------------- appends
    async def record(self, session_id: str, kind: str, actor: str, data: dict[str, Any] | None = None, *,
                     at: float | None = None, change: Change | None = None) -> TimelineEvent:
        """Append one event to a session's timeline; returns once it is committed."""
        return await self._tracked(self._record(session_id, kind, actor, data, at, change), session_id)

    async def audit(self, actor: str, action: str, session_id: str | None = None,
                    detail: dict[str, Any] | None = None, *, at: float | None = None) -> AuditLog:
        """Append one row to the audit log; returns once it is committed."""
        return await self._tracked(self._audit_append(actor, action, session_id, detail, at), None)

    async def _tracked(self, coro: Any, session_id: str | None) -> Any:
        if self._closed:
            coro.close()
            raise JournalError("the journal is closed")
        task = asyncio.ensure_future(coro)
        self._appending.add(task)
        task.add_done_callback(self._appending.discard)
        if session_id is None:
            self._last_audit = task
        else:
            self._last_of[session_id] = task
            task.add_done_callback(lambda t: self._last_of.pop(session_id, None)
                                   if self._last_of.get(session_id) is t else None)
        return await asyncio.shield(task)  # a cancelled caller does not cancel the append

    async def _record(self, session_id: str, kind: str, actor: str, data: dict[str, Any] | None,
                      at: float | None, change: Change | None) -> TimelineEvent:
        head = await self._timeline_head(session_id)
        ev = TimelineEvent(session_id=session_id, seq=head.seq + 1, at=self.clock.now() if at is None else at,
                           kind=kind, actor=actor, data=_plain(data), prev_hash=head.hash, hash="")
        ev.hash = chain_hash(ev.prev_hash, timeline_record(ev))
        self._heads[session_id] = _Head(ev.seq, ev.hash)
        return await self._submit(ev, change)  # type: ignore[return-value]

    async def _audit_append(self, actor: str, action: str, session_id: str | None, detail: dict[str, Any] | None,
                            at: float | None) -> AuditLog:
        head = await self._audit_head()
        row = AuditLog(at=self.clock.now() if at is None else at, actor=actor, action=action, session_id=session_id,
                       detail=_plain(detail), prev_hash=head.hash, hash="")
        row.hash = chain_hash(row.prev_hash, audit_record(row))
        self._audit = _Head(0, row.hash)
        return await self._submit(row, None)  # type: ignore[return-value]

    def start_chain(self, session_id: str) -> None:
        """A new session: its timeline starts at the genesis link (no need to read the database)."""
        self._heads.setdefault(session_id, _Head(0, GENESIS))

    async def audit_head(self) -> dict[str, Any]:
        """The audit chain's head once the audit rows appended so far are committed: {id, hash}."""
        last = self._last_audit
        if last is not None:
            await asyncio.gather(asyncio.shield(last), return_exceptions=True)
            if not last.cancelled() and last.exception() is None:
                row = last.result()
                return {"id": row.id, "hash": row.hash}
        async with self.db.journal_session() as s:  # nothing appended by this process yet, or it failed
            row = (await s.exec(select(AuditLog).order_by(col(AuditLog.id).desc()).limit(1))).first()
        return {"id": row.id, "hash": row.hash} if row else {"id": 0, "hash": GENESIS}

    async def committed_head(self, session_id: str) -> dict[str, Any]:
        """The session's timeline head once its events appended so far are committed: {seq, hash}."""
        await self.settled(session_id)
        head = self._committed.get(session_id) or await self._load_timeline_head(session_id)
        return {"seq": head.seq, "hash": head.hash}

    async def settled(self, session_id: str) -> None:
        """Wait until the session's events appended so far are committed."""
        last = self._last_of.get(session_id)
        if last is not None:
            await asyncio.gather(asyncio.shield(last), return_exceptions=True)

    async def flush(self) -> None:
        """Wait until everything appended so far is committed (or has failed)."""
        current = asyncio.current_task()
        pending = [t for t in self._appending if t is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None

    async def forget(self, session_id: str) -> None:
        """Drop a finished session's head from memory (reloaded from the database if it gets another event)."""
        await self.settled(session_id)
        self._heads.pop(session_id, None)
        self._committed.pop(session_id, None)
        self._loading.pop(session_id, None)

    # ---------------------------------------------------------------- heads
    async def _timeline_head(self, session_id: str) -> _Head:
        head = self._heads.get(session_id)
        if head is not None:
            return head
        lock = self._loading.setdefault(session_id, asyncio.Lock())
        async with lock:
            head = self._heads.get(session_id)
            if head is None:
                head = self._heads.get(session_id) or await self._load_timeline_head(session_id)
                self._heads[session_id] = head
        return head

    async def _load_timeline_head(self, session_id: str) -> _Head:
        async with self.db.journal_session() as s:
            last = (await s.exec(select(TimelineEvent).where(TimelineEvent.session_id == session_id)
                                 .order_by(col(TimelineEvent.seq).desc()).limit(1))).first()
        return _Head(last.seq, last.hash) if last else _Head(0, GENESIS)

    async def _audit_head(self) -> _Head:
        if self._audit is not None:
            return self._audit
        if self._audit_loading is None:
            self._audit_loading = asyncio.Lock()
        async with self._audit_loading:
            if self._audit is None:
                self._audit = await self._load_audit_head()
        return self._audit

    async def _load_audit_head(self) -> _Head:
        async with self.db.journal_session() as s:
            last = (await s.exec(select(AuditLog).order_by(col(AuditLog.id).desc()).limit(1))).first()
        return _Head(0, last.hash if last else GENESIS)

    # ---------------------------------------------------------------- writer
    async def _submit(self, row: TimelineEvent | AuditLog, change: Change | None) -> TimelineEvent | AuditLog:
        entry = _Entry(row, change, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._ensure_writer()
        assert self._wake is not None
        self._wake.set()
        await entry.done
        return entry.row

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._wake = asyncio.Event()
            self._writer = asyncio.create_task(self._write_loop(), name="evidence-journal")

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)

    async def _commit(self, batch: list[_Entry]) -> None:
        while batch:
            try:
                async with self.db.journal_session() as s:
                    await self._insert_new_rows(s, batch)  # new rows first (a new session before its events)
                    await self._update_sessions(s, batch)
                    await self._insert_rows(s, batch)
                    await s.commit()
            except (IntegrityError, OperationalError) as exc:
                # another writer took a chain position (or the database was busy): re-chain and retry
                self.stats.retries += 1
                for entry in batch:
                    entry.attempts += 1
                failed = [e for e in batch if e.attempts >= MAX_ATTEMPTS]
                for entry in failed:
                    if not entry.done.done():
                        entry.done.set_exception(JournalError(f"could not append to the journal: {exc}"))
                batch = [e for e in batch if e.attempts < MAX_ATTEMPTS]
                log.warning("journal batch of %d retried: %s", len(batch), type(exc).__name__)
                for entry in batch:  # fresh rows: the failed transaction may have left ids on them
                    entry.row = _fresh(entry.row)
                # the chains of rows given up on are in doubt too: their heads come from the database again
                await self._rechain(batch, also={e.row.session_id for e in failed if isinstance(e.row, TimelineEvent)})
                await asyncio.sleep(0.01 * min(entry.attempts for entry in batch) if batch else 0)
                continue
            except Exception as exc:  # a broken change or row: its callers hear of it
                log.exception("journal batch failed")
                for entry in batch:
                    if not entry.done.done():
                        entry.done.set_exception(JournalError(f"could not append to the journal: {exc}"))
                # what is queued behind the failed rows is relinked to what was committed
                await self._rechain([], also={e.row.session_id for e in batch if isinstance(e.row, TimelineEvent)})
                return
            self.stats.commits += 1
            self.stats.rows += len(batch)
            if self._on_commit is not None:
                self._on_commit(len(batch))
            for entry in batch:
                row = entry.row
                if isinstance(row, TimelineEvent):
                    self._committed[row.session_id] = _Head(row.seq, row.hash)
                if not entry.done.done():
                    entry.done.set_result(None)
            return

    @staticmethod
    async def _insert_new_rows(s: AsyncSession, batch: list[_Entry]) -> None:
        """The batch's new rows, in order, with Core statements (a retried batch inserts them again)."""
        changes = [e.change for e in batch if isinstance(e.change, NewRows)]
        if not changes:
            return
        conn = await s.connection()
        replaced: dict[Table, list[Any]] = {}
        inserted: dict[Table, list[dict[str, Any]]] = {}  # by table, in the order tables first appear
        for change in changes:
            for row in change.rows:
                table = type(row).__table__  # type: ignore[attr-defined]
                values = {c.name: getattr(row, c.name) for c in table.columns
                          if not (c.primary_key and getattr(row, c.name) is None)}
                if change.replace:  # tables with a one-column primary key
                    replaced.setdefault(table, []).append(values[table.primary_key.columns[0].name])
                inserted.setdefault(table, []).append(values)
        for table, keys in replaced.items():
            await conn.execute(table.delete().where(table.primary_key.columns[0].in_(keys)))
        for table, rows in inserted.items():
            await conn.execute(table.insert(), rows)

    @staticmethod
    async def _update_sessions(s: AsyncSession, batch: list[_Entry]) -> None:
        """The batch's session updates, merged per session in order; one Core executemany per shape."""
        merged: dict[str, dict[str, Any]] = {}
        for entry in batch:
            if isinstance(entry.change, SessionUpdate):
                merged.setdefault(entry.change.session_id, {}).update(entry.change.values)
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for sid, values in merged.items():
            shapes.setdefault(tuple(sorted(values)), []).append(
                {"_id": sid, **{"v_" + k: v for k, v in values.items()}})
        conn = await s.connection()
        for keys, params in shapes.items():
            await conn.execute(_SESSIONS.update().where(_SESSIONS.c.id == bindparam("_id"))
                               .values({k: bindparam("v_" + k) for k in keys}), params)

    @staticmethod
    async def _insert_rows(s: AsyncSession, batch: list[_Entry]) -> None:
        """The batch's rows in two Core executemany statements (no ORM work per row)."""
        events = [e.row for e in batch if isinstance(e.row, TimelineEvent)]
        audits = [e.row for e in batch if isinstance(e.row, AuditLog)]
        conn = await s.connection()
        if events:
            await conn.execute(_EVENTS.insert(), [_values(ev, _EVENT_COLUMNS) for ev in events])
        if audits:
            result = await conn.execute(_AUDIT.insert().returning(_AUDIT.c.id, sort_by_parameter_order=True),
                                        [_values(row, _AUDIT_COLUMNS) for row in audits])
            for row, (row_id,) in zip(audits, result.all()):
                row.id = row_id  # the audit head a manifest pins is named by id

    async def _rechain(self, batch: list[_Entry], also: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Reload the heads from the database and recompute the links of ``batch`` and of what is queued.

        ``also``: sessions whose heads are in doubt even with nothing queued for them.
        The reads come first; the relinking is then done without awaiting, so appends made
        meanwhile (they are in the queue by then) are relinked too.
        """
        sessions = {e.row.session_id for e in batch + self._queue if isinstance(e.row, TimelineEvent)} | set(also)
        loaded = {sid: await self._load_timeline_head(sid) for sid in sessions}
        audit = await self._load_audit_head()
        for entry in batch + self._queue:
            row = entry.row
            if isinstance(row, TimelineEvent):
                if row.session_id not in sessions:
                    continue  # appended meanwhile to a chain that was not in doubt
                head = loaded[row.session_id]
                row.seq, row.prev_hash = head.seq + 1, head.hash
                row.hash = chain_hash(row.prev_hash, timeline_record(row))
                loaded[row.session_id] = _Head(row.seq, row.hash)
            else:
                row.prev_hash = audit.hash
                row.hash = chain_hash(row.prev_hash, audit_record(row))
                audit = _Head(0, row.hash)
        for sid in sessions:
            self._heads[sid] = loaded[sid]
        self._audit = audit


_SESSIONS = CustomerSession.__table__  # type: ignore[attr-defined]
_EVENTS = TimelineEvent.__table__  # type: ignore[attr-defined]
_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]
_EVENT_COLUMNS = tuple(c.name for c in _EVENTS.columns if c.name != "id")
_AUDIT_COLUMNS = tuple(c.name for c in _AUDIT.columns if c.name != "id")


def _values(row: SQLModel, columns: tuple[str, ...]) -> dict[str, Any]:
    return {c: getattr(row, c) for c in columns}


def _fresh(row: TimelineEvent | AuditLog) -> TimelineEvent | AuditLog:
    return type(row)(**row.model_dump(exclude={"id"}))
