"""The Store protocol over Supabase's REST API (PostgREST), through supabase-py's async client.

``supabase://<project-host>`` → ``https://<project-host>`` (``supabase://abcd.supabase.co``; a bare project
ref ``supabase://abcd`` means ``abcd.supabase.co``; ``supabase://127.0.0.1:54321?scheme=http`` for a local
stack). The key comes from ``$SUPABASE_KEY``: the service-role key for the runner, which bypasses RLS and
checks ``user_id`` itself. :meth:`SupabaseStore.for_user` makes a store that reads on a user's behalf with
the user's JWT, so row-level security applies.

Plain table operations go through PostgREST (``sync_jobs``, ``strava_tokens``, ``strava_activities``); the
job state machine is the SQL functions of migration ``0005_functions``, called by RPC, so both PostgreSQL
stores share one implementation of claiming, leases and retries. Every time is the caller's clock, sent as
ISO 8601 UTC. Every PostgREST or HTTP error leaves as one line without the key or JWT: a refused value is
:class:`~syncsim.errors.InvalidInput`; a store that cannot answer now (no connection, a timeout, PostgREST's
"database unreachable", a gateway's 408, 429 or 5xx page) a :class:`~syncsim.errors.StoreUnavailable`, which
workers wait out; anything else a :class:`~syncsim.errors.StoreError`. A write that
references an unknown user adds it where the database allows (``syncsim_ensure_user``) and is tried once more.
Migrations cannot run over REST: apply them with ``syncsim migrate`` on the project's ``postgresql://``
connection string; ``migrate()`` here only checks that the newest one is there.

The HTTP client is injectable (``http_client=`` or ``transport=``): the tests route it to a PostgREST-compatible
transport that executes PostgREST's API on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from postgrest import APIError, APIResponse
from postgrest.types import CountMethod, ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from syncsim.clock import to_datetime
from syncsim.errors import ConfigError, InvalidInput, StoreError, StoreUnavailable
from syncsim.jobs.model import Job, JobStatus, TypePause, job_from_mapping
from syncsim.stores.urls import redact_url
from syncsim.strava.models import Activity, ActivityFields, StoredActivity, StravaTokens
from syncsim.strava.ratelimit import SlotRequest

__all__ = ["CREATE_RACE_RETRIES", "KEY_ENV", "SupabaseStore"]

#: The environment variable holding the project's API key (service-role key for the runner).
KEY_ENV = "SUPABASE_KEY"
#: Seconds a REST call may take in all (connecting, postgrest-py's own retries, the answer) before it is
#: ``StoreUnavailable``: half the hobby plan's 10 s, as the postgres store's connect timeout, so a request meeting
#: a hanging Supabase is answered 503 (try again) before its invocation is killed at 10 s (504). The store URL's
#: ``?timeout=SECONDS`` changes it.
TIMEOUT_S = 5.0
#: How often create_job retries when the user's active job finishes between a refused insert and the select.
CREATE_RACE_RETRIES = 5
#: The newest migration, whose columns :meth:`SupabaseStore.migrate` reads to tell whether the database has it
#: (REST cannot read ``syncsim_migrations``, which no API role may see). A new migration changes both this and
#: ``_NEWEST_MIGRATION_PROBE``; a test compares this name with the newest migration syncsim ships.
NEWEST_MIGRATION = "0018_strava_rate_limits"
# Read, so the check changes nothing: the table and the columns that migration added (a missing column is 42703).
_NEWEST_MIGRATION_PROBE = ("strava_rate_slots", "limit_15min,limit_daily")

# PostgREST codes of input the store refuses (bad value, check constraint), as opposed to a failing store.
_INVALID_INPUT_CODES = {"22P02", "22007", "22008", "22023", "23514", "23502", "PGRST102"}
# 23503: a foreign key to auth.users; 409 is PostgREST's status for both unique and foreign-key violations.
_UNIQUE, _FOREIGN_KEY = "23505", "23503"
# PostgREST's codes for a database it cannot reach (or no pool connection in time): the store is unavailable.
_UNAVAILABLE_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
# SQLSTATEs of a server going away or not there yet (admin_shutdown, crash_shutdown, cannot_connect_now), as the
# postgres store reads them; class 08 (connection exceptions) too.
_SHUTDOWN_STATES = {"57P01", "57P02", "57P03"}
# HTTP statuses of a store that cannot answer now, as opposed to one refusing the request: a timeout, a rate
# limit, and every 5xx (Supabase's gateway answers 502/503/504 while PostgREST restarts, Cloudflare 520-527).
_UNAVAILABLE_STATUSES = {408, 429, *range(500, 600)}
# The longest ``details`` of a PostgREST error a message keeps (characters): a message is one short line.
_DETAILS_CHARS = 200

T = TypeVar("T")


# What a call's answer must be once postgrest-py has read it. postgrest-py hands a body that is not JSON (a
# proxy's or captive portal's page under a 200, a body cut short) on as its text instead of failing, so without
# these checks such an answer reached the callers as a string and failed there (TypeError, IndexError).
def _rows(data: Any) -> bool:
    return isinstance(data, list)


def _flag(data: Any) -> bool:
    return data is None or isinstance(data, bool)


def _number(data: Any) -> bool:
    return data is None or (isinstance(data, int) and not isinstance(data, bool))


def _nothing(data: Any) -> bool:
    """A ``void`` function's answer: ``null``, or no body at all (which postgrest-py reads as ``[]``)."""
    return data is None or data == [] or data == ""


