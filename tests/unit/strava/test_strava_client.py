"""StravaClient against FakeStrava in-process (its httpx transport), with a manual clock."""

from __future__ import annotations

import asyncio
import math
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from syncsim.clock import BehindClock, SystemClock
from syncsim.errors import (
    ConfigError,
    InvalidInput,
    MalformedResponse,
    PermanentError,
    RateLimited,
    StravaDown,
    StravaNoTimeToRetry,
    StravaUnavailable,
    SyncsimError,
    Unauthorized,
)
from syncsim.strava.client import (
    GIVE_UP_PROBE_FAILURES,
    OUTAGE_FAILURES,
    TOKEN_GRANT_MIN_S,
    ActivityPage,
    StravaClient,
    StravaRejected,
    _Answer,
)
from syncsim.strava.fake import FakeStrava, Faults
from syncsim.strava.models import StravaTokens
from syncsim.strava.ratelimit import CLOCK_SKEW_S, RateLimitBudget, next_quarter_hour, next_utc_midnight
from syncsim.strava.tokens import MemoryTokenStore
from syncsim.strava.trace import Trace
from tests.support.clocks import ManualClock
from tests.unit.strava.helpers import START, all_pages, connect

MakeClient = Callable[..., StravaClient]


class FailingFirst(httpx.AsyncBaseTransport):
    """Answers the first ``n`` requests with ``status`` (or raises ``error``), then delegates."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, n: int, *, status: int = 503, error: type[Exception] | None = None
    ) -> None:
        self.inner, self.n, self.status, self.error = inner, n, status, error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.n > 0:
            self.n -= 1
            if self.error is not None:
                raise self.error("injected", request=request)  # type: ignore[call-arg]
            return httpx.Response(self.status, text="<html>oops</html>", request=request)
        return await self.inner.handle_async_request(request)


# -- paging -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activities", [0, 1, 199, 200, 201, 5000])
async def test_paging_until_an_empty_page_returns_every_activity_once(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, activities: int
) -> None:
    user_id, athlete_id = await connect(fake, store, activities=activities)
    pages = await all_pages(make_client(), user_id)
    ids = [a.id for page in pages for a in page]
    assert len(ids) == activities
    assert set(ids) == set(fake.activity_ids(athlete_id))
    assert len(set(ids)) == activities
    assert fake.counts["pages"] == math.ceil(activities / 200) + 1  # the empty page ends it


async def test_short_pages_before_the_end_do_not_stop_paging_or_lose_activities(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    fake = FakeStrava(clock=clock, seed=3, faults=Faults(short_pages=0.5))
    user_id, athlete_id = await connect(fake, store, activities=1000)
    pages = await all_pages(make_client(transport=fake.transport()), user_id)
    sizes = [len(p) for p in pages]
    assert any(size < 200 for size in sizes[:-1]), sizes  # some non-final page came short
    ids = [a.id for page in pages for a in page]
    assert sorted(ids) == sorted(fake.activity_ids(athlete_id))


async def test_activities_come_newest_first_and_oldest_first_with_after(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    user_id, _ = await connect(fake, store, activities=450)
    client = make_client()
    newest_first = [a.start_date for page in await all_pages(client, user_id) for a in page]
    assert newest_first == sorted(newest_first, reverse=True)
    cut = newest_first[100]
    after = [a.start_date for page in await all_pages(client, user_id, after=cut.timestamp()) for a in page]
    assert after == sorted(after)
    assert after == sorted(newest_first[:100])  # strictly after the cut, oldest first
    before = [a.start_date for page in await all_pages(client, user_id, before=cut.timestamp()) for a in page]
    assert before == newest_first[101:]


# -- tokens -------------------------------------------------------------------------------------------------


async def test_a_token_expiring_mid_paging_is_refreshed_and_the_rotated_refresh_token_saved(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    fake = FakeStrava(clock=clock, seed=1, latency=1200.0)  # 26 pages x 20 min > the 6-hour token
    user_id, athlete_id = await connect(fake, store, activities=5000)
    first = await store.get_tokens(user_id)
    assert first is not None
    pages = await all_pages(make_client(transport=fake.transport(), timeout_s=1500), user_id)
    assert sum(len(p) for p in pages) == 5000
    saved = await store.get_tokens(user_id)
    assert saved is not None
    assert saved.refresh_token != first.refresh_token
    assert saved.refresh_token == fake.athlete(athlete_id).refresh_token  # the one Strava honours now
    assert saved.athlete_id == athlete_id
    assert fake.counts["refresh_rotations"] >= 1
    assert fake.counts["status_401"] == 0  # refreshed before expiry, not after a failure


async def test_a_refresh_is_not_risked_on_the_last_seconds_before_the_deadline(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    """Strava invalidates a refresh token as soon as it issues the next one, so a refresh whose answer is lost (cut
    off by a timeout, or by the invocation's end) disconnects the athlete. With less than TOKEN_GRANT_MIN_S left
    the client does not send it; the stored refresh token stays the one Strava honours, and a later call, with
    time, refreshes as usual."""
    fake = FakeStrava(clock=clock, seed=1, latency=0.5)
    user_id, athlete_id = await connect(fake, store, activities=5)
    first = await store.get_tokens(user_id)
    assert first is not None
    clock.set(first.expires_at - 60)  # within the refresh margin: the next call refreshes first
    client = make_client(transport=fake.transport())
    with pytest.raises(StravaNoTimeToRetry, match="too little time left before the deadline to risk the refresh token"):
        await client.list_activities(user_id, page=1, deadline=clock.now() + TOKEN_GRANT_MIN_S - 0.1)
    assert fake.counts["token_refreshes"] == 0
    assert await store.get_tokens(user_id) == first and first.refresh_token == fake.athlete(athlete_id).refresh_token
    assert len(await client.list_activities(user_id, page=1, deadline=clock.now() + TOKEN_GRANT_MIN_S + 1.5)) == 5
    saved = await store.get_tokens(user_id)
    assert fake.counts["token_refreshes"] == 1 and saved is not None
    assert saved.refresh_token == fake.athlete(athlete_id).refresh_token != first.refresh_token


async def test_a_401_mid_paging_refreshes_once_and_retries_the_page(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    user_id, athlete_id = await connect(fake, store, activities=600)
    client = make_client()
    first = await client.list_activities(user_id, page=1)
    fake.invalidate_access_token(athlete_id)
    rest = await all_pages(client, user_id)  # starts again at page 1 after the 401
    assert fake.counts["status_401"] == 1
    assert fake.counts["token_refreshes"] == 1
    assert [a.id for a in first] == [a.id for a in rest[0]]
    saved = await store.get_tokens(user_id)
    assert saved is not None and saved.access_token == fake.athlete(athlete_id).access_token


async def test_a_revoked_authorization_is_unauthorized_and_says_so_without_tokens(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, trace: Trace
) -> None:
    user_id, athlete_id = await connect(fake, store, activities=10)
    tokens = fake.tokens(athlete_id)
    fake.revoke(athlete_id)
    with pytest.raises(Unauthorized) as caught:
        await make_client().list_activities(user_id, page=1)
    message = str(caught.value)
    assert "revoked" in message
    assert "\n" not in message
    for secret in (tokens.access_token, tokens.refresh_token, fake.client_secret):
        assert secret not in message
        assert all(secret not in str(record) for record in trace.records)


async def test_a_user_without_tokens_is_unauthorized(make_client: MakeClient) -> None:
    user_id = uuid.uuid4()
    with pytest.raises(Unauthorized, match=f"no Strava connection for user {user_id}"):
        await make_client().get_athlete(user_id)


async def test_a_refresh_without_client_credentials_is_a_config_error_naming_the_variables(
    fake: FakeStrava,
    store: MemoryTokenStore,
    make_client: MakeClient,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRAVA_CLIENT_ID", raising=False)
    monkeypatch.delenv("STRAVA_CLIENT_SECRET", raising=False)
    user_id, _ = await connect(fake, store, activities=1)
    clock.advance(6 * 3600)
    client = make_client(client_id=None, client_secret=None)
    with pytest.raises(ConfigError, match="STRAVA_CLIENT_ID and STRAVA_CLIENT_SECRET"):
        await client.get_athlete(user_id)


async def test_wrong_client_credentials_are_a_config_error(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    athlete = fake.add_athlete(activities=1)
    with pytest.raises(ConfigError, match="application credentials"):
        await make_client(client_secret="not-the-secret").exchange_code(uuid.uuid4(), athlete.code)


async def test_exchange_code_connects_a_user_and_saves_the_tokens(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    athlete = fake.add_athlete(activities=3)
    user_id = uuid.uuid4()
    tokens = await make_client().exchange_code(user_id, athlete.code)
    assert tokens.athlete_id == athlete.athlete_id
    assert await store.get_tokens(user_id) == tokens
    with pytest.raises(Unauthorized, match="authorization code"):  # a code works once
        await make_client().exchange_code(uuid.uuid4(), athlete.code)


async def test_connect_with_refresh_token_learns_the_athlete_and_saves_tokens(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    athlete = fake.add_athlete(activities=3)
    clock.advance(5.5 * 3600)  # less than an hour left: Strava issues new tokens
    user_id = uuid.uuid4()
    tokens = await make_client().connect_with_refresh_token(user_id, athlete.refresh_token)
    assert tokens.athlete_id == athlete.athlete_id
    assert tokens.refresh_token != athlete.refresh_token
    assert await store.get_tokens(user_id) == tokens
    assert len(await make_client().list_activities(user_id, page=1)) == 3


# -- rate limits --------------------------------------------------------------------------------------------


async def test_a_429_is_waited_out_when_the_deadline_allows(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock, trace: Trace
) -> None:
    user_id, _ = await connect(fake, store, activities=5)
    fake.spend_rate_limit(100)  # other processes of the app spent the read window
    reset = next_quarter_hour(START)
    activities = await make_client().list_activities(user_id, page=1, deadline=reset + 300)
    assert len(activities) == 5
    assert clock.sleeps == [pytest.approx(reset + 1 - START)]
    assert [r["status"] for r in trace.records] == [429, 200]


async def test_a_429_past_the_deadline_raises_rate_limited_at_the_next_quarter_hour(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    user_id, _ = await connect(fake, store, activities=5)
    fake.spend_rate_limit(100)
    with pytest.raises(RateLimited) as caught:
        await make_client().list_activities(user_id, page=1, deadline=START + 10)
    assert caught.value.reset_at == next_quarter_hour(START) + CLOCK_SKEW_S
    assert caught.value.at == caught.value.reset_at
    assert clock.sleeps == []


async def test_a_429_with_the_daily_limit_spent_resets_at_utc_midnight(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    clock.set(next_utc_midnight(START) + 3600)  # 01:00 UTC
    user_id, _ = await connect(fake, store, activities=5)
    for _ in range(10):  # 1,000 reads spread over ten quarter hours
        fake.spend_rate_limit(100)
        clock.advance(900)
    with pytest.raises(RateLimited) as caught:
        await make_client().get_athlete(user_id, deadline=clock.now() + 3600)
    assert caught.value.reset_at == next_utc_midnight(clock.now()) + CLOCK_SKEW_S


async def test_a_reset_further_away_than_max_wait_s_raises_rate_limited_at_once_even_without_a_deadline(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """A worker's job (no deadline) waits for a far window in the store, not asleep in its runner."""
    user_id, _ = await connect(fake, store, activities=5)
    fake.spend_rate_limit(100)
    client = make_client()
    reset = next_quarter_hour(START) + CLOCK_SKEW_S
    with pytest.raises(RateLimited) as caught:  # Strava's 429
        await client.list_activities(user_id, page=1, max_wait_s=30)
    message = str(caught.value)
    assert caught.value.reset_at == reset and "waits in the store" in message and "\n" not in message
    assert clock.sleeps == [] and fake.counts["status_429"] == 1
    with pytest.raises(RateLimited):  # the budget, blocked by that 429, refuses without a request
        await client.get_activity(user_id, 1, max_wait_s=30)
    assert fake.counts["status_429"] == 1 and fake.counts["status_200"] == 0
    clock.set(reset - 20)  # a reset within max_wait_s is slept through
    assert len(await client.list_activities(user_id, page=1, max_wait_s=30)) == 5
    assert clock.sleeps == [pytest.approx(20)]


async def test_a_job_due_at_midnight_that_strava_has_not_reached_yet_waits_out_the_skew_not_a_day(
    store: MemoryTokenStore, make_client: MakeClient
) -> None:
    """Jobs waiting for the daily reset send their first request right at midnight; Strava's clock, 0.3 s behind
    ours, still counts it in the spent day. The 429 costs the client a second, not the day, and that day's usage
    is not taken for the new one's."""
    midnight = next_utc_midnight(START)
    ours = ManualClock(midnight - 60)
    fake = FakeStrava(clock=BehindClock(ours, 0.3), seed=7)
    user_id, _ = await connect(fake, store, activities=5)
    fake.spend_rate_limit(1000)
    client = make_client(clock=ours, transport=fake.transport())
    ours.set(midnight + 0.1)
    assert len(await client.list_activities(user_id, page=1, max_wait_s=30)) == 5
    assert fake.counts["status_429"] == 1 and fake.counts["status_200"] == 1
    assert ours.sleeps == [pytest.approx(0.9)] and ours.now() == pytest.approx(midnight + 1)
    assert client.budget.usage(ours.now()).read_used[1] <= 2  # not yesterday's 1,000


async def test_a_request_right_at_a_reset_waits_out_the_skew_instead_of_losing_the_window(
    store: MemoryTokenStore, make_client: MakeClient
) -> None:
    """A scheduler's tick fires on the clock, right at a reset, and may resume a job the spent window held back.
    Strava's clock, 0.3 s behind ours, would count its request in that window and answer 429 for the whole new
    one; the budget holds it for the skew allowance instead, and it goes without a 429."""
    reset = next_quarter_hour(START)
    ours = ManualClock(reset - 60)
    fake = FakeStrava(clock=BehindClock(ours, 0.3), seed=7)
    user_id, _ = await connect(fake, store, activities=5)
    client = make_client(clock=ours, transport=fake.transport())
    for _ in range(100):  # this process spends the window
        await client.get_athlete(user_id)
    ours.set(reset)
    assert len(await client.list_activities(user_id, page=1, max_wait_s=30)) == 5
    assert fake.counts["status_429"] == 0 and fake.counts["status_200"] == 101
    assert ours.sleeps == [pytest.approx(CLOCK_SKEW_S)]


class SlowAnswers(httpx.AsyncBaseTransport):
    """Every answer reaches the client ``delay_s`` after Strava gave it (on the test's clock)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: ManualClock, delay_s: float) -> None:
        self.inner, self.clock, self.delay_s = inner, clock, delay_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await self.clock.sleep(self.delay_s)
        return response


async def test_a_429_answered_after_the_reset_ends_at_that_reset(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """Sent in the last instant of a window other instances had spent, refused, and the refusal read after the
    window ended: the new window is open already, so the request goes again a second after the reset instead of
    a window later."""
    user_id, _ = await connect(fake, store, activities=5)
    reset = next_quarter_hour(START)
    clock.set(reset - 0.2)
    fake.spend_rate_limit(100)
    client = make_client(transport=SlowAnswers(fake.transport(), clock, 0.5))
    assert len(await client.list_activities(user_id, page=1, max_wait_s=30)) == 5
    assert fake.counts["status_429"] == 1 and fake.counts["status_200"] == 1
    assert clock.sleeps == [0.5, pytest.approx(0.7), 0.5]  # the 429's way back, the skew allowance, the 200's
    assert clock.now() == pytest.approx(reset + 1.5)


async def test_the_101st_read_in_a_window_is_refused_by_the_budget_without_a_request(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    user_id, _ = await connect(fake, store, activities=1)
    budget = RateLimitBudget()
    clients = [make_client(budget=budget), make_client(budget=budget)]  # one budget per process
    for i in range(100):
        await clients[i % 2].get_athlete(user_id)
    with pytest.raises(RateLimited) as caught:
        await clients[0].get_athlete(user_id, deadline=START + 60)
    assert caught.value.reset_at == next_quarter_hour(START) + CLOCK_SKEW_S
    assert fake.counts["status_200"] == 100
    assert fake.counts["status_429"] == 0
    athlete = await clients[1].get_athlete(user_id)  # no deadline: waits for the window
    assert athlete.id > 0
    assert clock.now() == pytest.approx(next_quarter_hour(START) + 1)


# -- retries and malformed answers --------------------------------------------------------------------------


async def test_a_burst_of_5xx_is_retried_with_backoff(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    user_id, _ = await connect(fake, store, activities=5)
    client = make_client(transport=FailingFirst(fake.transport(), 3))
    assert len(await client.list_activities(user_id, page=1)) == 5
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps):
        assert 0.5 * 2**n * 0.75 <= slept <= 0.5 * 2**n * 1.25


async def test_persistent_5xx_ends_in_strava_unavailable_after_the_retries(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    fake = FakeStrava(clock=clock, faults=Faults(error_rate=1.0))
    user_id, _ = await connect(fake, store, activities=5)
    with pytest.raises(StravaUnavailable, match=r"GET /athlete/activities: HTTP 50\d after 3 attempts"):
        await make_client(transport=fake.transport(), max_retries=2).list_activities(user_id, page=1)
    assert fake.counts["errors_5xx"] == 3


async def test_retries_stop_when_the_backoff_would_pass_the_deadline(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    user_id, _ = await connect(fake, store, activities=5)
    client = make_client(transport=FailingFirst(fake.transport(), 1))
    with pytest.raises(StravaUnavailable, match="deadline"):
        await client.list_activities(user_id, page=1, deadline=START + 0.1)


class SlowFailures(httpx.AsyncBaseTransport):
    """Answers every request with a 503 after ``took`` seconds of ``clock``."""

    def __init__(self, clock: ManualClock, took: float) -> None:
        self.clock, self.took, self.requests = clock, took, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.clock.advance(self.took)
        return httpx.Response(503, text="<html>busy</html>", request=request)


async def test_a_retry_that_could_not_be_answered_before_the_deadline_is_not_tried(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """The first backoff (0.375-0.625 s) would end before the deadline, but a retry that takes as long as the
    failed attempt (0.8 s) would not be answered by then: the platform would cut it off. The client says so at
    once, as a StravaUnavailable that a deadline-aware job can tell apart (StravaNoTimeToRetry)."""
    user_id, _ = await connect(fake, store, activities=5)
    transport = SlowFailures(clock, took=0.8)
    with pytest.raises(StravaNoTimeToRetry, match=r"HTTP 503 after 1 attempts; no time left to retry before the dead"):
        await make_client(transport=transport).list_activities(user_id, page=1, deadline=START + 0.8 + 0.7 + 0.4)
    assert transport.requests == 1 and clock.sleeps == [] and clock.now() == START + 0.8
    # With time for it, the same failure is retried as before.
    transport = SlowFailures(clock, took=0.8)
    with pytest.raises(StravaUnavailable, match="after 3 attempts") as raised:
        await make_client(transport=transport, max_retries=2).list_activities(user_id, page=1, deadline=START + 60)
    assert transport.requests == 3 and not isinstance(raised.value, StravaNoTimeToRetry)


async def test_timeouts_are_retried_then_strava_unavailable(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    fake = FakeStrava(clock=clock, faults=Faults(timeout_rate=1.0))
    user_id, _ = await connect(fake, store, activities=5)
    with pytest.raises(StravaUnavailable, match="ReadTimeout after 2 attempts"):
        await make_client(transport=fake.transport(), timeout_s=2.0, max_retries=1).get_athlete(user_id)
    assert clock.sleeps[0] == 2.0  # the fake held the request for the whole read timeout


async def test_a_request_still_unanswered_at_answer_by_is_given_up_then(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    """A caller the platform kills at a hard limit gives ``answer_by``: a Strava that hangs holds the request only
    until then (not the client's 10 s timeout), and the client says so as a StravaNoTimeToRetry, not a retry."""
    fake = FakeStrava(clock=clock, faults=Faults(timeout_rate=1.0))
    user_id, _ = await connect(fake, store, activities=5)
    client = make_client(transport=fake.transport(), timeout_s=10.0)
    with pytest.raises(StravaNoTimeToRetry, match=r"^GET /athlete/activities: no answer within the 3.0 s left before"):
        await client.list_activities(user_id, page=1, deadline=START + 2.0, answer_by=START + 3.0)
    assert clock.sleeps == [3.0] and clock.now() == START + 3.0 and fake.counts["timeouts"] == 1
    # Once answer_by has passed, nothing is sent and no rate-limit slot is spent.
    used = client.budget.reads_left(clock.now())
    with pytest.raises(StravaNoTimeToRetry, match="no time left for an answer before the deadline"):
        await client.get_athlete(user_id, answer_by=clock.now())
    assert fake.counts["timeouts"] == 1 and client.budget.reads_left(clock.now()) == used
    # A later answer_by than the timeout changes nothing: the timeout ends the attempt, which is retried.
    with pytest.raises(StravaUnavailable, match="ReadTimeout after 2 attempts") as raised:
        await make_client(transport=fake.transport(), timeout_s=2.0, max_retries=1).get_athlete(
            user_id, answer_by=clock.now() + 60.0
        )
    assert not isinstance(raised.value, StravaNoTimeToRetry) and fake.counts["timeouts"] == 3


def _trickling(request: httpx.Request) -> httpx.Response:
    """Headers at once, then a body that never ends: a few bytes every 50 ms."""

    async def body() -> AsyncIterator[bytes]:
        yield b"["
        while True:
            await asyncio.sleep(0.05)
            yield b" " * 50

    return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body())


async def test_a_body_that_trickles_in_is_bounded_by_answer_by_and_by_the_timeout(store: MemoryTokenStore) -> None:
    """httpx's timeout bounds each read: a body trickling in would hold the request past ``answer_by`` (and past
    the client's own timeout) for as long as Strava sends it. The whole answer is bounded."""
    clock = SystemClock()
    user_id = uuid.uuid4()
    tokens = StravaTokens(athlete_id=1, access_token="a", refresh_token="r", expires_at=clock.now() + 21_600)
    await store.save_tokens(user_id, tokens, now=clock.now())
    options: dict[str, Any] = {"tokens": store, "clock": clock, "transport": httpx.MockTransport(_trickling)}
    async with StravaClient(**options, timeout_s=10.0) as client:
        with pytest.raises(StravaNoTimeToRetry, match=r"^GET /athlete/activities: no answer within the 0.3 s left"):
            # wait_for: without the bound, the request would never end
            await asyncio.wait_for(client.list_activities(user_id, page=1, answer_by=clock.now() + 0.3), 5.0)
    async with StravaClient(**options, timeout_s=0.3, max_retries=1, rng=random.Random(1)) as client:
        with pytest.raises(StravaUnavailable, match=r"^GET /athlete: ReadTimeout after 2 attempts$"):
            await asyncio.wait_for(client.get_athlete(user_id), 10.0)


async def test_strava_failing_several_athletes_requests_in_a_row_is_down_and_not_retried(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """An outage: once every attempt in a row has failed (8 of them, two athletes' requests), the failing request
    raises StravaDown at once instead of retrying, with the time to look again: 30 s, then 60 s once a later look
    finds Strava still down (±25 %). An answer ends it: failures start counting again."""
    (alice, _), (bob, _) = [await connect(fake, store, activities=5) for _ in range(2)]
    client = make_client(max_retries=2)  # 3 attempts a request: each gives up short of a probe
    fake.faults.down = (START, START + 3_600.0)
    for athlete in (alice, bob):
        with pytest.raises(StravaUnavailable, match="HTTP 503 after 3 attempts") as raised:
            await client.list_activities(athlete, page=1)
        assert not isinstance(raised.value, StravaDown)  # 3 or 6 failures in a row: no evidence of an outage yet
    served = fake.counts["errors_5xx"]
    with pytest.raises(StravaDown, match=r"^GET /athlete/activities: HTTP 503 after 2 attempts; Strava is down: 8 "):
        await client.list_activities(alice, page=1)
    assert fake.counts["errors_5xx"] == served + OUTAGE_FAILURES - 6  # alice's 2nd attempt was the 8th: no 3rd
    assert [r.path for r in fake.requests].count("/api/v3/athlete") == 0  # two athletes' failures: no probe
    first = await _down(client.list_activities(alice, page=1))
    assert fake.counts["errors_5xx"] == served + 3  # at once: one attempt, no retry
    assert 30 * 0.75 <= first.at - clock.now() <= 30 * 1.25 and first.shared and "\n" not in str(first)
    clock.advance(first.at - clock.now() + 1)  # the wait is over; Strava is still down
    again = await _down(client.list_activities(bob, page=1))
    assert 60 * 0.75 <= again.at - clock.now() <= 60 * 1.25
    fake.faults.down = None
    assert len(await client.list_activities(alice, page=1)) == 5  # Strava is back
    fake.faults.down = (clock.now(), clock.now() + 3_600.0)
    with pytest.raises(StravaUnavailable, match="after 3 attempts") as raised:
        await client.list_activities(bob, page=1)
    assert not isinstance(raised.value, StravaDown)  # counting from the answer on


async def test_one_athletes_failing_requests_are_an_outage_only_if_a_probe_of_another_fails_too(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """With one athlete (a deployment's only one), 8 failures in a row cannot tell an outage from a page that
    Strava cannot serve: the client asks Strava for something else of that athlete's (GET /athlete, one read).
    Strava down: the probe fails too, and the request raises StravaDown. A page that always fails: the probe is
    answered, and the request fails as any other, after its retries, with no waiting."""
    alice, athlete_id = await connect(fake, store, activities=450)
    client = make_client(max_retries=10)
    fake.faults.down = (START, START + 3_600.0)
    reads = client.budget.reads_left(clock.now())
    with pytest.raises(
        StravaDown,
        match=r"after 8 attempts; Strava is down: 9 attempts in a row failed since .*, "
        r"one athlete's requests and a probe of another of theirs; looking again at ",
    ):
        await client.list_activities(alice, page=1)
    probes = [r for r in fake.requests if r.path == "/api/v3/athlete"]
    assert len(probes) == 1 and probes[0].status == 503
    assert client.budget.reads_left(clock.now()) == reads - OUTAGE_FAILURES - 1  # the probe spent one read
    await _down(client.list_activities(alice, page=2))  # still down: at once, no retry and no second probe
    assert fake.counts["errors_5xx"] == OUTAGE_FAILURES + 2
    assert [r.path for r in fake.requests].count("/api/v3/athlete") == 1
    fake.faults.down = None

    # Strava is up, but it cannot serve alice's second page.
    fake.faults.failing_pages = {(athlete_id, 2)}
    assert len(await client.list_activities(alice, page=1)) == 200
    fake.requests.clear()
    with pytest.raises(StravaUnavailable, match=r"^GET /athlete/activities: HTTP 500 after 11 attempts$") as raised:
        await client.list_activities(alice, page=2)
    assert not isinstance(raised.value, StravaDown)
    assert [(r.path, r.status) for r in fake.requests].count(("/api/v3/athlete", 200)) == 1  # the 8th failure's
    assert len(await client.list_activities(alice, page=3)) == 50  # everything else is served


async def test_a_request_that_gives_up_with_every_attempt_failed_in_a_row_probes_first(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """Serverless instances count failures apart, so no one process may reach 8. A request that gives up after 4
    attempts, with nothing answered since its first, probes: Strava down, the probe fails and it raises
    StravaDown. A page that Strava cannot serve: the probe is answered and the request fails as before. And a
    request whose failures had answers in between (another athlete's request was served) does not probe."""
    (alice, alice_id), (bob, _) = [await connect(fake, store, activities=250) for _ in range(2)]
    fake.faults.down = (START, START + 3_600.0)
    lone = make_client(max_retries=3)
    first = await _down(lone.list_activities(alice, page=1))
    assert [(r.path, r.status) for r in fake.requests][-1] == ("/api/v3/athlete", 503)  # the probe, after 4
    assert fake.counts["errors_5xx"] == GIVE_UP_PROBE_FAILURES + 1
    clock.advance(first.at - clock.now() + 1)
    again = await _down(lone.list_activities(alice, page=1))  # the next look: one request
    assert fake.counts["errors_5xx"] == GIVE_UP_PROBE_FAILURES + 2 and again.looks == 2
    fake.faults.down = None

    fake.faults.failing_pages = {(alice_id, 2)}
    client = make_client(max_retries=3)
    fake.requests.clear()
    with pytest.raises(StravaUnavailable, match=r"HTTP 500 after 4 attempts$") as raised:
        await client.list_activities(alice, page=2)
    assert not isinstance(raised.value, StravaDown)
    assert [(r.path, r.status) for r in fake.requests][-1] == ("/api/v3/athlete", 200)  # answered: Strava is up

    fake.requests.clear()
    failing = asyncio.ensure_future(client.list_activities(alice, page=2))
    await asyncio.sleep(0)
    assert len(await client.list_activities(bob, page=1)) == 200  # served between alice's attempts
    with pytest.raises(StravaUnavailable, match=r"HTTP 500 after 4 attempts$"):
        await failing
    assert [r.path for r in fake.requests].count("/api/v3/athlete") == 0  # not all in a row: no probe


async def test_an_outage_another_process_found_makes_the_next_failure_the_next_look(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock
) -> None:
    """A client told of an outage found by another process (a stored pause: 2 looks in a row, its wait over)
    raises StravaDown at its first failure, one request, with the wait grown from that count (4 min at the 3rd
    look, ±25 %). An answer ends it, and a client that has heard from Strava since the pause was stored ignores it."""
    alice, _ = await connect(fake, store, activities=5)
    fake.faults.down = (START, START + 3_600.0)
    client = make_client(max_retries=2)  # 3 attempts a request: it gives up short of a probe
    client.remember_outage(looks=2, until=clock.now() - 1, since=clock.now() - 61)
    down = await _down(client.list_activities(alice, page=1))
    assert fake.counts["errors_5xx"] == 1 and down.looks == 3
    assert 120 * 0.75 <= down.at - clock.now() <= 120 * 1.25
    assert "down at the last look (2 in a row, by another process)" in str(down)

    fake.faults.down = None
    assert len(await client.list_activities(alice, page=1)) == 5  # Strava is back: the count ends
    fake.faults.down = (clock.now(), clock.now() + 3_600.0)
    client.remember_outage(looks=2, until=clock.now() - 1, since=clock.now() - 61)  # stored before that answer
    with pytest.raises(StravaUnavailable, match="after 3 attempts") as raised:
        await client.list_activities(alice, page=1)
    assert not isinstance(raised.value, StravaDown)


async def _down(request: Any) -> StravaDown:
    with pytest.raises(StravaDown) as raised:
        await request
    return raised.value


async def test_connection_errors_are_retried(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    user_id, _ = await connect(fake, store, activities=2)
    client = make_client(transport=FailingFirst(fake.transport(), 2, error=httpx.ConnectError))
    assert len(await client.list_activities(user_id, page=1)) == 2


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("truncated_json", "page 2: response is not valid JSON"),
        ("missing_id", "page 2: activity .* lacks required field.*id"),
        ("not_a_list", "page 2: expected a JSON list, got dict"),
    ],
)
async def test_a_malformed_page_is_a_malformed_response_naming_the_page(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient, mode: str, match: str
) -> None:
    fake = FakeStrava(clock=clock, faults=Faults(malformed_mode=mode))  # type: ignore[arg-type]
    user_id, athlete_id = await connect(fake, store, activities=500)
    fake.faults.malformed_pages = {(athlete_id, 2)}
    client = make_client(transport=fake.transport())
    assert len(await client.list_activities(user_id, page=1)) == 200
    with pytest.raises(MalformedResponse, match=match):
        await client.list_activities(user_id, page=2)


async def test_request_activities_answers_before_parsing_and_parses_like_list_activities(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, trace: Trace
) -> None:
    user_id, _ = await connect(fake, store, activities=250)
    client = make_client()
    first = await client.request_activities(user_id, page=1, after=0)
    assert first.last_start() is not None and len(trace) == 0  # answered, not parsed, not recorded yet
    parsed = first.activities()
    assert parsed == await client.list_activities(user_id, page=1, after=0)
    assert first.last_start() == int(parsed[-1].start_date.timestamp())
    assert [r["items"] for r in trace.records] == [200, 200]
    last = await client.request_activities(user_id, page=3, after=0)
    assert last.last_start() is None and last.activities() == []


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b"[]", None),
        (
            b'[{"id": 1, "start_date":"2026-01-05T00:00:10Z"}, {"id": 2, "start_date":"2026-01-05T00:00:00Z"}]',
            1767571200,
        ),
        (b'[{"id": 1, "start_date":"2026-01-05T00:00:00Z", "start_date_local":"2026-01-05T01:00:00Z"}]', 1767571200),
        (b'{"activities": []}', None),
        (b'[{"start_date":"garbage"}]', None),
        (b'[{"id":1,"start_date":"2026-01-05T00:00:00Z"', None),
    ],
)
async def test_an_answered_page_tells_its_last_start_without_parsing(
    make_client: MakeClient, body: bytes, start: int | None
) -> None:
    answer = _Answer(httpx.Response(200, content=body), sent_at=0.0, latency_s=0.1, attempt=1)
    assert ActivityPage(make_client(), answer, page=1).last_start() == start


