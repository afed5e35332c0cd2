"""Shared fixtures: one behavioural suite runs on every store backend.

PostgreSQL tests use a real server the tests start themselves (tests/pg_fixtures.py); they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncsim.jobs.handlers import register_builtin_handlers
from syncsim.jobs.runner import HandlerRegistry
from syncsim.stores import Store, open_store

pytest_plugins = ["tests.support.pg_fixtures"]

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'syncsim.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A fresh, empty database URL for each backend."""
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A migrated store on each backend."""
    s = open_store(store_url)
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
def handlers() -> HandlerRegistry:
    return register_builtin_handlers(HandlerRegistry())


@pytest.fixture
def user_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skipped PostgreSQL test is a failure: CI must never silently skip the real database."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and "postgres" in item.keywords and os.environ.get("CI"):
        report.outcome = "failed"
        report.longrepr = f"PostgreSQL test skipped in CI: {report.longrepr}"