def _spent_limit(data: Any) -> bool:
    return data is None or data in {"day", "window"}


# Each RPC's answer by the function's SQL return type: ``setof``/``table`` → rows, ``boolean`` → a flag,
# ``integer``/``bigint`` → a number, ``void`` → nothing; ``syncsim_take_rate_slot`` names the spent limit.
_RPC_ANSWERS: dict[str, Callable[[Any], bool]] = {
    "syncsim_claim_job": _rows,
    "syncsim_due_summary": _rows,
    "syncsim_users_to_reconcile": _rows,
    "syncsim_ensure_user": _flag,
    "syncsim_extend_lease": _flag,
    "syncsim_save_progress": _flag,
    "syncsim_complete_job": _flag,
    "syncsim_retry_job": _flag,
    "syncsim_reschedule_job": _flag,
    "syncsim_fail_job": _flag,
    "syncsim_reclaim_expired": _number,
    "syncsim_unserved_jobs": _number,
    "syncsim_take_event_quota": _number,
    "syncsim_pause_job_type": _nothing,
    "syncsim_clear_type_outage": _nothing,
    "syncsim_take_rate_slot": _spent_limit,
}


class _UniqueViolation(StoreError):
    """PostgREST's 409 for 23505 (the one-active-job index, a token's athlete id); handled where expected."""


class _UnknownUser(InvalidInput):
    """PostgREST's 409 for 23503: the user id is not in ``auth.users``."""