async def test_a_deleted_activity_detail_is_rejected_as_not_found(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient
) -> None:
    user_id, athlete_id = await connect(fake, store, activities=3)
    activity_id = fake.activity_ids(athlete_id)[0]
    client = make_client()
    detail = await client.get_activity(user_id, activity_id)
    assert detail.id == activity_id
    assert detail.raw["resource_state"] == 3
    fake.delete_activity(activity_id)
    with pytest.raises(StravaRejected, match="not found") as caught:
        await client.get_activity(user_id, activity_id)
    assert caught.value.status == 404


async def test_no_error_message_or_trace_record_ever_contains_a_token(
    clock: ManualClock, store: MemoryTokenStore, make_client: MakeClient, trace: Trace
) -> None:
    fake = FakeStrava(clock=clock, latency=1200.0, faults=Faults(malformed_mode="missing_id"))
    user_id, athlete_id = await connect(fake, store, activities=3000)
    secrets = {fake.client_secret, fake.athlete(athlete_id).access_token, fake.athlete(athlete_id).refresh_token}
    client = make_client(transport=fake.transport(), timeout_s=1500)
    messages: list[str] = []
    await all_pages(client, user_id)  # refreshes on the way: new tokens
    saved = await store.get_tokens(user_id)
    assert saved is not None
    secrets |= {saved.access_token, saved.refresh_token}
    fake.faults.malformed_pages = {(athlete_id, 1)}
    fake.faults.error_rate = 1.0
    for call in (
        lambda: client.list_activities(user_id, page=2),
        lambda: client.get_athlete(user_id, deadline=clock.now() + 0.1),
    ):
        with pytest.raises(SyncsimError) as caught:
            await call()
        messages.append(str(caught.value))
    fake.faults.error_rate = 0.0
    with pytest.raises(MalformedResponse) as malformed:
        await client.list_activities(user_id, page=1)
    messages.append(str(malformed.value))
    fake.spend_rate_limit(500)
    with pytest.raises(RateLimited) as limited:
        await client.get_athlete(user_id, deadline=clock.now() + 1)
    messages.append(str(limited.value))
    fake.revoke(athlete_id)
    fake.invalidate_access_token(athlete_id)
    clock.advance(3600)
    with pytest.raises(Unauthorized) as unauthorized:
        await client.get_athlete(user_id)
    messages.append(str(unauthorized.value))
    assert len(messages) == 5
    texts = messages + [str(record) for record in trace.records] + [repr(saved), repr(client)]
    for secret in secrets:
        assert all(secret not in text for text in texts)
    assert all("\n" not in m for m in messages)
    assert {r["error"] for r in trace.records} >= {"MalformedResponse", "StravaUnavailable", "Unauthorized"}


