from __future__ import annotations

import pytest

from tests.support.server import postgres_database, run_server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vbranch.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
async def server(tmp_path):
    """The server with demo data on SQLite (most protocol tests)."""
    async with run_server(tmp_path / "data") as srv:
        yield srv


@pytest.fixture
async def any_db_server(tmp_path, database_url):
    """The server on each supported database (the API suite runs on both)."""
    async with run_server(tmp_path / "data", database_url) as srv:
        yield srv
