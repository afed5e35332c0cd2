"""Migrating a store that needs nothing: no write at all (a read-only replica or role), and a store that a newer
syncsim migrated (a rolled-back deployment) is used, with one warning. Both found by probing a real server."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from syncsim.cli import main
from syncsim.stores import Store, open_store
from syncsim.stores.postgres import PostgresStore

FUTURE = "9999_from_a_newer_syncsim"


async def _migrate_and_use(store: Store, caplog: pytest.LogCaptureFixture) -> str:
    """Migrate ``store`` (nothing to apply), use it, and return the one warning it logged."""
    try:
        with caplog.at_level(logging.WARNING, logger="syncsim.stores"):
            assert await store.migrate() == []
        assert await store.list_jobs() == []
    finally:
        await store.close()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "syncsim.stores"]
    return warning


@pytest.mark.postgres
def test_read_commands_work_on_a_read_only_database(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``syncsim jobs`` and ``status`` migrate before they read, and each migration's transaction created
    the bookkeeping table if it was missing: on a read-only database both failed with "migrate failed: cannot
    execute CREATE TABLE in a read-only transaction", naming a migration nobody asked for."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'alter database "{conn.info.dbname}" set default_transaction_read_only = on')
    missing = uuid.uuid4()
    assert main(["jobs", "--store", pg_url]) == 0
    assert main(["status", str(missing), "--store", pg_url]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "no jobs"
    assert err.strip() == f"syncsim status: error: no job {missing}"
    assert main(["migrate", "--store", pg_url]) == 0  # up to date: nothing to write


@pytest.mark.postgres
async def test_a_postgres_store_migrated_by_a_newer_syncsim_is_used_with_one_warning(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("insert into syncsim_migrations (name) values (%s)", (FUTURE,))
    warning = await _migrate_and_use(PostgresStore.from_url(pg_url), caplog)
    assert FUTURE in warning and "a newer syncsim migrated it" in warning and "\n" not in warning


async def test_a_sqlite_store_migrated_by_a_newer_syncsim_is_used_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "newer.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO syncsim_migrations (name, applied_at) VALUES (?, 0)", (FUTURE,))
    warning = await _migrate_and_use(open_store(f"sqlite:///{path}"), caplog)
    assert FUTURE in warning and str(path) in warning


def test_migrating_twice_applies_nothing_the_second_time(tmp_path: Path) -> None:
    async def twice() -> tuple[list[str], list[str]]:
        store = open_store(f"sqlite:///{tmp_path / 'twice.db'}")
        try:
            return await store.migrate(), await store.migrate()
        finally:
            await store.close()

    first, second = asyncio.run(twice())
    assert first and second == []
