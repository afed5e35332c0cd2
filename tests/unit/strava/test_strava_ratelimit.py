"""RateLimitBudget and the window arithmetic: Strava's windows reset at :00/:15/:30/:45 and midnight UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncsim.strava.ratelimit import (
    CLOCK_SKEW_S,
    RateLimitBudget,
    next_quarter_hour,
    next_utc_midnight,
    parse_pair,
    quarter_hour_start,
    reset_after_429,
    utc_day_start,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def after(text: str) -> float:
    """When a request held back until the reset at ``text`` may go: the clock-skew allowance after it."""
    return ts(text) + CLOCK_SKEW_S


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-03-01T10:00:00", "2024-03-01T10:15:00"),  # exactly on a boundary: the *next* one
        ("2024-03-01T10:14:59.999", "2024-03-01T10:15:00"),
        ("2024-03-01T10:15:00.001", "2024-03-01T10:30:00"),
        ("2024-03-01T10:44:00", "2024-03-01T10:45:00"),
        ("2024-03-01T23:59:30", "2024-03-02T00:00:00"),
    ],
)
def test_next_quarter_hour_is_the_next_quarter_of_the_utc_hour(now: str, expected: str) -> None:
    assert next_quarter_hour(ts(now)) == ts(expected)


def test_quarter_hour_start_is_the_window_containing_the_instant() -> None:
    assert quarter_hour_start(ts("2024-03-01T10:29:59")) == ts("2024-03-01T10:15:00")
    assert quarter_hour_start(ts("2024-03-01T10:30:00")) == ts("2024-03-01T10:30:00")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-02-28T00:00:00", "2024-02-29T00:00:00"),
        ("2024-02-29T23:59:59", "2024-03-01T00:00:00"),  # leap day
        ("2024-12-31T12:00:00", "2025-01-01T00:00:00"),
    ],
)
def test_next_utc_midnight_is_the_next_utc_day(now: str, expected: str) -> None:
    assert next_utc_midnight(ts(now)) == ts(expected)
    assert utc_day_start(ts(now)) == ts(expected) - 86_400


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100,1000", (100, 1000)), (" 7 , 42 ", (7, 42)), ("", None), (None, None), ("1", None), ("a,b", None)],
)
def test_parse_pair_reads_fifteen_minute_and_daily_values(value: str | None, expected: object) -> None:
    assert parse_pair(value) == expected


T0 = ts("2024-03-01T10:03:00")


def test_the_101st_read_in_a_window_is_refused_until_the_next_quarter_hour() -> None:
    budget = RateLimitBudget()
    assert all(budget.reserve(T0 + i) is None for i in range(100))
    assert budget.reserve(T0 + 100) == after("2024-03-01T10:15:00")
    assert budget.refused == 1
    # The window resets; the first second still counts against the spent window before (a skew with Strava).
    assert budget.reserve(ts("2024-03-01T10:15:00")) == after("2024-03-01T10:15:00")
    assert budget.reserve(ts("2024-03-01T10:15:00") + CLOCK_SKEW_S) is None


def test_token_requests_count_toward_the_overall_limit_only() -> None:
    budget = RateLimitBudget(overall_limits=(200, 2000), read_limits=(100, 1000))
    assert all(budget.reserve(T0, read=False) is None for _ in range(100))
    assert all(budget.reserve(T0) is None for _ in range(100))  # reads still have their 100
    assert budget.reserve(T0, read=False) == after("2024-03-01T10:15:00")  # overall 200 spent
    usage = budget.usage(T0)
    assert usage.overall_used == (200, 200)
    assert usage.read_used == (100, 100)


def test_a_spent_daily_limit_waits_for_utc_midnight() -> None:
    budget = RateLimitBudget(read_limits=(100, 150))
    for window in range(2):
        for i in range(75):
            assert budget.reserve(T0 + window * 900 + i) is None
    assert budget.reserve(T0 + 1800) == after("2024-03-02T00:00:00")
    assert budget.reserve(ts("2024-03-02T00:00:00")) == after("2024-03-02T00:00:00")
    assert budget.reserve(ts("2024-03-02T00:00:00") + CLOCK_SKEW_S) is None


def test_observe_learns_limits_and_usage_from_headers() -> None:
    budget = RateLimitBudget()
    headers = {
        "X-RateLimit-Limit": "600,6000",
        "X-RateLimit-Usage": "10,500",
        "X-ReadRateLimit-Limit": "300,3000",
        "X-ReadRateLimit-Usage": "298,400",
    }
    budget.observe(headers, T0)
    usage = budget.usage(T0)
    assert usage.read_limit == (300, 3000)
    assert usage.overall_limit == (600, 6000)
    assert usage.read_used == (298, 400)
    assert budget.reserve(T0) is None
    assert budget.reserve(T0) is None
    assert budget.reserve(T0) == after("2024-03-01T10:15:00")


def test_observe_never_lowers_the_local_count_of_requests_in_flight() -> None:
    budget = RateLimitBudget()
    for _ in range(50):
        budget.reserve(T0)
    budget.observe({"x-readratelimit-usage": "3,3"}, T0)
    assert budget.usage(T0).read_used == (50, 50)


def test_usage_reported_for_a_request_sent_in_the_previous_window_is_ignored() -> None:
    budget = RateLimitBudget()
    later = ts("2024-03-01T10:15:01")
    budget.observe({"x-readratelimit-usage": "100,900"}, later, sent_at=ts("2024-03-01T10:14:59"))
    assert budget.usage(later).read_used == (0, 900)
    assert budget.reserve(later) is None


def test_a_request_in_a_windows_first_second_needs_room_in_the_window_before_too() -> None:
    """Strava's clock may be a little behind ours: a request sent right after a reset may count in the window
    before. It goes if that window had room, and counts in both; else it waits out the skew allowance."""
    quarter = ts("2024-03-01T10:15:00")
    budget = RateLimitBudget()
    assert all(budget.reserve(quarter - 60) is None for _ in range(97))
    assert all(budget.reserve(quarter + 0.2) is None for _ in range(3))  # the window before had 3 left
    assert budget.reserve(quarter + 0.2) == quarter + CLOCK_SKEW_S
    assert budget.usage(quarter + 0.2).read_used == (3, 100)
    assert budget.reserve(quarter + CLOCK_SKEW_S) is None
    assert budget.usage(quarter + CLOCK_SKEW_S).read_used == (4, 101)


def test_a_window_after_an_idle_one_opens_at_its_reset() -> None:
    """Only the window just before can hold a request sent at a reset: after a quiet one, nothing waits."""
    budget = RateLimitBudget()
    assert all(budget.reserve(T0) is None for _ in range(100))
    assert budget.reserve(ts("2024-03-01T10:30:00")) is None


def test_a_spent_daily_limit_holds_the_days_first_second_too() -> None:
    budget = RateLimitBudget(read_limits=(100, 150))
    midnight = ts("2024-03-02T00:00:00")
    budget.observe({"x-readratelimit-usage": "20,150"}, midnight - 10, sent_at=midnight - 11)
    budget.observe({"x-readratelimit-usage": "0,0"}, midnight + 0.5, sent_at=midnight + 0.4)  # nothing learnt
    assert budget.reserve(midnight + 0.5) == midnight + CLOCK_SKEW_S
    assert budget.reserve(midnight + CLOCK_SKEW_S) is None


def test_usage_reported_for_a_request_sent_in_a_windows_first_second_counts_for_the_window_before() -> None:
    """Taken for the new window, the usage of one spent or nearly spent would hold back most of it (at midnight,
    most of the day); it holds back the skew allowance only."""
    midnight = ts("2024-03-02T00:00:00")
    budget = RateLimitBudget()
    budget.observe({"x-readratelimit-usage": "97,990"}, midnight + 0.4, sent_at=midnight + 0.3)
    assert budget.usage(midnight + 0.4).read_used == (0, 0)
    assert all(budget.reserve(midnight + 0.4) is None for _ in range(3))
    assert budget.reserve(midnight + 0.4) == midnight + CLOCK_SKEW_S
    budget.observe({"x-readratelimit-usage": "98,99"}, midnight + 1.5, sent_at=midnight + CLOCK_SKEW_S)
    assert budget.usage(midnight + 1.5).read_used == (98, 99)
    spent = RateLimitBudget()  # a spent window reported in a quarter's first second: the window before's
    quarter = ts("2024-03-02T10:15:00")
    spent.observe({"x-readratelimit-usage": "100,400"}, quarter + 0.4, sent_at=quarter + 0.3)
    assert spent.usage(quarter + 0.4).read_used == (0, 400)  # the day is not in its first second
    assert spent.reserve(quarter + 0.4) == quarter + CLOCK_SKEW_S  # the window before is spent: not in its second
    assert spent.reserve(quarter + CLOCK_SKEW_S) is None


@pytest.mark.parametrize(
    ("sent", "daily", "expected"),
    [
        ("2024-03-01T10:07:00", False, "2024-03-01T10:15:00"),
        ("2024-03-01T10:14:59.8", False, "2024-03-01T10:15:00"),  # answered after the reset: it has passed
        ("2024-03-01T10:15:00.3", False, "2024-03-01T10:30:00"),  # a 15-minute 429 is believed at once
        ("2024-03-01T10:07:00", True, "2024-03-02T00:00:00"),
        ("2024-03-01T23:59:59.9", True, "2024-03-02T00:00:00"),
        ("2024-03-02T00:00:00.5", True, "2024-03-02T00:00:00"),  # yesterday's: Strava's clock is behind ours
        ("2024-03-02T00:00:02", True, "2024-03-03T00:00:00"),
    ],
)
def test_a_429_ends_with_the_window_it_was_sent_in(sent: str, daily: bool, expected: str) -> None:
    assert reset_after_429(ts(sent), daily=daily) == after(expected)


def test_block_until_refuses_every_request_until_the_given_reset() -> None:
    budget = RateLimitBudget()
    reset = after("2024-03-01T10:15:00")
    budget.block_until(reset)
    assert budget.reserve(T0) == reset
    assert budget.reserve(T0, read=False) == reset
    assert budget.reserve(reset) is None
