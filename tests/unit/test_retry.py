from __future__ import annotations

import random

import pytest

from syncsim.errors import InvalidInput, RateLimited, RetryableError, StravaDown, Unauthorized
from syncsim.retry import Fail, Retry, RetryPolicy, Wait, describe


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=2, factor=2, max_s=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 10, 10, 10]


def test_backoff_with_jitter_is_exactly_the_documented_formula() -> None:
    policy = RetryPolicy(base_s=1, factor=3, max_s=100, jitter=0.5)
    draws = random.Random(7)
    expected = [min(100, 1 * 3 ** (n - 1)) * (1 + 0.5 * draws.uniform(-1, 1)) for n in range(1, 6)]
    rng = random.Random(7)
    assert [policy.delay(n, rng) for n in range(1, 6)] == expected
    assert expected == pytest.approx([0.82, 1.95, 10.36, 15.46, 83.91], abs=0.01)


def test_retryable_errors_retry_until_attempts_run_out() -> None:
    policy = RetryPolicy(base_s=2, jitter=0)
    first = policy.decide(RetryableError("503"), attempt=1, max_attempts=3)
    assert first == Retry(retry_in=2, reason="attempt 1 of 3 failed, retrying in 2.0 s: RetryableError: 503")
    last = policy.decide(RetryableError("503"), attempt=3, max_attempts=3)
    assert isinstance(last, Fail) and "no attempts left" in last.reason


def test_a_revoked_token_is_not_retried() -> None:
    decision = RetryPolicy().decide(Unauthorized("token revoked"), attempt=1, max_attempts=3)
    assert isinstance(decision, Fail) and "not retried" in decision.reason and "revoked" in decision.reason


def test_rate_limits_wait_for_the_reset_without_spending_attempts() -> None:
    decision = RetryPolicy().decide(RateLimited("read limit", reset_at=900.0), attempt=3, max_attempts=3)
    assert isinstance(decision, Wait) and decision.at == 900.0


def test_unexpected_errors_are_retryable_and_described_on_one_line() -> None:
    decision = RetryPolicy(jitter=0).decide(KeyError("x\ny"), attempt=1, max_attempts=2)
    assert isinstance(decision, Retry) and "\n" not in decision.reason and "KeyError" in decision.reason


@pytest.mark.parametrize(
    "bad",
    [
        {"factor": 0.5},
        {"base_s": -1.0},
        {"base_s": float("nan")},
        {"max_s": float("inf")},
        {"jitter": 1.5},
        {"base_s": "1"},  # a TypeError from math.isfinite before
        {"jitter": None},
    ],
)
def test_invalid_policy_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match="RetryPolicy needs finite base_s >= 0"):
        RetryPolicy(**bad)


def test_an_outage_waits_if_something_continues_the_job_else_it_is_the_failure_it_also_is() -> None:
    """StravaDown is a Reschedule (wait, shared, no attempt spent) and a StravaUnavailable: under inline retries
    (``continued=False``), where nothing would continue a waiting job, it spends an attempt like any failure."""
    down = StravaDown("GET /athlete/activities: HTTP 503 after 1 attempts; Strava is down", at=1_000.0, looks=2)
    policy = RetryPolicy(jitter=0.0)
    waits = policy.decide(down, attempt=1, max_attempts=3)
    assert waits == Wait(at=1_000.0, reason=describe(down), shared=True, looks=2)  # the looks go to the store
    retries = policy.decide(down, attempt=1, max_attempts=3, continued=False)
    assert isinstance(retries, Retry) and retries.retry_in == 2.0 and "StravaDown" in retries.reason
    assert isinstance(policy.decide(down, attempt=3, max_attempts=3, continued=False), Fail)
    # Other reschedules wait either way (a rate limit under inline retries waits for its window, as before).
    limited = RateLimited("GET /athlete/activities: spent", reset_at=900.0)
    assert policy.decide(limited, attempt=1, max_attempts=3, continued=False) == Wait(
        at=900.0, reason=describe(limited), shared=True
    )
