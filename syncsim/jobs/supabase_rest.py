"""SupabaseStore's REST plumbing: the supabase-py client, one-line error mapping, and PostgREST's times.

The client is created on first use over the store's httpx client, with the user's JWT in ``Authorization``
for a user store. Every PostgREST or HTTP error leaves :meth:`_SupabaseRest._run` as one line without the key
or JWT: a refused value is :class:`~syncsim.errors.InvalidInput`, anything else a
:class:`~syncsim.errors.StoreError`; a unique violation (409, 23505) is the private :class:`_UniqueViolation`
for the callers that expect it. A write that references an unknown user adds it where the database allows
(``syncsim_ensure_user``) and is tried once more. The lifecycle is here too: ``migrate()``, which only checks
that the schema is there (REST cannot run DDL), and ``close()``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from postgrest import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from syncsim.clock import to_datetime
from syncsim.errors import InvalidInput, StoreError

# PostgREST codes of input the store refuses (bad value, check constraint), as opposed to a failing store.
_INVALID_INPUT_CODES = {"22P02", "22007", "22008", "22023", "23514", "23502", "PGRST102"}
# 23503: a foreign key to auth.users; 409 is PostgREST's status for both unique and foreign-key violations.
_UNIQUE, _FOREIGN_KEY = "23505", "23503"

T = TypeVar("T")


class _UniqueViolation(StoreError):
    """PostgREST's 409 for 23505 (the one-active-job index, a token's athlete id); handled where expected."""


class _UnknownUser(InvalidInput):
    """PostgREST's 409 for 23503: the user id is not in ``auth.users``."""


def _iso(ts: float) -> str:
    """UTC epoch seconds → ISO 8601 UTC, as PostgREST expects timestamps."""
    return to_datetime(ts).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


class _SupabaseRest:
    """The REST half of :class:`~syncsim.jobs.supabase.SupabaseStore` (a base class of it).

    The attributes below are SupabaseStore's, set up by its ``__init__``.
    """

    url: str
    project_url: str
    _key: str
    _user_jwt: str | None
    _owns_http: bool
    _http: httpx.AsyncClient
    _client: AsyncClient | None
    _client_lock: asyncio.Lock

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
                line = line.replace(secret, "***")
        return line

    def _error(self, exc: APIError, doing: str) -> Exception:
        code = exc.code or "HTTP"
        message = self._one_line(f"{code} {exc.message or ''}" + (f" ({exc.details})" if exc.details else ""))
        if code == _UNIQUE:
            return _UniqueViolation(f"supabase store {self.url}: {doing} failed: {message}")
        if code in _INVALID_INPUT_CODES:
            return InvalidInput(f"{doing}: {message}")
        hint = " (is the database migrated? run `syncsim migrate` on its postgresql:// URL)"
        missing = code in {"42P01", "42883", "PGRST202", "PGRST205"}
        return StoreError(f"supabase store {self.url}: {doing} failed: {message}{hint if missing else ''}")

    async def _run(self, doing: str, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run one REST call; PostgREST and HTTP errors leave as one-line errors without the key."""
        client = await self._supabase()
        try:
            return await call(client)
        except APIError as exc:
            if exc.code == _FOREIGN_KEY:
                raise _UnknownUser(f"{doing}: the user does not exist in auth.users") from None
            raise self._error(exc, doing) from None
        except httpx.HTTPError as exc:
            raise StoreError(
                f"supabase store {self.url}: {doing} failed: {type(exc).__name__} {self._one_line(str(exc))}"
            ) from None

    async def _rpc(self, doing: str, function: str, params: dict[str, Any]) -> Any:
        async def call(client: AsyncClient) -> Any:
            return (await client.rpc(function, params).execute()).data

        return await self._run(doing, call)

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
        """Check that the schema is there (REST cannot run DDL); return ``[]``.

        Apply migrations with ``syncsim migrate postgresql://…`` (the project's connection string)."""

        async def probe(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").select("id").limit(1).execute()

        await self._run("check the sync_jobs table", probe)
        return []

    async def close(self) -> None:
        """Close the HTTP client if this store created it."""
        self._client = None
        if self._owns_http:
            await self._http.aclose()
