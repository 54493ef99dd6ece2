"""The evidence journal on SQLite and PostgreSQL: group commit, no forks, atomic state changes, flush.

Two journals on one database stand for two writers (two processes, or a
writer that bypassed the journal): each keeps its chain heads in memory, so
their appends collide on chain positions. The database refuses the second
row on a position; the loser re-chains and retries; both chains verify.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlmodel import col, select

from vbranch.clock import FakeClock
from vbranch.db.database import Database
from vbranch.db.models import AuditLog, CustomerSession, Service, TimelineEvent
from vbranch.db.repositories import audit_record, timeline_record
from vbranch.domain.evidence import verify_chain
from vbranch.evidence.journal import EvidenceJournal, JournalError, SessionUpdate


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    await database.migrate()
    async with database.session() as s:
        s.add(Service(code="svc", name_zh="业务", name_en="Service"))
        await s.commit()
    yield database
    await database.close()


async def new_session(db: Database, clock: FakeClock) -> str:
    sid = uuid.uuid4().hex
    async with db.session() as s:
        s.add(CustomerSession(id=sid, service_code="svc", channel="h5", customer_ref="r", customer_name="n",
                              state="queued", created_at=clock.now()))
        await s.commit()
    return sid


async def chains(db: Database, session_id: str) -> tuple[list[TimelineEvent], list[AuditLog]]:
    async with db.session() as s:
        events = list((await s.exec(select(TimelineEvent).where(TimelineEvent.session_id == session_id)
                                    .order_by(col(TimelineEvent.seq)))).all())
        audit = list((await s.exec(select(AuditLog).order_by(col(AuditLog.id)))).all())
    return events, audit


async def test_concurrent_appends_are_group_committed_in_order(db):
    clock = FakeClock(1_000.0)
    journal = EvidenceJournal(db, clock)
    sid = await new_session(db, clock)
    try:
        await asyncio.gather(*(journal.record(sid, "step", "agent", {"n": i}) for i in range(200)),
                             *(journal.audit("agent", "act", sid, {"n": i}) for i in range(100)))
    finally:
        await journal.close()
    events, audit = await chains(db, sid)
    assert [e.data["n"] for e in events] == list(range(200))  # in the order appended
    assert [e.seq for e in events] == list(range(1, 201))
    assert verify_chain((timeline_record(e), e.prev_hash, e.hash) for e in events) == []
    assert verify_chain((audit_record(r), r.prev_hash, r.hash) for r in audit) == []
    assert journal.stats.rows == 300
    assert journal.stats.commits < 30, journal.stats  # batched, not one commit per row


async def test_two_writers_on_one_chain_never_fork(db):
    clock = FakeClock(1_000.0)
    a, b = EvidenceJournal(db, clock), EvidenceJournal(db, clock)
    sid = await new_session(db, clock)
    try:
        for round_ in range(5):
            await asyncio.gather(*(j.record(sid, "step", name, {"round": round_, "i": i})
                                   for i in range(10) for name, j in (("a", a), ("b", b))),
                                 *(j.audit(name, "act", sid, {"round": round_})
                                   for name, j in (("a", a), ("b", b)) for _ in range(5)))
    finally:
        await asyncio.gather(a.close(), b.close())
    events, audit = await chains(db, sid)
    assert len(events) == 100 and len(audit) == 50  # nothing lost
    assert [e.seq for e in events] == list(range(1, 101))
    assert verify_chain((timeline_record(e), e.prev_hash, e.hash) for e in events) == []
    assert verify_chain((audit_record(r), r.prev_hash, r.hash) for r in audit) == []
    assert a.stats.retries + b.stats.retries > 0  # they did collide, and recovered


async def test_a_state_change_and_its_event_commit_together(db):
    clock = FakeClock(1_000.0)
    journal = EvidenceJournal(db, clock)
    sid = await new_session(db, clock)

    connect = SessionUpdate(sid, {"state": "connected"})
    broken = SessionUpdate(sid, {"state": "completed", "consent": {"not json": object()}})

    try:
        await journal.record(sid, "state.connected", "agent", change=connect)
        with pytest.raises(JournalError):
            await journal.record(sid, "state.completed", "agent", change=broken)
        # the chain goes on from what was committed
        await journal.record(sid, "note", "agent")
    finally:
        await journal.close()
    events, _ = await chains(db, sid)
    assert [e.kind for e in events] == ["state.connected", "note"]
    assert verify_chain((timeline_record(e), e.prev_hash, e.hash) for e in events) == []
    async with db.session() as s:
        assert (await s.get(CustomerSession, sid)).state == "connected"  # the broken change left nothing


async def test_flush_waits_for_everything_appended(db):
    clock = FakeClock(1_000.0)
    journal = EvidenceJournal(db, clock)
    sid = await new_session(db, clock)
    tasks = [asyncio.create_task(journal.record(sid, "step", "x", {"i": i})) for i in range(50)]
    await asyncio.sleep(0)  # the appends are made, not yet committed
    await journal.flush()
    events, _ = await chains(db, sid)
    assert len(events) == 50
    await asyncio.gather(*tasks)
    head = await journal.audit_head()
    assert head == {"id": 0, "hash": "0" * 64}
    await journal.close()
    with pytest.raises(JournalError):
        await journal.record(sid, "late", "x")


async def test_session_updates_in_one_batch_apply_in_order_with_their_events(db):
    """Updates are data: merged per session in the order made, written with their events in one commit."""
    clock = FakeClock(1_000.0)
    journal = EvidenceJournal(db, clock)
    one, two = await new_session(db, clock), await new_session(db, clock)
    journal.start_chain(one)
    journal.start_chain(two)  # heads known: the four appends queue at once and share one batch
    try:
        await asyncio.gather(
            journal.record(one, "state.offered", "router", change=SessionUpdate(one, {"state": "offered",
                                                                                       "offered_at": 3.0})),
            journal.record(two, "consent", "customer", change=SessionUpdate(two, {"consent": {"face": True}})),
            journal.record(one, "state.connected", "agent", change=SessionUpdate(one, {"state": "connected",
                                                                                        "connected_at": 5.0})),
            journal.record(one, "state.queued", "router", change=SessionUpdate(one, {"state": "queued",
                                                                                      "offered_at": None})))
        assert journal.stats.commits == 1
    finally:
        await journal.close()
    async with db.session() as s:
        rows = {r.id: r for r in (await s.exec(select(CustomerSession))).all()}
    assert (rows[one].state, rows[one].offered_at, rows[one].connected_at) == ("queued", None, 5.0)
    assert (rows[two].state, rows[two].consent) == ("queued", {"face": True})
    events, _ = await chains(db, one)
    assert [e.kind for e in events] == ["state.offered", "state.connected", "state.queued"]


def test_a_session_update_names_real_columns_only():
    with pytest.raises(ValueError, match="no_such_column"):
        SessionUpdate("s", {"state": "queued", "no_such_column": 1})


async def test_a_session_update_the_database_refuses_fails_its_batch_and_writes_nothing(db):
    clock = FakeClock(1_000.0)
    journal = EvidenceJournal(db, clock)
    sid = await new_session(db, clock)
    try:
        with pytest.raises(JournalError):
            await journal.record(sid, "state.bogus", "x", change=SessionUpdate(sid, {"service_code": "no_such"}))
        await journal.record(sid, "after", "x")  # the chain goes on from what was committed
    finally:
        await journal.close()
    events, _ = await chains(db, sid)
    assert [e.kind for e in events] == ["after"]
    assert verify_chain((timeline_record(e), e.prev_hash, e.hash) for e in events) == []
