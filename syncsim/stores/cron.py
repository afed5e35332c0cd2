"""The tick's schedule inside the database: Supabase Cron (pg_cron + pg_net), free on Supabase's free tier.

:func:`install_tick_schedule` makes the database itself call ``POST /api/cron/tick`` every minute (or as
``every`` says): a ``cron.schedule`` job whose command is ``net.http_post(...)``. The bearer secret is kept in
Supabase Vault (``vault.create_secret``) under :data:`SECRET_NAME` and read by the command when it runs: it is
never part of the job's text, of a log line or of an error. Installing again replaces the job and the secret;
:func:`remove_tick_schedule` removes both.

pg_cron schedules jobs in one database, ``cron.database_name`` (``postgres`` on Supabase): connect to that one.
Schedules finer than a minute (``30s``) need pg_cron 1.5 or newer (Supabase has it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from syncsim.errors import ConfigError, InvalidInput, StoreError
from syncsim.stores.urls import redact_url

__all__ = [
    "JOB_NAME",
    "SECRET_NAME",
    "TickSchedule",
    "cron_expression",
    "install_tick_schedule",
    "remove_tick_schedule",
]

#: The pg_cron job's name: one per database, so installing again replaces it.
JOB_NAME = "syncsim-tick"
#: The Vault secret holding the tick's bearer secret (``CRON_SECRET``).
SECRET_NAME = "syncsim_cron_secret"
#: How long pg_net waits for the tick's answer (milliseconds): the tick answers within its own deadline.
HTTP_TIMEOUT_MS = 60_000

_EVERY = re.compile(r"^\s*(\d+)\s*(s|m|h)\s*$")
# The command pg_cron runs: the secret is looked up in Vault at run time; only the URL is in the text.
_COMMAND = """select net.http_post(
  url := {url},
  headers := jsonb_build_object(
    'Content-Type', 'application/json',
    'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = {secret})
  ),
  body := '{{}}'::jsonb,
  timeout_milliseconds := {timeout}
)"""


@dataclass(frozen=True)
class TickSchedule:
    """The installed schedule: pg_cron's job id and name, its cron expression, and the URL it calls."""

    job_id: int
    name: str
    schedule: str
    url: str


