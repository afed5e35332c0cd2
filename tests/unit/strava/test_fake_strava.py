"""FakeStrava on its own, spoken to over plain httpx: faithful to Strava's spec and documented facts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from syncsim.strava.fake import FakeStrava, Faults, LatencyModel, PageCache
from syncsim.strava.ratelimit import next_quarter_hour
from tests.support.clocks import ManualClock
from tests.unit.strava.helpers import START

BODY_401 = {
    "message": "Authorization Error",
    "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
}
BODY_429 = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}
#: The keys of the swagger's SummaryActivity example (GET /athlete/activities), minus the power-meter and
#: device fields that only some activities carry (average_watts, kilojoules, device_name, suffer_score, ...).
SUMMARY_KEYS = {
    "resource_state", "athlete", "name", "distance", "moving_time", "elapsed_time", "total_elevation_gain",
    "type", "sport_type", "workout_type", "id", "external_id", "upload_id", "start_date", "start_date_local",
    "timezone", "utc_offset", "start_latlng", "end_latlng", "location_city", "location_state",
    "location_country", "achievement_count", "kudos_count", "comment_count", "athlete_count", "photo_count",
    "map", "trainer", "commute", "manual", "private", "flagged", "gear_id", "from_accepted_tag",
    "average_speed", "max_speed", "has_heartrate", "average_heartrate", "max_heartrate", "pr_count",
    "total_photo_count", "has_kudoed",
}  # fmt: skip
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-usage", "x-readratelimit-limit", "x-readratelimit-usage")


@pytest.fixture
async def http(fake: FakeStrava) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url="https://www.strava.com", transport=fake.transport()) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_page_has_strava_s_summary_activity_shape(fake: FakeStrava, http: httpx.AsyncClient) -> None:
    athlete = fake.add_athlete(activities=30)
    response = await http.get("/api/v3/athlete/activities", headers=bearer(athlete.access_token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    items = response.json()
    assert len(items) == 30  # swagger: per_page defaults to 30
    for item in items:
        assert item.keys() >= SUMMARY_KEYS
        assert item["id"] >= 10**10
        assert item["athlete"] == {"id": athlete.athlete_id, "resource_state": 1}
        assert item["start_date"].endswith("Z")
        assert item["map"]["id"] == f"a{item['id']}"
        assert item["distance"] == pytest.approx(item["average_speed"] * item["moving_time"], rel=0.01, abs=1)
    detail = await http.get(f"/api/v3/activities/{items[0]['id']}", headers=bearer(athlete.access_token))
    assert detail.json()["resource_state"] == 3
    assert detail.json()["id"] == items[0]["id"]
    me = await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))
    assert me.json()["id"] == athlete.athlete_id


def test_the_same_seed_serves_the_same_bytes_and_another_seed_other_ones(clock: ManualClock) -> None:
    def first_page(seed: int) -> bytes:
        fake = FakeStrava(clock=ManualClock(START), seed=seed)
        athlete = fake.add_athlete(activities=500)
        return fake.page_json(athlete.athlete_id, page=2, per_page=200)

    assert first_page(1) == first_page(1)
    assert first_page(1) != first_page(2)


def test_activity_ids_are_unique_across_athletes_and_dates_span_years(fake: FakeStrava) -> None:
    a, b = fake.add_athlete(activities=4000), fake.add_athlete(activities=50)
    ids_a, ids_b = fake.activity_ids(a.athlete_id), fake.activity_ids(b.athlete_id)
    assert not set(ids_a) & set(ids_b)
    newest, oldest = fake.activity(ids_a[0]), fake.activity(ids_a[-1])
    assert int(newest["start_date"][:4]) - int(oldest["start_date"][:4]) >= 5


async def test_the_token_is_accepted_as_bearer_header_or_access_token_query_parameter(
    fake: FakeStrava, http: httpx.AsyncClient
) -> None:
    athlete = fake.add_athlete(activities=3)
    by_query = await http.get("/api/v3/athlete/activities", params={"access_token": athlete.access_token})
    assert by_query.status_code == 200
    assert len(by_query.json()) == 3
    assert all("?" not in r.path and athlete.access_token not in r.path for r in fake.requests)


@pytest.mark.parametrize("token", [None, "wrong", "expired", "revoked"])
async def test_a_missing_wrong_expired_or_revoked_token_gets_strava_s_401(
    fake: FakeStrava, http: httpx.AsyncClient, clock: ManualClock, token: str | None
) -> None:
    athlete = fake.add_athlete(activities=3)
    headers = {} if token is None else bearer(athlete.access_token if token != "wrong" else "f" * 40)
    if token == "expired":
        clock.advance(6 * 3600)
    if token == "revoked":
        fake.revoke(athlete.athlete_id)
    response = await http.get("/api/v3/athlete", headers=headers)
    assert response.status_code == 401
    assert response.json() == BODY_401
    assert all(h in response.headers for h in RATE_HEADERS)


async def test_every_api_response_carries_the_rate_headers_and_rejections_still_count(
    clock: ManualClock,
) -> None:
    fake = FakeStrava(clock=clock, read_limits=(3, 10), overall_limits=(5, 20))
    athlete = fake.add_athlete(activities=1)
    async with httpx.AsyncClient(base_url="https://www.strava.com", transport=fake.transport()) as http:
        statuses, usage = [], []
        for _ in range(5):
            response = await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))
            statuses.append(response.status_code)
            usage.append(response.headers["x-readratelimit-usage"])
            assert response.headers["x-readratelimit-limit"] == "3,10"
            assert response.headers["x-ratelimit-limit"] == "5,20"
        assert statuses == [200, 200, 200, 429, 429]
        assert usage == ["1,1", "2,2", "3,3", "4,4", "5,5"]  # the rejected ones count too
        assert response.json() == BODY_429
        assert "retry-after" not in response.headers  # Strava sends none
        clock.set(next_quarter_hour(clock.now()))  # the quarter-hour window resets, the day does not
        response = await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))
        assert response.status_code == 200
        assert response.headers["x-readratelimit-usage"] == "1,6"


async def test_a_429_storm_answers_every_api_request_until_switched_off(
    fake: FakeStrava, http: httpx.AsyncClient
) -> None:
    athlete = fake.add_athlete(activities=1)
    fake.faults.storm = True
    assert (await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))).status_code == 429
    fake.faults.storm = False
    assert (await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))).status_code == 200


async def test_refresh_keeps_a_token_with_more_than_an_hour_left_and_rotates_after(
    fake: FakeStrava, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    athlete = fake.add_athlete(activities=1)
    form = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": athlete.refresh_token,
    }
    same = (await http.post("/oauth/token", data=form)).json()
    assert same["access_token"] == athlete.access_token
    assert same["refresh_token"] == athlete.refresh_token
    assert same["expires_in"] == 21600
    assert same["token_type"] == "Bearer"
    clock.advance(5.5 * 3600)
    fresh = (await http.post("/api/v3/oauth/token", json=form)).json()  # JSON body, API-prefixed path
    assert fresh["access_token"] != athlete.access_token
    assert fresh["refresh_token"] != athlete.refresh_token
    assert fresh["expires_at"] == int(clock.now()) + 21600
    old = await http.post("/oauth/token", data=form)  # the old refresh token died at once
    assert old.status_code == 400
    assert old.json()["errors"][0]["field"] == "refresh_token"
    me = await http.get("/api/v3/athlete", headers=bearer(fresh["access_token"]))
    assert me.status_code == 200


async def test_an_authorization_code_works_once_and_returns_the_athlete(
    fake: FakeStrava, http: httpx.AsyncClient
) -> None:
    athlete = fake.add_athlete(activities=1)
    form = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "grant_type": "authorization_code",
        "code": athlete.code,
    }
    granted = await http.post("/oauth/token", data=form)
    assert granted.status_code == 200
    assert granted.json()["athlete"]["id"] == athlete.athlete_id
    again = await http.post("/oauth/token", data=form)
    assert again.status_code == 400


async def test_deauthorize_revokes_every_token_of_the_athlete(fake: FakeStrava, http: httpx.AsyncClient) -> None:
    athlete = fake.add_athlete(activities=1)
    response = await http.post("/oauth/deauthorize", headers=bearer(athlete.access_token))
    assert response.status_code == 200
    assert (await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))).status_code == 401
    form = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": athlete.refresh_token,
    }
    assert (await http.post("/oauth/token", data=form)).status_code == 400


async def test_scheduled_revocation_takes_effect_when_the_clock_passes_it(
    fake: FakeStrava, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    athlete = fake.add_athlete(activities=1)
    fake.faults.revoke_at[athlete.athlete_id] = START + 60
    assert (await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))).status_code == 200
    clock.advance(61)
    assert (await http.get("/api/v3/athlete", headers=bearer(athlete.access_token))).status_code == 401


def test_per_page_is_capped_at_200_and_pages_past_the_end_are_empty(fake: FakeStrava) -> None:
    athlete = fake.add_athlete(activities=450)
    response = fake.respond(
        "GET", "/api/v3/athlete/activities", "per_page=500&page=1", {"authorization": f"Bearer {athlete.access_token}"}
    )
    assert len(orjson.loads(response.body)) == 200
    assert fake.page_indices(athlete.athlete_id, page=4, per_page=200) == []


def test_added_updated_and_deleted_activities_show_in_the_pages(fake: FakeStrava, clock: ManualClock) -> None:
    athlete = fake.add_athlete(activities=300)
    aid = athlete.athlete_id
    old_ids = fake.activity_ids(aid)
    added = fake.add_activity(aid, name="Webhook Ride")
    assert fake.activity_ids(aid)[0] == added["id"]
    assert added["id"] not in old_ids
    fake.update_activity(old_ids[5], name="Renamed")
    fake.delete_activity(old_ids[0])
    fake.delete_activity(old_ids[250])
    page1 = orjson.loads(fake.page_json(aid, page=1, per_page=200))
    page2 = orjson.loads(fake.page_json(aid, page=2, per_page=200))
    served = [item["id"] for item in page1 + page2]
    assert served == [added["id"]] + [i for i in old_ids if i not in (old_ids[0], old_ids[250])]
    assert next(item for item in page1 if item["id"] == old_ids[5])["name"] == "Renamed"
    oldest_first = orjson.loads(fake.page_json(aid, page=1, per_page=200, after=0))
    assert [item["id"] for item in oldest_first] == list(reversed(served))[:200]
    # A late upload (a watch that synced a year later) takes its place by start time, in lists and pages.
    late = fake.add_activity(aid, start_date=START - 86400 * 365, name="Late upload")
    ids = fake.activity_ids(aid)
    starts = [fake.activity(i)["start_date"] for i in ids]
    assert late["id"] in ids and starts == sorted(starts, reverse=True)
    paged = [item["id"] for p in (1, 2) for item in orjson.loads(fake.page_json(aid, page=p, per_page=200))]
    assert paged == ids


def test_fakes_sharing_a_page_cache_serve_the_same_bytes_and_edits_are_never_shared(clock: ManualClock) -> None:
    cache = PageCache()
    plain, first, second = (FakeStrava(clock=clock, seed=7, page_cache=c) for c in (None, cache, cache))
    for fake in (plain, first, second):
        fake.add_athlete(activities=450)
        fake.add_athlete(activities=30)
    requests = [(aid, page, after) for aid in plain.athlete_ids for page in (1, 2, 3) for after in (None, 0.0)]

    def pages(fake: FakeStrava) -> list[bytes]:
        return [fake.page_json(aid, page=page, per_page=200, after=after) for aid, page, after in requests]

    expected = pages(plain)
    assert pages(first) == expected and cache.hits == 0
    assert pages(second) == expected and cache.hits == sum(1 for body in expected if body != b"[]")
    # An edited history is built afresh, whatever another instance left in the cache.
    aid = second.athlete_ids[0]
    renamed = second.activity_ids(aid)[0]
    second.update_activity(renamed, name="Renamed")
    assert orjson.loads(second.page_json(aid, page=1, per_page=200))[0]["name"] == "Renamed"
    assert orjson.loads(first.page_json(aid, page=1, per_page=200))[0]["name"] != "Renamed"


def test_a_page_cache_keeps_its_most_recent_pages_within_its_size() -> None:
    cache = PageCache(max_bytes=10)
    for key in "abcd":
        cache.put(key, key.encode() * 4)
    assert cache.size == 8 and cache.get("a") is None and cache.get("d") == b"dddd"
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None


async def test_a_timeout_fault_holds_the_request_for_the_read_timeout_then_raises(
    clock: ManualClock,
) -> None:
    fake = FakeStrava(clock=clock, faults=Faults(timeout_rate=1.0))
    athlete = fake.add_athlete(activities=1)
    async with httpx.AsyncClient(transport=fake.transport(), timeout=3.0) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("https://www.strava.com/api/v3/athlete", headers=bearer(athlete.access_token))
    assert clock.now() == START + 3.0


async def test_latency_is_spent_on_the_fake_s_clock(clock: ManualClock) -> None:
    fake = FakeStrava(clock=clock, latency=LatencyModel(median_s=0.4, per_item_s=0.001))
    athlete = fake.add_athlete(activities=200)
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        await http.get(
            "https://www.strava.com/api/v3/athlete/activities?per_page=200", headers=bearer(athlete.access_token)
        )
    assert clock.sleeps == [pytest.approx(0.6)]


async def test_latency_includes_the_fake_s_own_work(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A latency L answers L after the request arrived: time spent building the page counts towards it."""
    fake = FakeStrava(clock=clock, latency=0.05)
    athlete = fake.add_athlete(activities=10)
    build = fake.respond

    def slow_build(*args: object, **kwargs: object) -> object:
        clock.advance(0.03)  # the fake's CPU, as a real clock would see it
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fake, "respond", slow_build)
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        await http.get("https://www.strava.com/api/v3/athlete", headers=bearer(athlete.access_token))
        assert clock.sleeps == [pytest.approx(0.02, abs=1e-6)]
        clock.sleeps.clear()
        fake.latency = LatencyModel(median_s=0.01)  # slower to build than to answer: no wait at all
        await http.get("https://www.strava.com/api/v3/athlete", headers=bearer(athlete.access_token))
        assert clock.sleeps == []


