"""``syncsim schedule`` on a real cluster with pg_cron: the tick's job is created, replaced and removed, and its
secret lives in Vault, never in the job's text.

The cluster is the test's own (pg_cron must be preloaded, and it schedules jobs in one database). pg_cron 1.4
(Debian's) runs jobs at minute granularity at best, so the test does not wait for one to fire: it runs the job's
own command, as pg_cron would, and reads what the compat ``net.http_post`` recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncsim.errors import ConfigError, InvalidInput
from syncsim.stores import open_store
from syncsim.stores.cron import JOB_NAME, SECRET_NAME, cron_expression, install_tick_schedule, remove_tick_schedule
from syncsim.testing.postgres import TemporaryPostgres

pytestmark = pytest.mark.postgres

CRON_DB = "syncsim_cron"
SECRET = "tick-secret-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def cron_url() -> Iterator[str]:
    """A cluster of this module's own, with pg_cron preloaded and scheduling in ``syncsim_cron``, migrated."""
    library = Path("/usr/lib/postgresql").glob("*/lib/pg_cron.so")
    if not any(library):
        pytest.fail("pg_cron is not installed: run scripts/ensure-postgres.sh (apt: postgresql-NN-cron)")
    server = TemporaryPostgres(
        use_env=False, settings={"shared_preload_libraries": "'pg_cron'", "cron.database_name": f"'{CRON_DB}'"}
    )
    server.start()
    try:
        url = server.create_database(CRON_DB)

        async def migrate() -> None:
            store = open_store(url)
            await store.migrate()
            await store.close()

        asyncio.run(migrate())
        yield url
    finally:
        server.stop()


def _jobs(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("select jobname, schedule, command from cron.job order by jobid").fetchall()


def test_the_schedule_is_created_replaced_and_removed_with_its_secret_in_vault(cron_url: str) -> None:
    first = asyncio.run(install_tick_schedule(cron_url, tick_url="https://app.example/api/cron/tick", secret=SECRET))
    assert first.schedule == "* * * * *"
    [(name, schedule, command)] = _jobs(cron_url)
    assert (name, schedule) == (JOB_NAME, "* * * * *")
    assert "https://app.example/api/cron/tick" in command and SECRET not in command and SECRET_NAME in command
    # Installed again: the same one job, with the new schedule, URL and secret.
    asyncio.run(
        install_tick_schedule(cron_url, tick_url="https://other.example/api/cron/tick", secret=SECRET + "2", every="5m")
    )
    [(name, schedule, command)] = _jobs(cron_url)
    assert (name, schedule) == (JOB_NAME, "*/5 * * * *") and "other.example" in command
    with psycopg.connect(cron_url) as conn:
        secrets = conn.execute("select decrypted_secret from vault.decrypted_secrets where name = %s", (SECRET_NAME,))
        assert [row[0] for row in secrets] == [SECRET + "2"]
    assert asyncio.run(remove_tick_schedule(cron_url)) is True
    assert _jobs(cron_url) == []
    assert asyncio.run(remove_tick_schedule(cron_url)) is False
    with psycopg.connect(cron_url) as conn:
        assert conn.execute("select count(*) from vault.secrets").fetchone() == (0,)


def test_the_jobs_command_posts_the_tick_with_the_bearer_read_from_vault(cron_url: str) -> None:
    asyncio.run(install_tick_schedule(cron_url, tick_url="https://app.example/api/cron/tick", secret=SECRET))
    [(_, _, command)] = _jobs(cron_url)
    with psycopg.connect(cron_url, autocommit=True) as conn:
        conn.execute(command)  # what pg_cron runs every minute
        url, headers = conn.execute(
            "select url, headers from net.http_request_queue order by id desc limit 1"
        ).fetchone()
    assert url == "https://app.example/api/cron/tick"
    assert headers["Authorization"] == f"Bearer {SECRET}"
    asyncio.run(remove_tick_schedule(cron_url))


@pytest.mark.parametrize(
    ("every", "expression"),
    [("1m", "* * * * *"), ("5m", "*/5 * * * *"), ("30s", "30 seconds"), ("1h", "0 * * * *"), ("6h", "0 */6 * * *")],
)
def test_every_is_a_cron_expression(every: str, expression: str) -> None:
    assert cron_expression(every) == expression


@pytest.mark.parametrize("every", ["7m", "0m", "90s", "soon", "5d"])
def test_a_bad_every_is_a_clear_error(every: str) -> None:
    with pytest.raises(InvalidInput, match="--every"):
        cron_expression(every)


def test_no_secret_and_no_pg_cron_are_clear_errors(pg_url: str) -> None:
    with pytest.raises(ConfigError, match="CRON_SECRET"):
        asyncio.run(install_tick_schedule(pg_url, tick_url="https://app.example/api/cron/tick", secret=""))
    # The shared test cluster has no pg_cron preloaded.
    with pytest.raises(ConfigError, match="pg_cron is not available"):
        asyncio.run(install_tick_schedule(pg_url, tick_url="https://app.example/api/cron/tick", secret=SECRET))


async def test_what_the_job_records_reaches_the_tick_and_jobs_continue(cron_url: str) -> None:
    """The whole free-tier loop but for pg_cron's clock: the scheduled command records its POST (pg_net's stand-in
    here), the request is forwarded to the app as pg_net would send it, and due jobs are continued."""
    import uuid

    import httpx

    from syncsim.jobs.model import JobStatus
    from tests.support.api import CRON_SECRET, ApiHarness

    store = open_store(cron_url)
    api = ApiHarness(store, strategy="resumable", demo=True)
    jobs = [(await api.runner.submit(uuid.uuid4(), {"steps": 1, "step_s": 0.0}, type="demo"))[0] for _ in range(3)]
    await install_tick_schedule(cron_url, tick_url="https://app.example/api/cron/tick", secret=CRON_SECRET)
    [(_, _, command)] = _jobs(cron_url)
    async with await psycopg.AsyncConnection.connect(cron_url, autocommit=True) as conn:
        await conn.execute(command)  # pg_cron's minute has come
        cur = await conn.execute("select url, headers, body from net.http_request_queue order by id desc limit 1")
        url, headers, body = await cur.fetchone()  # type: ignore[misc]
    assert url.endswith("/api/cron/tick")
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as client:
        answer = await client.post(url, headers=headers, json=body)
    assert answer.status_code == 200 and answer.json()["completed"] == 3, answer.text
    for job in jobs:
        done = await store.get_job(job.id)
        assert done is not None and done.status is JobStatus.COMPLETED
    await remove_tick_schedule(cron_url)
    await store.close()