def cron_expression(every: str) -> str:
    """``1m`` → ``* * * * *``, ``5m`` → ``*/5 * * * *``, ``1h`` → ``0 * * * *``, ``30s`` → ``30 seconds``."""
    match = _EVERY.match(every)
    if match is None:
        raise InvalidInput(f"--every must be like 30s, 1m, 5m or 1h, got {every!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if amount < 1:
        raise InvalidInput(f"--every must be at least 1{unit}, got {every!r}")
    if unit == "s":
        if amount > 59:
            raise InvalidInput("--every in seconds must be 1s..59s; use minutes beyond that")
        return f"{amount} seconds"
    if unit == "m":
        if amount == 1:
            return "* * * * *"
        if 60 % amount:
            raise InvalidInput(f"--every {every}: minutes must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)")
        return f"*/{amount} * * * *"
    if 24 % amount:
        raise InvalidInput(f"--every {every}: hours must divide a day")
    return "0 * * * *" if amount == 1 else f"0 */{amount} * * *"


def _quote(text: str) -> str:
    """A SQL string literal (the URL is the only value written into the job's text)."""
    return "'" + text.replace("'", "''") + "'"


async def install_tick_schedule(database_url: str, *, tick_url: str, secret: str, every: str = "1m") -> TickSchedule:
    """Create or replace the tick's pg_cron job and its Vault secret in the database at ``database_url``."""
    if not tick_url.startswith(("https://", "http://")):
        raise InvalidInput(f"the tick URL must be http(s)://…/api/cron/tick, got {tick_url[:80]!r}")
    if not secret:
        raise ConfigError("no tick secret: set CRON_SECRET (the bearer the tick route checks)")
    schedule = cron_expression(every)
    command = _COMMAND.format(url=_quote(tick_url), secret=_quote(SECRET_NAME), timeout=HTTP_TIMEOUT_MS)
    async with await _connect(database_url) as conn:
        await _require_extensions(conn, database_url)
        async with conn.transaction():
            cur = await conn.execute("select id from vault.decrypted_secrets where name = %s", (SECRET_NAME,))
            row = await cur.fetchone()
            if row is None:
                await conn.execute("select vault.create_secret(%s, %s)", (secret, SECRET_NAME))
            else:
                await conn.execute("select vault.update_secret(%s, %s)", (row[0], secret))
            cur = await conn.execute("select cron.schedule(%s, %s, %s)", (JOB_NAME, schedule, command))
            job = await cur.fetchone()
    assert job is not None
    return TickSchedule(job_id=int(job[0]), name=JOB_NAME, schedule=schedule, url=tick_url)


async def remove_tick_schedule(database_url: str) -> bool:
    """Remove the tick's pg_cron job and its Vault secret; ``False`` if there was no job."""
    async with await _connect(database_url) as conn:
        await _require_extensions(conn, database_url)
        async with conn.transaction():
            cur = await conn.execute("select jobid from cron.job where jobname = %s", (JOB_NAME,))
            found = await cur.fetchone() is not None
            if found:
                await conn.execute("select cron.unschedule(%s)", (JOB_NAME,))
            await conn.execute("delete from vault.secrets where name = %s", (SECRET_NAME,))
    return found


async def tick_schedule(database_url: str) -> TickSchedule | None:
    """The installed schedule, if any."""
    async with await _connect(database_url) as conn:
        await _require_extensions(conn, database_url)
        cur = await conn.execute("select jobid, schedule, command from cron.job where jobname = %s", (JOB_NAME,))
        row = await cur.fetchone()
    if row is None:
        return None
    url = re.search(r"url := '((?:[^']|'')*)'", row[2])
    return TickSchedule(
        job_id=int(row[0]), name=JOB_NAME, schedule=row[1], url=url.group(1).replace("''", "'") if url else ""
    )


async def _connect(database_url: str) -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("scheduling the tick needs psycopg: pip install 'syncsim[postgres]'") from None
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"the tick's schedule lives in PostgreSQL: use a postgresql:// URL, not {redact_url(database_url)!r}"
        )
    try:
        return await psycopg.AsyncConnection.connect(database_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {redact_url(database_url)}: {_first_line(exc)}") from None


async def _require_extensions(conn: Any, database_url: str) -> None:
    """pg_cron (and pg_net, or the compat migration's stand-in) and Vault, with a clear error if missing."""
    import psycopg

    try:
        await conn.execute("create extension if not exists pg_cron")
    except psycopg.Error as exc:
        raise ConfigError(
            f"pg_cron is not available in {redact_url(database_url)}: {_first_line(exc)} "
            "(on Supabase: enable the pg_cron extension; elsewhere: install it, add it to shared_preload_libraries, "
            "and connect to the database cron.database_name names)"
        ) from None
    cur = await conn.execute(
        "select to_regprocedure('net.http_post(text,jsonb,jsonb,jsonb,integer)') is not null, "
        "to_regclass('vault.decrypted_secrets') is not null"
    )
    has_net, has_vault = await cur.fetchone()
    if not has_net:
        try:
            await conn.execute("create extension if not exists pg_net")
        except psycopg.Error as exc:
            raise ConfigError(
                f"pg_net is not available in {redact_url(database_url)}: {_first_line(exc)} "
                "(on Supabase: enable pg_net; on plain PostgreSQL run `syncsim migrate` first)"
            ) from None
    if not has_vault:
        raise ConfigError(
            f"Vault is not available in {redact_url(database_url)} (on Supabase: enable supabase_vault; on plain "
            "PostgreSQL run `syncsim migrate` first)"
        )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
