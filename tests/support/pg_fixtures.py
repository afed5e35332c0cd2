"""PostgreSQL fixtures (a pytest plugin: ``pytest_plugins = ["tests.support.pg_fixtures"]``).

One real server per test session (:class:`~syncsim.testing.postgres.TemporaryPostgres`, or the server that
``SYNCSIM_TEST_DATABASE_URL`` names), one migrated template database, and a fresh copy of it for every test:
``CREATE DATABASE … TEMPLATE`` takes tens of milliseconds where migrating takes hundreds.

These fixtures never skip: when no server can be started the tests that need one error with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from syncsim.errors import SyncsimError
from syncsim.stores.postgres import PostgresStore
from syncsim.testing.postgres import TemporaryPostgres

__all__ = ["pg_empty_url", "pg_server", "pg_template", "pg_url"]


def _database_name(kind: str) -> str:
    return f"syncsim_{kind}_{uuid.uuid4().hex[:12]}"


async def _migrate(url: str) -> None:
    store = PostgresStore.from_url(url, min_size=0, max_size=1)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TemporaryPostgres]:
    """The session's PostgreSQL server (superuser URL at ``.url``)."""
    server = TemporaryPostgres()
    try:
        server.start()
    except SyncsimError as exc:
        pytest.fail(f"PostgreSQL is required for these tests and could not be started: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: TemporaryPostgres) -> Iterator[str]:
    """Name of a database with every migration applied, to copy per test."""
    name = _database_name("template")
    url = pg_server.create_database(name)
    try:
        asyncio.run(_migrate(url))
    except SyncsimError as exc:
        pg_server.drop_database(name)
        pytest.fail(f"migrating the PostgreSQL template database failed: {exc}", pytrace=False)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: TemporaryPostgres, pg_template: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database of this test's own (dropped afterwards)."""
    name = _database_name("test")
    url = pg_server.create_database(name, template=pg_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def pg_empty_url(pg_server: TemporaryPostgres) -> Iterator[str]:
    """URL of a fresh database with no migration applied (dropped afterwards)."""
    name = _database_name("empty")
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