async def test_every_request_is_traced_with_page_items_and_rate_usage(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, trace: Trace
) -> None:
    user_id, _ = await connect(fake, store, activities=250)
    await all_pages(make_client(), user_id)
    assert [(r["page"], r["items"]) for r in trace.records] == [(1, 200), (2, 50), (3, 0)]
    assert [r["read_usage_15min"] for r in trace.records] == [1, 2, 3]
    assert all(r["endpoint"] == "/athlete/activities" and r["status"] == 200 for r in trace.records)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"timeout_s": 0.0}, "timeout_s must be a positive number of seconds, got 0.0"),
        ({"timeout_s": math.nan}, "timeout_s must be a positive number of seconds, got nan"),
        ({"timeout_s": math.inf}, "timeout_s must be a positive number of seconds, got inf"),
        ({"refresh_margin_s": -1.0}, "refresh_margin_s must be a number of seconds >= 0, got -1.0"),
    ],
)
def test_settings_a_client_cannot_work_with_are_refused(
    clock: ManualClock, store: MemoryTokenStore, bad: dict[str, Any], said: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(said)):
        StravaClient(tokens=store, clock=clock, **bad)


@pytest.mark.parametrize("url", ["127.0.0.1:9", "www.strava.com", "ftp://www.strava.com", "http://", "https:///x"])
def test_a_strava_url_httpx_cannot_request_is_refused_when_the_client_is_made(
    clock: ManualClock, store: MemoryTokenStore, url: str
) -> None:
    said = (
        f"the Strava base URL must be an http:// or https:// URL with a host (e.g. https://www.strava.com), got {url!r}"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(said)}$"):
        StravaClient(tokens=store, clock=clock, base_url=url)


