"""The database adapter: async engine, sessions and Alembic migrations.

Users give a plain URL (sqlite:///..., postgresql://... or postgresql+psycopg://...);
the async driver (aiosqlite, psycopg) is chosen here, the sync one for Alembic.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def driver_urls(url: str) -> tuple[str, str]:
    """(async URL, sync URL) for a user-given database URL."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return (u.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False),
                u.set(drivername="sqlite").render_as_string(hide_password=False))
    if backend == "postgresql":
        pg = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return pg, pg
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    # WAL + NORMAL: a crash of the process loses nothing; only a power cut can lose the last commits
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    def __init__(self, url: str, on_commit: "Callable[[], None] | None" = None) -> None:
        self.url = url
        self.async_url, self.sync_url = driver_urls(url)
        if self.async_url.startswith("sqlite"):
            path = make_url(self.sync_url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        # a SQLite file cannot drop a connection: a ping before each checkout would be a wasted round trip
        ping = not self.async_url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(self.async_url, pool_pre_ping=ping)
        # The evidence journal's own connections. Request handlers hold a pooled connection while they
        # await the journal; were the journal's writer to draw from the same pool, enough concurrent
        # requests would take every connection and wait for a writer that waits for a connection.
        self.journal_engine: AsyncEngine = create_async_engine(self.async_url, pool_pre_ping=ping,
                                                               pool_size=2, max_overflow=0)
        for engine in (self.engine, self.journal_engine):
            if self.async_url.startswith("sqlite"):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            if on_commit is not None:  # counted for the benchmarks (commits per call)
                event.listen(engine.sync_engine, "commit", lambda _conn: on_commit())
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._journal_sessions = async_sessionmaker(self.journal_engine, class_=AsyncSession,
                                                    expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as s:
            yield s

    @asynccontextmanager
    async def journal_session(self) -> AsyncIterator[AsyncSession]:
        """A session on the journal's own connections (for the evidence journal only)."""
        async with self._journal_sessions() as s:
            yield s

    async def migrate(self) -> None:
        await asyncio.to_thread(upgrade, self.sync_url)

    async def close(self) -> None:
        await self.engine.dispose()
        await self.journal_engine.dispose()


def alembic_config(sync_url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def upgrade(sync_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(sync_url), revision)
