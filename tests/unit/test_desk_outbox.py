"""The queue desk's ordering with fake adapters: decisions persisted, then announced, in the order made.

- A persist that fails is retried until it holds; what was decided after it waits, in order.
- A decision's ``run`` returns only once it is persisted and announced.
- A slow socket (a send that never completes) delays nobody else: each connection writes
  from its own outbox.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from signaling.bus import LocalBus
from signaling.registry import Connection, Registry, staff_party
from tests.support.memory_presence import MemoryPresence
from vbranch.clock import FakeClock
from vbranch.domain.service_rules import rules_for
from vbranch.domain.session_state import SessionState
from vbranch.evidence.journal import JournalError
from vbranch.metrics import Metrics
from vbranch.queue.desk import QueueDesk


class FakeSessions:
    """SessionService.move, recording what was persisted; fails the first ``failures`` moves of a session."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.failures = dict(failures or {})
        self.persisted: list[tuple[str, str]] = []
        self.attempts: list[tuple[str, str]] = []

    async def move(self, session_id: str, target: SessionState, actor: str, data: Any = None, **changes: Any):
        self.attempts.append((session_id, str(target)))
        await asyncio.sleep(0)
        if self.failures.get(session_id, 0) > 0:
            self.failures[session_id] -= 1
            raise JournalError("the database is away")
        self.persisted.append((session_id, str(target)))
        return SimpleNamespace(id=session_id, priority=0, customer_ref="r", customer_name="n", channel="h5",
                               connected_at=changes.get("connected_at"))


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None]] = []

    async def publish(self, party: str, message: dict[str, Any]) -> bool:
        self.sent.append((party, message["type"], message.get("session_id")))
        return True


def make_desk(sessions: FakeSessions, bus: Any) -> QueueDesk:
    clock = FakeClock(1_000.0)
    rt = SimpleNamespace(clock=clock, metrics=Metrics(), settings=SimpleNamespace(offer_timeout_s=15.0, wrapup_s=0.0))
    desk = QueueDesk(rt, bus, sessions, watchers=lambda: [])  # type: ignore[arg-type]
    desk.engine.add_service(rules_for({"code": "svc", "required_skills": {"accounts": 1}}))
    desk._effects = asyncio.create_task(desk._run_effects())  # what start() does, without the database
    return desk


async def stop(desk: QueueDesk) -> None:
    desk._effects.cancel()
    await asyncio.gather(desk._effects, return_exceptions=True)


async def test_a_failed_persist_is_retried_and_later_decisions_wait_in_order():
    sessions = FakeSessions(failures={"s1": 2})
    bus = RecordingBus()
    desk = make_desk(sessions, bus)
    try:
        for agent in ("101", "102"):
            await desk.run(lambda agent=agent: desk.engine.agent_login(agent, {"accounts": 3}))
            await desk.run(lambda agent=agent: desk.engine.set_agent_status(agent, "available"))
        first = asyncio.create_task(desk.run(lambda: desk.engine.enqueue("s1", "svc", 0, enqueued_at=1.0)))
        second = asyncio.create_task(desk.run(lambda: desk.engine.enqueue("s2", "svc", 0, enqueued_at=2.0)))
        await asyncio.wait_for(asyncio.gather(first, second), 10)
    finally:
        await stop(desk)
    # s1's offer failed twice and was retried; nothing was dropped or reordered
    assert sessions.attempts.count(("s1", "offered")) == 3
    assert sessions.persisted == [("s2", "offered"), ("s1", "offered")] or \
        sessions.persisted == [("s1", "offered"), ("s2", "offered")]
    offers = [(party, sid) for party, kind, sid in bus.sent if kind == "offer"]
    assert [sid for _, sid in offers] == ["s1", "s2"]  # announced in the order decided
    assert desk.rt.metrics.desk_persist_failures.labels("retried")._value.get() == 2


async def test_run_returns_once_its_decision_is_persisted_and_announced():
    sessions = FakeSessions()
    bus = RecordingBus()
    desk = make_desk(sessions, bus)
    try:
        await desk.run(lambda: desk.engine.agent_login("101", {"accounts": 3}))
        await desk.run(lambda: desk.engine.set_agent_status("101", "available"))
        await desk.run(lambda: desk.engine.enqueue("s1", "svc", 0, enqueued_at=1.0))
        assert ("s1", "offered") in sessions.persisted
        assert (staff_party("101"), "offer", "s1") in bus.sent
    finally:
        await stop(desk)


class StuckTransport:
    """A phone on a dead network: its sends never complete."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.release.wait()

    async def close(self, code: int, reason: str = "") -> None:
        self.release.set()


class FastTransport:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def send_json(self, message: dict[str, Any]) -> None:
        self.got.append(message)

    async def close(self, code: int, reason: str = "") -> None:
        pass


async def test_a_slow_socket_does_not_delay_other_parties():
    async def gone(_party: str) -> None:
        return None

    registry = Registry(FakeClock(0.0), 60.0, MemoryPresence(), gone)
    stuck, fast = StuckTransport(), FastTransport()
    await registry.attach(staff_party("101"), Connection(transport=stuck, role="agent"), None)
    await registry.attach(staff_party("102"), Connection(transport=fast, role="agent"), None)
    desk = make_desk(FakeSessions(), LocalBus(registry))
    try:
        for agent in ("101", "102"):
            await desk.run(lambda agent=agent: desk.engine.agent_login(agent, {"accounts": 3}))
            await desk.run(lambda agent=agent: desk.engine.set_agent_status(agent, "available"))
        # a1 (stuck) gets the first offer, a2 the second: the second is not held up by the first
        await asyncio.wait_for(desk.run(lambda: desk.engine.enqueue("s1", "svc", 0, enqueued_at=1.0)), 5)
        await asyncio.wait_for(desk.run(lambda: desk.engine.enqueue("s2", "svc", 0, enqueued_at=2.0)), 5)
        for _ in range(50):
            if any(m["type"] == "offer" for m in fast.got):
                break
            await asyncio.sleep(0.01)
        offered = {m["session_id"] for m in fast.got if m["type"] == "offer"}
        assert offered and offered <= {"s1", "s2"}
        assert registry.connection(staff_party("101")).backlog >= 1  # still waiting on its dead network
    finally:
        stuck.release.set()
        await stop(desk)
        await registry.close()


async def test_a_client_that_falls_too_far_behind_is_closed_to_resume():
    stuck = StuckTransport()
    conn = Connection(transport=stuck, role="customer", max_outbox=10)
    for i in range(11):
        await conn.send({"type": "queue.update", "position": i})
    await asyncio.sleep(0.01)
    assert stuck.release.is_set()  # closed (1013): the client reconnects and resumes
    assert conn.backlog == 0
