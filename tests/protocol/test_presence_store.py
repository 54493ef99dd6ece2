"""One contract for every presence store (signaling.presence): memory, SQLite, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from signaling.presence import Presence, token_hash
from tests.support.memory_presence import MemoryPresence
from vbranch.db.database import Database
from vbranch.presence.database import DatabasePresence
from vbranch.presence.redis_store import RedisPresence

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis"])
async def store(request, tmp_path):
    """A fresh, empty store and a way to open a second handle on the same data (a restarted process)."""
    if request.param == "memory":
        s = MemoryPresence()
        yield s, lambda: s
        return
    if request.param == "redis":
        key = f"vbranch-test:presence:{uuid.uuid4().hex}"
        s = RedisPresence(REDIS_URL, key)
        yield s, lambda: RedisPresence(REDIS_URL, key)
        await s.redis.delete(key)
        await s.close()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'presence.db'}"
        dbs = [Database(url)]
        await dbs[0].migrate()
        yield DatabasePresence(dbs[0]), lambda: DatabasePresence(dbs.append(Database(url)) or dbs[-1])
        for db in dbs:
            await db.close()
        return
    from tests.support.server import postgres_database

    with postgres_database() as url:
        dbs = [Database(url)]
        await dbs[0].migrate()
        yield DatabasePresence(dbs[0]), lambda: DatabasePresence(dbs.append(Database(url)) or dbs[-1])
        for db in dbs:
            await db.close()


async def test_records_are_written_replaced_and_removed(store):
    s, _ = store
    assert await s.all() == []
    await s.put(Presence("customer:a", token_hash("t1"), True))
    await s.put(Presence("staff:7", token_hash("t2"), False, 1_800_000_060.5))
    await s.put(Presence("customer:a", token_hash("t3"), False, 1_800_000_030.0))  # replaces
    assert sorted(await s.all(), key=lambda r: r.party) == [
        Presence("customer:a", token_hash("t3"), False, 1_800_000_030.0),
        Presence("staff:7", token_hash("t2"), False, 1_800_000_060.5)]
    await s.remove("customer:a")
    await s.remove("customer:never-there")  # removing what is not there is no error
    assert await s.all() == [Presence("staff:7", token_hash("t2"), False, 1_800_000_060.5)]


async def test_concurrent_writes_keep_the_newest_per_party_and_outlive_the_handle(store):
    s, reopen = store
    parties = [f"customer:{i}" for i in range(50)]
    await asyncio.gather(*(s.put(Presence(p, token_hash(p), True)) for p in parties))
    await asyncio.gather(*(s.put(Presence(p, token_hash(p + "x"), False, 5.0)) for p in parties[:10]),
                         *(s.remove(p) for p in parties[40:]))
    again = reopen()  # what a restarted process reads
    got = {r.party: r for r in await again.all()}
    assert set(got) == set(parties[:40])
    assert got["customer:3"] == Presence("customer:3", token_hash("customer:3x"), False, 5.0)
    assert got["customer:20"] == Presence("customer:20", token_hash("customer:20"), True)


def test_only_a_hash_of_the_resume_token_is_kept():
    assert token_hash("abc") != "abc" and len(token_hash("abc")) == 64
    assert token_hash("\udc80") == token_hash("\udc80")  # a lone surrogate from a hostile client hashes
