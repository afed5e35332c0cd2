"""What a ``reconcile`` costs in Strava requests: counted from the requests FakeStrava served, by route.

An unchanged history of 2,000 activities (at distinct seconds) costs its list pages and nothing else:
``list_requests_needed(2000)`` = ceil((2000 − 200) / 199) + 3 = 13 list requests (the first page brings 200, each
next one 199 new after re-reading its boundary second, then one page of the boundary alone and the empty page
that ends the listing) and no ``GET /activities/{id}``, with details on or off. A repair costs the same listing
plus one detail request per activity written when details are on (missing from the store, or stale), none when
they are off; an activity Strava no longer has is removed for no request at all.

Same harness as test_sync.py: SQLite under virtual time, PostgreSQL in real time.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from syncsim.errors import InvalidInput
from syncsim.jobs.model import JobStatus
from syncsim.strava.fake import FakeStrava
from syncsim.strava.models import Activity
from syncsim.strava.sync import list_requests_needed
from tests.integration.test_sync import Env, in_virtual_time

HISTORY = 2000
#: The issue states the count: 13 list requests for 2,000 activities (module docstring).
LIST_REQUESTS = 13
UNLIMITED = (10**9, 10**9)


def _requests_by_route(fake: FakeStrava, since: int) -> Counter[str]:
    """Requests FakeStrava received after the ``since``-th, by route: ``list``, ``detail``, or the path."""
    routes: Counter[str] = Counter()
    for request in fake.requests[since:]:
        if request.path == "/api/v3/athlete/activities":
            routes["list"] += 1
        elif request.path.startswith("/api/v3/activities/"):
            routes["detail"] += 1
        else:
            routes[request.path] += 1
    return routes


async def _synced_athlete(env: Env, *, detail: bool) -> tuple[uuid.UUID, int]:
    """A user whose 2,000 activities a full sync stored (detailed ones if ``detail``); (user, athlete id)."""
    # The full detail sync's 2,000 detail requests would wait out Strava's default limits for days: lift them.
    env.fake.read_limits = env.fake.overall_limits = UNLIMITED
    user, athlete = await env.athlete(HISTORY)
    job, _ = await env.runner().submit(user, {"mode": "full", "detail": detail})
    done = await env.runner().run_next(job_id=job.id)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert await env.store.count_activities(user) == HISTORY
    return user, athlete.athlete_id


async def _reconcile(env: Env, user: uuid.UUID, *, detail: bool) -> tuple[dict[str, Any], Counter[str]]:
    """One reconcile job of ``user``; (its result, the requests it made by route)."""
    since = len(env.fake.requests)
    job, _ = await env.runner().submit(user, {"mode": "reconcile", "detail": detail})
    done = await env.runner().run_next(job_id=job.id)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert done.result is not None
    return done.result, _requests_by_route(env.fake, since)


async def _assert_store_equals_strava(env: Env, user: uuid.UUID, athlete_id: int) -> None:
    truth = env.fake.truth(athlete_id)
    stored = await env.store.stored_activities(user)
    assert set(stored) == set(truth)
    assert all(stored[i].fields == Activity.from_json(truth[i]).fields for i in truth)


def test_the_stated_list_count_is_what_the_formula_gives() -> None:
    assert list_requests_needed(HISTORY) == LIST_REQUESTS
    assert list_requests_needed(HISTORY - 1) == LIST_REQUESTS  # one activity fewer: the same pages


@pytest.mark.parametrize("detail", [False, True], ids=["summary", "detail"])
def test_a_reconcile_of_an_unchanged_history_costs_its_list_pages_and_no_detail(store_url: str, detail: bool) -> None:
    async def scenario(env: Env) -> None:
        user, athlete_id = await _synced_athlete(env, detail=detail)
        result, routes = await _reconcile(env, user, detail=detail)
        assert routes == Counter({"list": LIST_REQUESTS})
        assert (result["activities"], result["removed"], result["requests"]) == (0, 0, LIST_REQUESTS)
        await _assert_store_equals_strava(env, user, athlete_id)

    in_virtual_time(store_url, scenario, latency=0.25)


@pytest.mark.parametrize("detail", [False, True], ids=["summary", "detail"])
def test_a_reconcile_repairs_the_store_for_the_same_list_pages_and_one_detail_per_activity_written(
    store_url: str, detail: bool
) -> None:
    """Three activities lost from the store, one edited on Strava (stale in the store), one deleted on Strava."""

    async def scenario(env: Env) -> None:
        user, athlete_id = await _synced_athlete(env, detail=detail)
        ids = env.fake.activity_ids(athlete_id)  # newest first
        lost = [ids[0], ids[777], ids[-1]]  # the newest, one mid-history, the oldest
        for activity_id in lost:
            assert await env.store.delete_activity(user, activity_id)
        env.fake.update_activity(ids[1234], name="Renamed on Strava")
        env.fake.delete_activity(ids[1500])

        result, routes = await _reconcile(env, user, detail=detail)
        written = len(lost) + 1  # the lost ones and the stale one
        expected = Counter({"list": list_requests_needed(HISTORY - 1)})
        if detail:
            expected["detail"] = written
        assert routes == expected
        assert list_requests_needed(HISTORY - 1) == LIST_REQUESTS
        assert (result["activities"], result["removed"]) == (written, 1)
        assert result["requests"] == LIST_REQUESTS + (written if detail else 0)
        await _assert_store_equals_strava(env, user, athlete_id)

        # Repaired, the history is unchanged again: back to the list pages alone.
        _, routes = await _reconcile(env, user, detail=detail)
        assert routes == Counter({"list": LIST_REQUESTS})

    in_virtual_time(store_url, scenario, latency=0.25)


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda: list_requests_needed(-1), "activities must be a whole number >= 0, got -1"),  # answered 1 before
        (lambda: list_requests_needed("2000"), "activities must be a whole number >= 0, got '2000'"),
        (lambda: list_requests_needed(10, per_page=1), "per_page must be a whole number >= 2, got 1"),
    ],
)
def test_a_request_count_for_an_impossible_history_is_refused(call: Callable[[], int], said: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(said)):
        call()
