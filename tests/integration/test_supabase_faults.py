"""The Supabase REST store when its key, its gateway or its answers go wrong.

Requests go to the PostgREST stand-in (:class:`tests.support.postgrest.PostgrestTransport`) through a
:class:`Gateway` that answers chosen requests itself, as Supabase's gateway does when it cannot reach PostgREST
(Cloudflare's or Kong's error pages) or as a proxy that cuts a body short. No store internals are patched: every
fault is an HTTP answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from syncsim.errors import ConfigError
from syncsim.stores import open_store
from syncsim.stores.supabase import KEY_ENV, SupabaseStore
from tests.support.postgrest import PostgrestTransport, sign_test_jwt

pytestmark = pytest.mark.postgres

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
SERVICE_KEY = sign_test_jwt({"role": "service_role", "iss": "supabase"})
URL = "supabase://project.supabase.co"

Answer = Callable[[httpx.Request], Awaitable[httpx.Response]]


@dataclass
class Fault:
    path: str  # a part of the request's path
    answer: Answer
    method: str | None
    times: int


class Gateway(httpx.AsyncBaseTransport):
    """What stands between the store and PostgREST: it keeps every request it is sent and answers the ones a
    fault matches itself; the others go on to the PostgREST stand-in over ``database_url``."""

    def __init__(self, database_url: str) -> None:
        self.upstream = PostgrestTransport(database_url)
        self.sent: list[httpx.Request] = []
        self._faults: list[Fault] = []

    def fail(self, path: str, answer: Answer, *, method: str | None = None, times: int = 1) -> None:
        self._faults.append(Fault(path, answer, method, times))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        for fault in self._faults:
            if fault.times and fault.path in request.url.path and fault.method in {None, request.method}:
                fault.times -= 1
                return await fault.answer(request)
        return await self.upstream.handle_async_request(request)

    async def aclose(self) -> None:
        await self.upstream.aclose()


def _no_key_in(messages: list[str]) -> None:
    for message in messages:
        assert SERVICE_KEY not in message and SERVICE_KEY[:40] not in message, message


@pytest.fixture
async def gateway(pg_url: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(pg_url)
    yield gateway
    await gateway.aclose()


# -- the key ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pasted", ["\n", "\r\n", " \t"])
async def test_a_key_pasted_with_a_trailing_newline_is_sent_without_it(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pasted: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: a key copied with its line end went into the headers as is, and httpx's refusal of the
    header (``LocalProtocolError Illegal header value b'eyJ…\\n'``) printed the whole service-role key."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, pasted + SERVICE_KEY + pasted)
    store = open_store(URL, transport=gateway)
    try:
        assert await store.list_jobs() == []
    finally:
        await store.close()
    assert gateway.sent and all(r.headers["apikey"] == SERVICE_KEY for r in gateway.sent)
    assert all(r.headers["authorization"] == f"Bearer {SERVICE_KEY}" for r in gateway.sent)
    _no_key_in([r.getMessage() for r in caplog.records])


@pytest.mark.parametrize("inside", ["a space", "a\ttab", "a\nline", "an escape \x1b", "non-ASCII …", "DEL \x7f"])
def test_a_key_with_whitespace_a_control_or_non_ascii_inside_is_a_config_error_without_the_key(
    monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    """Found by a probe: a non-ASCII character made the first request a ``UnicodeEncodeError`` traceback, inner
    whitespace an error quoting the key. It is refused when the store opens, naming the variable, not the key."""
    monkeypatch.setenv(KEY_ENV, SERVICE_KEY[:60] + inside + SERVICE_KEY[60:])
    with pytest.raises(ConfigError) as info:
        open_store(URL)
    message = str(info.value)
    assert KEY_ENV in message and "\n" not in message
    assert SERVICE_KEY[:60] not in message and SERVICE_KEY[60:] not in message, message


def test_a_user_jwt_that_headers_cannot_carry_is_refused_without_the_jwt() -> None:
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY)
    jwt = sign_test_jwt({"role": "authenticated", "sub": str(uuid.uuid4())})
    with pytest.raises(ValueError) as info:
        store.for_user(jwt + "\n")
    assert jwt not in str(info.value) and "\n" not in str(info.value)