def test_fault_decisions_are_seeded_and_do_not_depend_on_other_athletes_requests(clock: ManualClock) -> None:
    def statuses(seed: int, noise: bool) -> list[int]:
        fake = FakeStrava(clock=ManualClock(START), seed=seed, faults=Faults(error_rate=0.3))
        a, b = fake.add_athlete(activities=2000), fake.add_athlete(activities=2000)
        out = []
        for page in range(1, 11):
            if noise:
                fake.respond("GET", "/api/v3/athlete/activities", f"page={page}", bearer_lower(b.access_token))
            query = f"page={page}&per_page=200"
            out.append(fake.respond("GET", "/api/v3/athlete/activities", query, bearer_lower(a.access_token)).status)
        return out

    assert statuses(5, noise=False) == statuses(5, noise=True)
    assert any(s >= 500 for s in statuses(5, noise=False))
    assert statuses(5, noise=False) != statuses(6, noise=False)


def bearer_lower(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_latency_model_is_seeded_and_fits_observed_latencies() -> None:
    one, two = LatencyModel(median_s=0.5, sigma=0.4, seed=3), LatencyModel(median_s=0.5, sigma=0.4, seed=3)
    first = [one.sample() for _ in range(3)]
    assert [two.sample() for _ in range(3)] == first
    assert len(set(first)) == 3
    big = LatencyModel(median_s=0.5, sigma=0.4, seed=3)
    fitted = LatencyModel.from_latencies([big.sample() for _ in range(4000)])
    assert fitted.median_s == pytest.approx(0.5, rel=0.05)
    assert fitted.sigma == pytest.approx(0.4, rel=0.05)
    assert LatencyModel(median_s=0.25).sample(items=10) == 0.25