@pytest.mark.parametrize("error", [httpx.UnsupportedProtocol, httpx.InvalidURL])
async def test_a_url_httpx_refuses_is_a_config_error_not_strava_down(
    fake: FakeStrava, store: MemoryTokenStore, make_client: MakeClient, error: type[Exception]
) -> None:
    """Asking again cannot mend the URL: never retried, nor counted as Strava failing."""
    user_id, _ = await connect(fake, store, activities=5)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise error("Request URL is missing an 'http://' or 'https://' protocol.")

    client = make_client(transport=httpx.MockTransport(refuse))
    with pytest.raises(ConfigError, match=r"^GET /athlete: 'https://www.strava.com' cannot be requested: "):
        await client.get_athlete(user_id)
    assert client.budget.usage(fake.clock.now()).read_used == (1, 1)  # one attempt, not retried


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("start_date", "0001-01-01T00:00:00+05:00", "activity 7 is out of range: date value out of range"),
        ("id", 2**63 + 5, f"activity {2**63 + 5} is out of range: id exceeds a signed 64-bit integer"),
        ("moving_time", 1e300, "activity 7 is out of range: moving_time exceeds a signed 64-bit integer"),
    ],
)
async def test_a_value_out_of_range_is_a_permanent_malformed_response_naming_the_page_and_activity(
    store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock, field: str, value: object, said: str
) -> None:
    """Before, an OverflowError (in the parser, or in the store) named nothing and was retried."""
    user_id = uuid.uuid4()
    tokens = StravaTokens(athlete_id=1, access_token="a", refresh_token="r", expires_at=clock.now() + 21_600)
    await store.save_tokens(user_id, tokens, now=clock.now())
    item = {"id": 7, "name": "Run", "sport_type": "Run", "start_date": "2023-11-14T10:00:00Z", field: value}
    client = make_client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=[item])))
    with pytest.raises(MalformedResponse) as raised:
        await client.list_activities(user_id, page=1, before=START)
    assert isinstance(raised.value, PermanentError)  # the same answer again: not retried
    assert str(raised.value) == f"GET /athlete/activities before 2023-11-14T22:13:20Z page 1: {said}"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Limit": "0,0", "X-RateLimit-Usage": "5,5", "X-ReadRateLimit-Limit": "0,0"},
        {"X-ReadRateLimit-Limit": "100,1000", "X-ReadRateLimit-Usage": "500,99999"},
    ],
)
async def test_rate_limit_headers_a_served_answer_contradicts_are_ignored(
    store: MemoryTokenStore, make_client: MakeClient, clock: ManualClock, headers: dict[str, str]
) -> None:
    """A limit of 0, or usage past the limit on an answer Strava served: taken at their word, either held back
    every request (and paused every sync) until UTC midnight."""
    user_id = uuid.uuid4()
    tokens = StravaTokens(athlete_id=1, access_token="a", refresh_token="r", expires_at=clock.now() + 21_600)
    await store.save_tokens(user_id, tokens, now=clock.now())
    client = make_client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=[], headers=headers)))
    for _ in range(3):  # max_wait_s=0: a request held back would raise RateLimited
        assert await client.list_activities(user_id, page=1, max_wait_s=0.0) == []
    usage = client.budget.usage(clock.now())
    assert (usage.overall_limit, usage.read_limit, usage.read_used) == ((200, 2000), (100, 1000), (3, 3))