class _MissingObject(StoreError):
    """A table or function the call needs is not in the database (or not yet in PostgREST's schema cache)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        #: PostgREST's code and message, one line.
        self.reason = reason


_PAUSE_COLUMNS = "type,until,looks,reason,paused_at"


def _pause_from_row(row: dict[str, Any]) -> TypePause:
    return TypePause(
        type=row["type"],
        until=datetime.fromisoformat(row["until"]).timestamp(),
        looks=int(row["looks"]),
        reason=row["reason"],
        paused_at=datetime.fromisoformat(row["paused_at"]).timestamp(),
    )


def _iso(ts: float) -> str:
    """UTC epoch seconds → ISO 8601 UTC, as PostgREST expects timestamps."""
    return to_datetime(ts).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


_TOKEN_COLUMNS = "athlete_id,access_token,refresh_token,expires_at,scope"
_FIELD_COLUMNS = "name,sport_type,start_date,distance,moving_time,elapsed_time,total_elevation_gain"


def _header_safe(value: str) -> bool:
    """Whether ``value`` is all visible ASCII, as a token in an HTTP header must be."""
    return all("!" <= char <= "~" for char in value)


def _api_key(raw: str) -> str:
    """The key as HTTP headers can carry it: surrounding whitespace (a copy-paste's trailing newline) goes; inner
    whitespace, a control or a non-ASCII character is refused here, since httpx would otherwise fail the first
    request with an error that quotes the whole header, key and all. The message never shows the key."""
    key = raw.strip()
    if not _header_safe(key):
        raise ConfigError(
            f"{KEY_ENV} holds whitespace, a control or a non-ASCII character inside the key: copy the key again "
            "from the project's API settings"
        )
    return key


def _timeout(value: str | float, where: str) -> float:
    """``value`` as a finite number of seconds > 0, else a ConfigError naming ``where``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{where}: timeout must be a number of seconds > 0, got {str(value)[:40]!r}")
    return seconds


_URL_PARAMETERS = ("scheme", "timeout")


def _url_timeout(url: str) -> float | None:
    """The ``?timeout=SECONDS`` of a ``supabase://`` URL, if it has one."""
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get("timeout")
    return None if values is None else _timeout(values[-1], f"bad supabase URL {redact_url(url)!r}")


def _project_url(url: str) -> str:
    """``supabase://host[:port][/path][?scheme=http][&timeout=SECONDS]`` → the project's HTTP(S) base URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "supabase" or not parts.hostname:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: use supabase://<project-ref>.supabase.co")
    unknown = sorted(set(parse_qs(parts.query, keep_blank_values=True)) - set(_URL_PARAMETERS))
    if unknown:  # a misspelt option would otherwise be ignored without a word
        raise ConfigError(
            f"bad supabase URL {redact_url(url)!r}: unknown parameter(s) {', '.join(unknown)}: "
            f"use {', '.join(_URL_PARAMETERS)}"
        )
    scheme = (parse_qs(parts.query).get("scheme") or ["https"])[0].lower()
    if scheme not in {"http", "https"}:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: scheme must be http or https")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: the port is not a number") from None
    host = parts.hostname
    if "." not in host and host != "localhost" and port is None:
        host = f"{host}.supabase.co"  # a bare project ref
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class SupabaseStore:
    """The Store protocol over Supabase REST with supabase-py's :class:`~supabase.AsyncClient`.

    ``url`` is safe to print (it never holds the key). Pass ``http_client`` (owned by the caller) or
    ``transport`` (wrapped in a client this store owns and closes) to route requests elsewhere. With
    ``user_jwt`` every request carries the user's token in ``Authorization``, so RLS applies.
    """

    def __init__(
        self,
        project_url: str,
        key: str,
        *,
        url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_jwt: str | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        key = _api_key(key)
        if not key:
            raise ConfigError(f"supabase store needs an API key: set {KEY_ENV}")
        if user_jwt is not None and not _header_safe(user_jwt):  # httpx would quote it whole in its error
            raise InvalidInput("supabase store: the user's JWT holds whitespace, a control or a non-ASCII character")
        if http_client is not None and transport is not None:
            raise ConfigError("supabase store: pass http_client or transport, not both")
        self._timeout = _timeout(timeout, "supabase store")
        self.url = redact_url(url or f"supabase://{urlsplit(project_url).netloc}")
        #: The project's HTTP(S) base URL (no secret in it).
        self.project_url = project_url
        self._key = key
        self._user_jwt = user_jwt
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self._timeout)
        self._client: AsyncClient | None = None
        self._client_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, key: str | None = None, **options: Any) -> SupabaseStore:
        """``supabase://<project-host>``; the key is ``key`` or ``$SUPABASE_KEY``. ``options``:
        ``http_client``, ``transport``, ``user_jwt``, ``timeout`` (seconds; else the URL's ``?timeout=``, else
        :data:`TIMEOUT_S`)."""
        allowed = {"http_client", "transport", "user_jwt", "timeout"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown supabase store option(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}"
            )
        project_url = _project_url(url)
        if "timeout" not in options and (url_timeout := _url_timeout(url)) is not None:
            options["timeout"] = url_timeout
        key = (key or os.environ.get(KEY_ENV, "")).strip()
        if not key:
            raise ConfigError(f"supabase store {redact_url(url)}: {KEY_ENV} is not set (the project's API key)")
        return cls(project_url, key, url=url, **options)

    def for_user(self, jwt: str) -> SupabaseStore:
        """A store that acts as the user whose JWT this is (RLS applies); it shares this store's HTTP client."""
        if not jwt:
            raise InvalidInput("for_user needs the user's JWT")
        return SupabaseStore(
            self.project_url, self._key, url=self.url, http_client=self._http, user_jwt=jwt, timeout=self._timeout
        )

    def __repr__(self) -> str:
        return f"SupabaseStore({self.url!r}{', as user' if self._user_jwt else ''})"

    # -- plumbing ------------------------------------------------------------------------------------------
    async def _supabase(self) -> AsyncClient:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    headers = {"Authorization": f"Bearer {self._user_jwt}"} if self._user_jwt else {}
                    options = AsyncClientOptions(
                        httpx_client=self._http,
                        headers=headers,
                        auto_refresh_token=False,
                        persist_session=False,
                    )
                    self._client = await acreate_client(self.project_url, self._key, options=options)
        return self._client

    def _one_line(self, text: str) -> str:
        line = " ".join(str(text).split()) or "unknown error"
        for secret in (self._key, self._user_jwt):
            if secret:
                # Also as bytes' repr (b'…'), the form httpx and h11 quote a header value in.
                for form in (repr(secret.encode(errors="backslashreplace")), secret):
                    line = line.replace(form, "***")
        return line

    def _error(self, exc: APIError, doing: str) -> Exception:
        code = exc.code or "HTTP"
        # postgrest-py reads an answer that is not PostgREST's JSON (a gateway's or proxy's page) as an error
        # whose code is the HTTP status and whose details are the whole body: the page says nothing more.
        http_status = int(code) if len(code) == 3 and code.isdigit() else None
        details = "" if http_status is not None or not exc.details else self._one_line(str(exc.details))
        if len(details) > _DETAILS_CHARS:
            details = details[: _DETAILS_CHARS - 1] + "…"
        message = self._one_line(f"{code} {exc.message or ''}" + (f" ({details})" if details else ""))
        if http_status is not None:
            message += " (the answer held no PostgREST error: a gateway's or a proxy's page, or no body)"
        if code == _UNIQUE:
            return _UniqueViolation(f"supabase store {self.url}: {doing} failed: {message}")
        if code in _INVALID_INPUT_CODES:
            return InvalidInput(f"{doing}: {message}")
        if (
            code in _UNAVAILABLE_CODES
            or http_status in _UNAVAILABLE_STATUSES
            or (len(code) == 5 and code.startswith("08"))
            or code in _SHUTDOWN_STATES
        ):
            return StoreUnavailable(f"supabase store {self.url}: {doing} failed: {message}")
        if code in {"42P01", "42703", "42883", "PGRST202", "PGRST205"}:
            hint = " (is the database migrated? run `syncsim migrate` on its postgresql:// URL)"
            return _MissingObject(f"supabase store {self.url}: {doing} failed: {message}{hint}", reason=message)
        return StoreError(f"supabase store {self.url}: {doing} failed: {message}")

    async def _run(self, doing: str, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run one REST call; PostgREST and HTTP errors leave as one-line errors without the key."""
        client = await self._supabase()
        try:
            # httpx's timeouts bound each phase of one request, not a call: postgrest-py retries some (sleeping
            # 1, 2, 4 s between), and a caller's http_client has timeouts of its own.
            async with asyncio.timeout(self._timeout):
                result = await call(client)
        except TimeoutError:
            raise StoreUnavailable(
                f"supabase store {self.url}: {doing} failed: no answer within {self._timeout:g} s (?timeout= in the "
                "store URL changes it)"
            ) from None
        except APIError as exc:
            if exc.code == _FOREIGN_KEY:
                raise _UnknownUser(f"{doing}: the user does not exist in auth.users") from None
            raise self._error(exc, doing) from None
        except httpx.LocalProtocolError:
            # Refused before sending (an illegal header value): its text quotes the header, which may be the key.
            raise StoreError(
                f"supabase store {self.url}: {doing} failed: the request could not be sent (an invalid header value)"
            ) from None
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(
                f"supabase store {self.url}: {doing} failed: {type(exc).__name__}: no answer in time (the store's "
                f"timeout is {self._timeout:g} s; ?timeout= in the store URL changes it)"
            ) from None
        except httpx.TransportError as exc:
            raise StoreUnavailable(
                f"supabase store {self.url}: {doing} failed: {type(exc).__name__} {self._one_line(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:
            raise StoreError(
                f"supabase store {self.url}: {doing} failed: {type(exc).__name__} {self._one_line(str(exc))}"
            ) from None
        # A table's answer is always an array of objects (empty for return=minimal): anything else is not
        # PostgREST's. RPC answers are checked by _rpc, which knows each function's type.
        if isinstance(result, APIResponse) and not (
            isinstance(result.data, list) and all(isinstance(row, dict) for row in result.data)
        ):
            raise self._not_json(doing)
        return result

    def _not_json(self, doing: str) -> StoreUnavailable:
        """An answer PostgREST would not give: a proxy's page, or a body cut short. What the call did is unknown,
        as with a connection cut mid-call, and the next call may well be answered."""
        return StoreUnavailable(
            f"supabase store {self.url}: {doing} failed: the store answered with a body that is not JSON of the "
            "expected shape (a proxy's page, or a body cut short)"
        )

    async def _rpc(self, doing: str, function: str, params: dict[str, Any]) -> Any:
        async def call(client: AsyncClient) -> Any:
            return (await client.rpc(function, params).execute()).data

        data = await self._run(doing, call)
        if not _RPC_ANSWERS[function](data):
            raise self._not_json(doing)
        return data

    async def _with_user(self, doing: str, user_id: uuid.UUID, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run a write that references ``auth.users``; on a missing user, add it where the database allows
        (plain PostgreSQL's compat table, via ``syncsim_ensure_user``) and try once more."""
        try:
            return await self._run(doing, call)
        except _UnknownUser:
            pass
        if not await self._rpc(f"{doing}: ensure user", "syncsim_ensure_user", {"p_user_id": str(user_id)}):
            raise InvalidInput(f"{doing}: the user does not exist in auth.users")
        return await self._run(doing, call)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Check that the database has every migration this syncsim ships, and return ``[]``: REST cannot run
        DDL. It checks the first migration's ``sync_jobs`` table and the columns of :data:`NEWEST_MIGRATION`
        (migrations are applied in order). A database that lacks either, or that cannot be checked, is a
        one-line :class:`~syncsim.errors.StoreError` saying to run ``syncsim migrate --store postgresql://…``
        with the project's connection string; a store that cannot answer now, a ``StoreUnavailable``."""
        run_it = (
            "REST cannot apply migrations: run `syncsim migrate --store postgresql://…` with the project's "
            "connection string (the database's direct URL)"
        )

        async def base(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").select("id").limit(1).execute()

        async def newest(client: AsyncClient) -> Any:
            table, columns = _NEWEST_MIGRATION_PROBE
            return await client.table(table).select(columns).limit(1).execute()

        try:
            await self._run("check the sync_jobs table", base)
            await self._run(f"check migration {NEWEST_MIGRATION}", newest)
        except StoreUnavailable:
            raise
        except _MissingObject as exc:
            raise StoreError(
                f"supabase store {self.url}: the database lacks migration {NEWEST_MIGRATION} or earlier ones "
                f"({exc.reason}): {run_it}"
            ) from None
        except (StoreError, InvalidInput) as exc:  # a key without the right to look, a refused call
            reason = str(exc).removeprefix(f"supabase store {self.url}: ")
            raise StoreError(
                f"supabase store {self.url}: cannot tell whether the database has migration {NEWEST_MIGRATION} "
                f"({reason}): {run_it}"
            ) from None
        return []

    async def close(self) -> None:
        """Close the HTTP client if this store created it."""
        self._client = None
        if self._owns_http:
            await self._http.aclose()

    # -- jobs ----------------------------------------------------------------------------------------------
    async def create_job(
        self, *, user_id: uuid.UUID, type: str, payload: dict[str, Any], max_attempts: int, now: float
    ) -> tuple[Job, bool]:
        """Insert a pending job; a 409 on the one-active-job index returns the user's active job instead."""
        if not isinstance(payload, dict):
            raise InvalidInput(f"job payload must be a JSON object, got {payload.__class__.__name__}")
        if max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
        at = _iso(now)
        row = {
            "user_id": str(user_id),
            "type": type,
            "status": JobStatus.PENDING.value,
            "payload": payload,
            "created_at": at,
            "attempts": 0,
            "max_attempts": max_attempts,
            "next_attempt_at": at,
            "progress": {},
            "runs": 0,
            "updated_at": at,
        }
        doing = f"create {type} job for user {user_id}"

        async def insert(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").insert(row, returning=ReturnMethod.representation).execute()

        async def active(client: AsyncClient) -> Any:
            return (
                await client.table("sync_jobs")
                .select("*")
                .eq("user_id", str(user_id))
                .eq("type", type)
                .in_("status", ["pending", "running"])
                .execute()
            )

        for _ in range(CREATE_RACE_RETRIES):
            try:
                created = await self._with_user(doing, user_id, insert)
                if not created.data:  # return=representation always answers the row: an empty body is not PostgREST
                    raise self._not_json(doing)
                return job_from_mapping(created.data[0]), True
            except _UniqueViolation:
                pass
            found = await self._run(doing, active)
            if found.data:
                return job_from_mapping(found.data[0]), False
        raise StoreError(f"supabase store {self.url}: {doing} kept racing with the user's active job")

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        async def get(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").select("*").eq("id", str(job_id)).limit(1).execute()

        rows = (await self._run(f"get job {job_id}", get)).data
        return job_from_mapping(rows[0]) if rows else None

    async def list_jobs(
        self, *, user_id: uuid.UUID | None = None, status: JobStatus | None = None, limit: int = 20
    ) -> list[Job]:
        """Newest first (``created_at``, then ``updated_at``); a user store sees only its own jobs (RLS)."""

        async def select(client: AsyncClient) -> Any:
            query = client.table("sync_jobs").select("*")
            if user_id is not None:
                query = query.eq("user_id", str(user_id))
            if status is not None:
                query = query.eq("status", str(status))
            return (
                await query.order("created_at", desc=True)
                .order("updated_at", desc=True)
                .order("id")
                .limit(limit)
                .execute()
            )

        return [job_from_mapping(r) for r in (await self._run("list jobs", select)).data]

    async def claim_job(
        self,
        *,
        worker_id: str,
        now: float,
        lease_s: float,
        job_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        """RPC ``syncsim_claim_job``: reclaim expired leases, then lease one due job (``SKIP LOCKED``)."""
        rows = await self._rpc(
            "claim job",
            "syncsim_claim_job",
            {
                "p_worker": worker_id,
                "p_now": _iso(now),
                "p_lease_s": lease_s,
                "p_job_id": None if job_id is None else str(job_id),
                "p_types": list(types) if types else None,
            },
        )
        return job_from_mapping(rows[0]) if rows else None

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_now": _iso(now), "p_lease_s": lease_s}
        return bool(await self._rpc(f"extend lease of job {job_id}", "syncsim_extend_lease", params))

    async def save_progress(
        self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float, lease_s: float
    ) -> bool:
        params = {
            "p_job_id": str(job_id),
            "p_worker": worker_id,
            "p_progress": progress,
            "p_now": _iso(now),
            "p_lease_s": lease_s,
        }
        return bool(await self._rpc(f"save progress of job {job_id}", "syncsim_save_progress", params))

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_result": result, "p_now": _iso(now)}
        return bool(await self._rpc(f"complete job {job_id}", "syncsim_complete_job", params))

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        params = {
            "p_job_id": str(job_id),
            "p_worker": worker_id,
            "p_error": error,
            "p_retry_at": _iso(retry_at),
            "p_now": _iso(now),
        }
        return bool(await self._rpc(f"retry job {job_id}", "syncsim_retry_job", params))

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        params = {
            "p_job_id": str(job_id),
            "p_worker": worker_id,
            "p_at": _iso(at),
            "p_reason": reason,
            "p_now": _iso(now),
        }
        return bool(await self._rpc(f"reschedule job {job_id}", "syncsim_reschedule_job", params))

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_error": error, "p_now": _iso(now)}
        return bool(await self._rpc(f"fail job {job_id}", "syncsim_fail_job", params))

    async def reclaim_expired(self, *, now: float) -> int:
        return int(await self._rpc("reclaim expired leases", "syncsim_reclaim_expired", {"p_now": _iso(now)}) or 0)

    async def cancel_job(self, job_id: uuid.UUID, *, user_id: uuid.UUID, reason: str, now: float) -> bool:
        at = _iso(now)
        change = {
            "status": "failed",
            "error": reason,
            "completed_at": at,
            "locked_by": None,
            "locked_until": None,
            "updated_at": at,
        }

        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("sync_jobs")
                .update(change, count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("id", str(job_id))
                .eq("user_id", str(user_id))
                .in_("status", ["pending", "running"])
                .execute()
            )

        return (await self._run(f"cancel job {job_id}", update)).count == 1

    async def due_summary(self, *, now: float, limit: int) -> tuple[int, float | None]:
        rows = await self._rpc("count due jobs", "syncsim_due_summary", {"p_now": _iso(now), "p_limit": limit})
        row: dict[str, Any] = rows[0] if isinstance(rows, list) and rows else {"due": 0, "next_due": None}
        next_due = row.get("next_due")
        return int(row.get("due") or 0), None if next_due is None else datetime.fromisoformat(next_due).timestamp()

    async def unserved_jobs(self, *, limit: int) -> int:
        value = await self._rpc("count unserved jobs", "syncsim_unserved_jobs", {"p_limit": limit})
        return int(value or 0)

    async def pause_job_type(self, type: str, *, until: float, looks: int, reason: str, now: float) -> None:
        params = {"p_type": type, "p_until": _iso(until), "p_looks": looks, "p_reason": reason, "p_now": _iso(now)}
        await self._rpc(f"pause jobs of type {type}", "syncsim_pause_job_type", params)

    async def job_type_pause(self, type: str) -> TypePause | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("job_type_pauses").select(_PAUSE_COLUMNS).eq("type", type).limit(1).execute()

        rows = (await self._run(f"read the pause of type {type}", select)).data
        return _pause_from_row(rows[0]) if rows else None

    async def type_pauses(self, *, now: float) -> list[TypePause]:
        async def select(client: AsyncClient) -> Any:
            return (
                await client.table("job_type_pauses")
                .select(_PAUSE_COLUMNS)
                .gt("until", _iso(now))
                .order("type")
                .execute()
            )

        return [_pause_from_row(row) for row in (await self._run("read the running pauses", select)).data]

    async def clear_type_outage(self, type: str, *, now: float) -> None:
        await self._rpc(
            f"clear the outage of type {type}", "syncsim_clear_type_outage", {"p_type": type, "p_now": _iso(now)}
        )

    async def take_rate_slot(self, slot: SlotRequest) -> str | None:
        """RPC ``syncsim_take_rate_slot``: concurrent callers queue on the rows' locks."""
        params = {
            "p_read": slot.read,
            "p_window": _iso(slot.window_start),
            "p_day": _iso(slot.day_start),
            "p_overall_15min": slot.overall_limits[0],
            "p_overall_daily": slot.overall_limits[1],
            "p_read_15min": slot.read_limits[0],
            "p_read_daily": slot.read_limits[1],
            "p_assumed": slot.assumed,
        }
        spent = await self._rpc("take a Strava rate-limit slot", "syncsim_take_rate_slot", params)
        return str(spent) if spent else None

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        at = _iso(now)

        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("sync_jobs")
                .update(
                    {"status": "failed", "error": reason, "completed_at": at, "updated_at": at},
                    count=CountMethod.exact,
                    returning=ReturnMethod.minimal,
                )
                .eq("user_id", str(user_id))
                .eq("status", "pending")
                .execute()
            )

        return (await self._run(f"cancel jobs of user {user_id}", update)).count or 0

    # -- Strava data ---------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("strava_tokens").select(_TOKEN_COLUMNS).eq("user_id", str(user_id)).execute()

        rows = (await self._run(f"get tokens of user {user_id}", select)).data
        if not rows:
            return None
        row = rows[0]
        expires = _dt(row["expires_at"])
        assert expires is not None
        return StravaTokens(
            athlete_id=row["athlete_id"],
            access_token=row["access_token"],
            refresh_token=row["refresh_token"],
            expires_at=expires.timestamp(),
            scope=row["scope"],
        )

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None:
        row = {
            "user_id": str(user_id),
            "athlete_id": tokens.athlete_id,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": _iso(tokens.expires_at),
            "scope": tokens.scope,
            "updated_at": _iso(now),
        }

        async def upsert(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .upsert(row, on_conflict="user_id", returning=ReturnMethod.minimal)
                .execute()
            )

        try:
            await self._with_user(f"save tokens of user {user_id}", user_id, upsert)
        except _UniqueViolation:
            raise InvalidInput(f"Strava athlete {tokens.athlete_id} is already connected to another user") from None

    async def delete_tokens(self, user_id: uuid.UUID) -> bool:
        async def delete_events(client: AsyncClient) -> Any:
            return await client.table("strava_activity_events").delete().eq("user_id", str(user_id)).execute()

        # The events first: a failure between the two leaves the tokens, and deleting them again is safe.
        await self._run(f"delete webhook events of user {user_id}", delete_events)

        async def delete(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .execute()
            )

        return (await self._run(f"delete tokens of user {user_id}", delete)).count == 1

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("strava_tokens").select("user_id").eq("athlete_id", athlete_id).execute()

        rows = (await self._run(f"find user of athlete {athlete_id}", select)).data
        return uuid.UUID(rows[0]["user_id"]) if rows else None

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        """One ``POST`` per batch with ``Prefer: resolution=merge-duplicates`` on ``id``; returns the number of
        distinct ids written (a repeated id keeps its last occurrence, as one statement may not update a row
        twice)."""
        unique = {activity.id: activity for activity in activities}
        if not unique:
            return 0
        synced_at = _iso(now)
        rows = [
            {
                "id": a.id,
                "user_id": str(user_id),
                "athlete_id": a.athlete_id,
                "name": a.name,
                "sport_type": a.sport_type,
                "start_date": a.start_date.astimezone(UTC).isoformat(),
                "distance": a.distance,
                "moving_time": a.moving_time,
                "elapsed_time": a.elapsed_time,
                "total_elevation_gain": a.total_elevation_gain,
                "raw": a.raw,
                "synced_at": synced_at,
                "seen_at": synced_at,
            }
            for a in unique.values()
        ]

        async def upsert(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .upsert(rows, on_conflict="id", returning=ReturnMethod.minimal)
                .execute()
            )

        await self._with_user(f"upsert activities of user {user_id}", user_id, upsert)
        return len(rows)

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool:
        async def delete(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .eq("id", activity_id)
                .execute()
            )

        return (await self._run(f"delete activity {activity_id}", delete)).count == 1

    async def stored_activities(
        self, user_id: uuid.UUID, activity_ids: Sequence[int] | None = None
    ) -> dict[int, StoredActivity]:
        if activity_ids is not None and not activity_ids:
            return {}

        async def select(client: AsyncClient) -> Any:
            query = (
                client.table("strava_activities")
                .select(f"id,{_FIELD_COLUMNS},resource_state:raw->resource_state")
                .eq("user_id", str(user_id))
            )
            if activity_ids is not None:
                query = query.in_("id", list(activity_ids))
            return await query.execute()

        rows = (await self._run(f"read stored activities of user {user_id}", select)).data
        return {
            row["id"]: StoredActivity(
                ActivityFields(
                    row["name"],
                    row["sport_type"],
                    datetime.fromisoformat(row["start_date"]).timestamp(),
                    row["distance"],
                    row["moving_time"],
                    row["elapsed_time"],
                    row["total_elevation_gain"],
                ),
                row.get("resource_state") == 3,
            )
            for row in rows
        }

    async def mark_activities_seen(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return

        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .update({"seen_at": _iso(now)}, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .in_("id", list(activity_ids))
                .execute()
            )

        await self._run(f"mark activities of user {user_id} seen", update)

    async def delete_activities_unseen_since(self, user_id: uuid.UUID, since: float) -> int:
        async def delete(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .lt("seen_at", _iso(since))
                .execute()
            )

        return (await self._run(f"remove activities of user {user_id} no longer on Strava", delete)).count or 0

    async def add_activity_events(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return
        rows = [
            {"user_id": str(user_id), "activity_id": i, "received_at": _iso(now)} for i in dict.fromkeys(activity_ids)
        ]

        async def upsert(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activity_events")
                .upsert(rows, on_conflict="user_id,activity_id", returning=ReturnMethod.minimal)
                .execute()
            )

        await self._with_user(f"record webhook events of user {user_id}", user_id, upsert)

    async def pending_activity_events(self, user_id: uuid.UUID, *, limit: int) -> list[tuple[int, float]]:
        async def select(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activity_events")
                .select("activity_id,received_at")
                .eq("user_id", str(user_id))
                .order("received_at")
                .order("activity_id")
                .limit(limit)
                .execute()
            )

        rows = (await self._run(f"read webhook events of user {user_id}", select)).data
        return [(row["activity_id"], datetime.fromisoformat(row["received_at"]).timestamp()) for row in rows]

    async def clear_activity_events(self, user_id: uuid.UUID, events: Sequence[tuple[int, float]]) -> None:
        for activity_id, at in events:

            async def delete(client: AsyncClient, activity_id: int = activity_id, at: float = at) -> Any:
                return (
                    await client.table("strava_activity_events")
                    .delete(returning=ReturnMethod.minimal)
                    .eq("user_id", str(user_id))
                    .eq("activity_id", activity_id)
                    .eq("received_at", _iso(at))
                    .execute()
                )

            await self._run(f"clear webhook event of user {user_id}", delete)

    async def users_with_activity_events(self, *, limit: int) -> list[uuid.UUID]:
        async def select(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activity_events")
                .select("user_id")
                .order("received_at")
                .limit(limit * 20)
                .execute()
            )

        rows = (await self._run("find users with webhook events", select)).data
        return [uuid.UUID(u) for u in dict.fromkeys(row["user_id"] for row in rows)][:limit]

    async def take_event_quota(self, user_id: uuid.UUID, *, window: float, limit: int, wanted: int) -> int:
        params = {"p_user_id": str(user_id), "p_window": _iso(window), "p_limit": limit, "p_wanted": wanted}
        return int(await self._rpc(f"take webhook quota of user {user_id}", "syncsim_take_event_quota", params) or 0)

    async def mark_reconciled(self, user_id: uuid.UUID, *, now: float) -> None:
        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .update({"reconciled_at": _iso(now)}, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .execute()
            )

        await self._run(f"mark user {user_id} reconciled", update)

    async def reconciled_at(self, user_id: uuid.UUID) -> float | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("strava_tokens").select("reconciled_at").eq("user_id", str(user_id)).execute()

        rows = (await self._run(f"read when user {user_id} was reconciled", select)).data
        value = rows[0]["reconciled_at"] if rows else None
        return None if value is None else datetime.fromisoformat(value).timestamp()

    async def users_to_reconcile(self, *, before: float, asked_before: float, limit: int) -> list[uuid.UUID]:
        params = {"p_before": _iso(before), "p_asked_before": _iso(asked_before), "p_limit": limit}
        rows = await self._rpc("find users to reconcile", "syncsim_users_to_reconcile", params)
        return [uuid.UUID(row if isinstance(row, str) else next(iter(row.values()))) for row in rows or []]

    async def mark_reconcile_asked(self, user_id: uuid.UUID, *, now: float) -> None:
        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .update({"reconcile_asked_at": _iso(now)}, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .execute()
            )

        await self._run(f"mark a reconcile of user {user_id} asked", update)

    async def count_activities(self, user_id: uuid.UUID) -> int:
        async def count(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .select("id", count=CountMethod.exact, head=True)
                .eq("user_id", str(user_id))
                .execute()
            )

        return (await self._run(f"count activities of user {user_id}", count)).count or 0

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None:
        async def latest(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .select("start_date")
                .eq("user_id", str(user_id))
                .order("start_date", desc=True)
                .limit(1)
                .execute()
            )

        rows = (await self._run(f"find latest activity of user {user_id}", latest)).data
        return _dt(rows[0]["start_date"]) if rows else None
