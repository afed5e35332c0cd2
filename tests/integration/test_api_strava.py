"""The API with Strava: OAuth connect, a real strava_sync against FakeStrava, webhooks, and secrets."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from syncsim import defaults
from syncsim.api.serve import running_server
from syncsim.api.strava import DEAUTHORIZED_REASON
from syncsim.clock import SystemClock
from syncsim.defaults import WEBHOOK_READS_PER_WINDOW
from syncsim.jobs.model import JobStatus
from syncsim.stores import Store, open_store
from syncsim.strava.fake import FakeStrava
from syncsim.strava.upkeep import strava_upkeep
from tests.support.api import SECRET, VERIFY_TOKEN, ApiHarness, assert_json_error, poll_until


class StravaWorld:
    """A FakeStrava, a StravaClient that talks to it and stores tokens in ``store``, and the API over both."""

    def __init__(self, store: Store, *, latency_s: float = 0.0, **options: Any) -> None:
        self.store = store
        self.fake = FakeStrava(clock=SystemClock(), seed=7, latency=latency_s)
        self.client = self.fake.client(tokens=store)
        self.api = ApiHarness(store, strava=self.client, resources={"strava": self.client}, **options)

    async def connected_athlete(self, user: uuid.UUID, activities: int) -> int:
        """An athlete with ``activities`` activities whose tokens the store already holds for ``user``."""
        athlete = self.fake.add_athlete(activities=activities)
        await self.store.save_tokens(user, athlete.tokens(), now=SystemClock().now())
        return athlete.athlete_id


@pytest.fixture
async def world(store: Store) -> AsyncIterator[StravaWorld]:
    w = StravaWorld(store)
    yield w
    await w.api.drain()
    await w.client.aclose()


def _start(activity: dict[str, Any]) -> float:
    return datetime.fromisoformat(activity["start_date"]).timestamp()


def _event(owner_id: int, **fields: Any) -> dict[str, Any]:
    event = {
        "object_type": "activity",
        "object_id": 1_234_567,
        "aspect_type": "create",
        "updates": {},
        "owner_id": owner_id,
        "subscription_id": 120_475,
        "event_time": 1_700_000_000,
    }
    event.update(fields)
    return event


async def test_connect_then_sync_stores_every_activity_once(world: StravaWorld, user_id: uuid.UUID) -> None:
    athlete = world.fake.add_athlete(activities=450)
    api = world.api
    async with running_server(api.app) as base_url, api.client(base_url) as client:
        connect = await client.post("/api/strava/connect", json={"code": athlete.code}, headers=api.auth(user_id))
        assert connect.status_code == 200, connect.text
        assert connect.json() == {"athleteId": athlete.athlete_id}
        response = await client.post("/api/sync", headers=api.auth(user_id))  # no body: a strava_sync
        assert response.status_code == 202 and response.json()["created"] is True
        job, _ = await poll_until(client, response.json()["jobId"], api.auth(user_id))
        assert job["status"] == "completed", job
        assert job["type"] == "strava_sync"
        assert job["result"]["activities"] == 450 and job["result"]["pages"] == 4  # 200 + 199 + 51 new, the boundary
        assert await world.store.count_activities(user_id) == 450
        # Syncing again is incremental and idempotent: nothing new, nothing duplicated.
        again = await client.post("/api/sync", headers=api.auth(user_id))
        job, _ = await poll_until(client, again.json()["jobId"], api.auth(user_id))
    assert job["status"] == "completed" and job["result"]["mode"] == "incremental"
    assert await world.store.count_activities(user_id) == 450
    tokens = await world.store.get_tokens(user_id)
    assert tokens is not None and tokens.athlete_id == athlete.athlete_id
    assert tokens.access_token not in connect.text and tokens.refresh_token not in connect.text


async def test_connect_with_a_refused_code_is_400_and_stores_nothing(world: StravaWorld, user_id: uuid.UUID) -> None:
    world.fake.add_athlete(activities=1)
    async with world.api.client() as client:
        response = await client.post(
            "/api/strava/connect", json={"code": "not-a-real-code"}, headers=world.api.auth(user_id)
        )
    assert_json_error(response, 400)
    assert await world.store.get_tokens(user_id) is None


async def test_webhook_challenge_is_echoed_only_for_the_right_verify_token(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    await store.migrate()
    api = ApiHarness(store)
    query = "hub.mode=subscribe&hub.challenge=15f7d1a91c1f40f8a748fd134752feb3"
    async with api.client() as client:
        right = await client.get(f"/api/strava/webhook?{query}&hub.verify_token={VERIFY_TOKEN}")
        wrong = await client.get(f"/api/strava/webhook?{query}&hub.verify_token=guess")
        missing = await client.get(f"/api/strava/webhook?{query}")
    assert right.status_code == 200
    assert right.json() == {"hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3"}
    assert_json_error(wrong, 403)
    assert_json_error(missing, 403)
    await store.close()


async def test_the_challenge_fails_on_a_path_whose_events_would_be_dropped(sqlite_url: str) -> None:
    """Found by probing: with a callback secret set, the challenge passed on the bare path and on a wrong
    secret, so Strava accepted a subscription whose every event was then dropped."""
    store = open_store(sqlite_url)
    await store.migrate()
    secret = "cb-" + "4" * 29
    api = ApiHarness(store, webhook_secret=secret)
    query = f"hub.mode=subscribe&hub.challenge=c0ffee&hub.verify_token={VERIFY_TOKEN}"
    async with api.client() as client:
        bare = await client.get(f"/api/strava/webhook?{query}")
        wrong = await client.get(f"/api/strava/webhook/{'4' * 32}?{query}")
        right = await client.get(f"/api/strava/webhook/{secret}?{query}")
    for answer in (bare, wrong):
        assert "not the webhook's callback path" in assert_json_error(answer, 403)
    assert right.status_code == 200 and right.json() == {"hub.challenge": "c0ffee"}
    await store.close()


async def test_activity_events_are_answered_at_once_and_each_activity_is_re_read_by_id(
    store: Store, user_id: uuid.UUID
) -> None:
    """A create event stores its activity whatever its start date: a late upload older than everything synced,
    which an incremental sync would never reach. Events about one activity collapse into one re-read."""
    world = StravaWorld(store, latency_s=0.1)
    athlete_id = await world.connected_athlete(user_id, activities=450)
    oldest = world.fake.activity(world.fake.activity_ids(athlete_id)[-1])
    late = world.fake.add_activity(athlete_id, start_date=_start(oldest) - 86_400, name="Last year's race")
    api = world.api
    async with running_server(api.app) as base_url, api.client(base_url) as client:
        created = await client.post("/api/strava/webhook", json=_event(athlete_id, object_id=late["id"]))
        # Strava wants its 200 within 2 s: it comes before the re-read (0.1 s) is done.
        assert await store.count_activities(user_id) == 0
        again = await client.post(
            "/api/strava/webhook", json=_event(athlete_id, object_id=late["id"], aspect_type="update")
        )
        assert (created.status_code, again.status_code) == (200, 200)
        assert created.json() == again.json() == {"status": "accepted"}
        await api.drain()
    jobs = await store.list_jobs(user_id=user_id)
    assert [(job.type, job.status) for job in jobs] == [("strava_events", JobStatus.COMPLETED)]
    assert list(await store.stored_activities(user_id)) == [late["id"]]
    reads = [r for r in world.fake.requests if r.path == f"/api/v3/activities/{late['id']}"]
    assert 1 <= len(reads) <= 2  # the second event may arrive while the first read is under way
    await world.client.aclose()


async def test_a_confirmed_deauthorization_removes_tokens_and_ends_pending_jobs(
    world: StravaWorld, user_id: uuid.UUID
) -> None:
    athlete_id = await world.connected_athlete(user_id, activities=3)
    runner = world.api.runner
    pending = [(await runner.submit(user_id, {}, type=t))[0].id for t in ("strava_sync", "demo")]
    bystander = uuid.uuid4()
    await world.connected_athlete(bystander, activities=3)
    world.fake.revoke(athlete_id)  # the athlete revoked the app on Strava
    event = _event(athlete_id, object_type="athlete", object_id=athlete_id, aspect_type="update")
    event["updates"] = {"authorized": "false"}
    async with world.api.client() as client:
        response = await client.post("/api/strava/webhook", json=event)
    assert response.status_code == 200
    await world.api.drain()
    assert await world.store.get_tokens(user_id) is None
    assert await world.store.user_for_athlete(athlete_id) is None
    for job_id in pending:
        job = await world.store.get_job(job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.error == DEAUTHORIZED_REASON
    assert await world.store.get_tokens(bystander) is not None  # nobody else is touched


async def test_a_forged_deauthorization_that_strava_does_not_confirm_changes_nothing(
    world: StravaWorld, user_id: uuid.UUID
) -> None:
    """Issue #16, D5. Before: an unsigned deauthorization event deleted the athlete's tokens and failed their
    jobs. Now Strava is asked first (a refresh of the token), and still authorizes the athlete."""
    athlete_id = await world.connected_athlete(user_id, activities=3)
    job, _ = await world.api.runner.submit(user_id, {}, type="strava_sync")
    forged = _event(athlete_id, object_type="athlete", object_id=athlete_id, aspect_type="update")
    forged["updates"] = {"authorized": "false"}
    async with world.api.client() as client:
        response = await client.post("/api/strava/webhook", json=forged)
    assert response.json() == {"status": "accepted"}
    await world.api.drain()
    assert await world.store.get_tokens(user_id) is not None
    still = await world.store.get_job(job.id)
    assert still is not None and still.status is not JobStatus.FAILED


async def test_events_of_unknown_athletes_are_acknowledged_and_ignored(world: StravaWorld) -> None:
    async with world.api.client() as client:
        response = await client.post("/api/strava/webhook", json=_event(owner_id=424242))
        deauth = await client.post(
            "/api/strava/webhook",
            json=_event(424242, object_type="athlete", aspect_type="update", updates={"authorized": "false"}),
        )
    assert (response.status_code, deauth.status_code) == (200, 200)
    await world.api.drain()
    assert await world.store.list_jobs() == []


async def test_secrets_never_appear_in_responses_or_logs(
    world: StravaWorld, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    athlete = world.fake.add_athlete(activities=30)
    api = world.api
    bearer = api.token(user_id)
    headers = {"Authorization": f"Bearer {bearer}"}
    bodies = []
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/strava/connect", {"json": {"code": athlete.code}, "headers": headers}),
        ("POST", "/api/sync", {"headers": headers}),
        ("GET", "/api/sync", {"headers": headers}),
        ("GET", f"/api/strava/webhook?hub.mode=subscribe&hub.challenge=c&hub.verify_token={VERIFY_TOKEN}", {}),
        ("GET", "/api/strava/webhook?hub.mode=subscribe&hub.challenge=c&hub.verify_token=wrong", {}),
        ("POST", "/api/strava/webhook", {"json": _event(athlete.athlete_id)}),
        ("GET", "/api/sync", {"headers": {"Authorization": f"Bearer {bearer}x"}}),
        ("GET", "/healthz", {}),
    ]
    async with api.client() as client:
        for method, url, options in requests:
            response = await client.request(method, url, **options)
            bodies.append(response.text)
        await api.drain()
        bodies.append((await client.get("/api/sync", headers=headers)).text)
    tokens = await world.store.get_tokens(user_id)
    assert tokens is not None
    secrets = [SECRET, VERIFY_TOKEN, bearer, athlete.code, tokens.access_token, tokens.refresh_token]
    secrets += [world.fake.client_secret]
    # The test client's own request log names its URLs (with the verify token it sent): not the server's.
    server_logs = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not (record.name == "httpx" and "http://api.test" in record.getMessage())
    )
    assert "syncsim.api" in {record.name for record in caplog.records}  # the server did log
    for secret in secrets:
        assert all(secret not in body for body in bodies)
        assert secret not in server_logs


async def test_every_wrong_event_gets_the_same_answer_and_changes_nothing(store: Store, user_id: uuid.UUID) -> None:
    """Issue #16, D5. Before: another subscription's event was answered ``ignored`` (which let the subscription
    id be guessed) and the plain callback path took events from anyone. Now the callback path has a secret, and
    an event on the wrong path, of another subscription or of an unknown athlete gets the very answer a real one
    gets, and changes nothing."""
    secret = "cb-" + "7" * 29
    world = StravaWorld(store, webhook_subscription_id=120_475, webhook_secret=secret)
    athlete_id = await world.connected_athlete(user_id, activities=3)
    [activity_id] = world.fake.activity_ids(athlete_id)[:1]
    genuine = _event(athlete_id, object_id=activity_id, aspect_type="update")
    wrong = [
        ("/api/strava/webhook", genuine),
        ("/api/strava/webhook/" + "7" * 32, genuine),
        ("/api/strava/webhook/%C3%A9" + "7" * 31, genuine),  # non-ASCII: compare_digest refused str, a 500
        (f"/api/strava/webhook/{secret}", {**genuine, "subscription_id": 1}),
        (f"/api/strava/webhook/{secret}", {**genuine, "owner_id": 4242}),
    ]
    async with world.api.client() as client:
        answers = [await client.post(path, json=event) for path, event in wrong]
        await world.api.drain()
        assert await store.list_jobs(user_id=user_id) == [] and world.fake.requests == []
        right = await client.post(f"/api/strava/webhook/{secret}", json=genuine)
        await world.api.drain()
    assert {(a.status_code, a.text) for a in answers} == {(right.status_code, right.text)}
    assert [job.type for job in await store.list_jobs(user_id=user_id)] == ["strava_events"]
    assert list(await store.stored_activities(user_id)) == [activity_id]
    await world.client.aclose()


async def test_edited_deleted_and_new_activities_reach_the_store_by_webhook(
    sqlite_url: str, user_id: uuid.UUID
) -> None:
    store = open_store(sqlite_url)
    await store.migrate()
    world = StravaWorld(store)
    athlete_id = await world.connected_athlete(user_id, activities=300)
    api = world.api
    async with api.client() as client:
        job = await client.post("/api/sync", headers=api.auth(user_id))
        assert job.status_code == 202
        await api.drain()
        assert await store.count_activities(user_id) == 300
        oldest, second, *_ = world.fake.activity_ids(athlete_id)
        world.fake.update_activity(oldest, name="Renamed on Strava")
        world.fake.delete_activity(second)
        newest = world.fake.add_activity(athlete_id, name="Brand new")
        for event in (
            _event(athlete_id, object_id=oldest, aspect_type="update", updates={"title": "Renamed on Strava"}),
            _event(athlete_id, object_id=second, aspect_type="delete"),
            _event(athlete_id, object_id=newest["id"], aspect_type="create"),
        ):
            answer = await client.post("/api/strava/webhook", json=event)
            assert answer.status_code == 200 and answer.json() == {"status": "accepted"}
        await api.drain()
    names = dict(store.conn.execute("SELECT id, name FROM strava_activities WHERE user_id = ?", (str(user_id),)))
    assert names[oldest] == "Renamed on Strava" and names[newest["id"]] == "Brand new"
    assert second not in names and len(names) == 300
    detail_requests = [r for r in world.fake.requests if r.path.startswith("/api/v3/activities/")]
    assert len(detail_requests) == 3  # one re-read per activity named; a deletion is confirmed by its 404
    await world.client.aclose()
    await store.close()


async def test_a_flood_of_events_for_one_athlete_cannot_spend_the_apps_budget(
    sqlite_url: str, user_id: uuid.UUID
) -> None:
    """Issue #16, D5. Before: 100 forged ``update`` events spent the whole 15-minute read budget at once and the
    next user's sync made no request. Now one athlete's events are deduplicated and re-read at most
    WEBHOOK_READS_PER_WINDOW times a quarter hour; the rest wait, and another user's sync still runs."""
    store = open_store(sqlite_url)
    await store.migrate()
    world = StravaWorld(store)
    athlete_id = await world.connected_athlete(user_id, activities=150)
    ids = world.fake.activity_ids(athlete_id)
    other = uuid.uuid4()
    await world.connected_athlete(other, activities=50)
    async with world.api.client() as client:
        for n in range(100):  # 100 events naming 60 activities
            event = _event(athlete_id, object_id=ids[n % 60], aspect_type="update", event_time=1_700_000_000 + n)
            assert (await client.post("/api/strava/webhook", json=event)).status_code == 200
        await world.api.drain()
        sync = await client.post("/api/sync", headers=world.api.auth(other))
        await world.api.drain()
    reads = [r for r in world.fake.requests if r.path.startswith("/api/v3/activities/")]
    activity_reads = WEBHOOK_READS_PER_WINDOW - 1  # the window's last slot is a deauthorization's
    assert len(reads) == activity_reads
    assert len(await store.pending_activity_events(user_id, limit=100)) == 60 - activity_reads
    [events_job] = [j for j in await store.list_jobs(user_id=user_id) if j.type == "strava_events"]
    assert events_job.status is JobStatus.PENDING and "quarter hour" in (events_job.error or "")
    done = await store.get_job(uuid.UUID(sync.json()["jobId"]))
    assert done is not None and done.status is JobStatus.COMPLETED and await store.count_activities(other) == 50
    await world.client.aclose()
    await store.close()


async def test_a_change_during_a_sync_is_not_undone_by_a_page_listed_before_it(
    store: Store, user_id: uuid.UUID
) -> None:
    """Found by probing end to end: an activity deleted (or edited) on Strava while a page holding it was on its
    way was re-read by its webhook first (404: nothing to delete yet; or the edit stored), and the page, listed
    before the change, then wrote the old row: the deleted activity came back, the edit was undone, and the sync
    completed with the store no longer Strava's. The events now wait for the sync, and are read after it."""
    from syncsim.job_types import default_handlers
    from syncsim.jobs.runner import JobRunner
    from syncsim.strava.fake import LatencyModel
    from tests.support.clocks import ManualClock

    # A page of 200 takes 2 s to answer, one activity 0.06 s: the events' reads overtake the page.
    world = StravaWorld(store, latency_s=LatencyModel(median_s=0.05, per_item_s=0.01))  # type: ignore[arg-type]
    athlete_id = await world.connected_athlete(user_id, activities=300)
    deleted, edited = world.fake.activity_ids(athlete_id)[:2]  # the newest two: on the first page
    async with world.api.client() as client:
        assert (await client.post("/api/sync", headers=world.api.auth(user_id))).status_code == 202
        while not any("/athlete/activities" in r.path for r in world.fake.requests):  # the first page is asked for
            await asyncio.sleep(0.01)
        world.fake.delete_activity(deleted)
        world.fake.update_activity(edited, name="Renamed during the sync")
        for event in (
            _event(athlete_id, object_id=deleted, aspect_type="delete"),
            _event(athlete_id, object_id=edited, aspect_type="update", updates={"title": "Renamed during the sync"}),
        ):
            assert (await client.post("/api/strava/webhook", json=event)).status_code == 200
        await world.api.drain()
    [events_job] = [job for job in await store.list_jobs(user_id=user_id) if job.type == "strava_events"]
    assert events_job.status is JobStatus.PENDING and "read after it" in (events_job.error or ""), events_job
    later = JobRunner(
        store,
        handlers=default_handlers(),
        clock=ManualClock(SystemClock().now() + defaults.EVENTS_WAIT_FOR_SYNC_S + 1),
        resources={"strava": world.client},
    )
    done = await later.run_job(events_job.id)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    stored = await store.stored_activities(user_id)
    truth = world.fake.truth(athlete_id)
    assert set(stored) == set(truth) and deleted not in stored
    assert stored[edited].fields.name == "Renamed during the sync"
    await world.client.aclose()


async def test_a_deauthorization_after_a_flood_of_events_is_confirmed_and_leaves_no_event_behind(
    store: Store, user_id: uuid.UUID
) -> None:
    """Found by probing end to end: activity events spent the athlete's whole quarter-hour quota, and the genuine
    deauthorization that followed was dropped ("throttled"), its tokens and activities kept; after a confirmed
    one, the events still pending made the upkeep submit a failing ``strava_events`` job at every tick."""
    world = StravaWorld(store)
    athlete_id = await world.connected_athlete(user_id, activities=40)
    ids = world.fake.activity_ids(athlete_id)
    async with world.api.client() as client:
        for activity_id in ids[:30]:
            await client.post(
                "/api/strava/webhook", json=_event(athlete_id, object_id=activity_id, aspect_type="update")
            )
        await world.api.drain()
        assert await store.pending_activity_events(user_id, limit=100)  # the quota ran out with events left
        world.fake.revoke(athlete_id)
        event = _event(athlete_id, object_type="athlete", object_id=athlete_id, aspect_type="update")
        event["updates"] = {"authorized": "false"}
        assert (await client.post("/api/strava/webhook", json=event)).status_code == 200
        await world.api.drain()
    assert await store.get_tokens(user_id) is None
    assert await store.pending_activity_events(user_id, limit=100) == []
    assert await strava_upkeep(world.api.runner) == {"eventJobs": 0, "reconciles": 0}
    await world.client.aclose()


async def test_an_event_naming_another_athletes_activity_stores_nothing(store: Store, user_id: uuid.UUID) -> None:
    world = StravaWorld(store)
    athlete_id = await world.connected_athlete(user_id, activities=3)
    stranger = world.fake.add_athlete(activities=3)
    [theirs] = world.fake.activity_ids(stranger.athlete_id)[:1]
    async with world.api.client() as client:
        await client.post("/api/strava/webhook", json=_event(athlete_id, object_id=theirs))
        await world.api.drain()
    assert await store.count_activities(user_id) == 0
    [job] = await store.list_jobs(user_id=user_id)
    assert job.status is JobStatus.COMPLETED and job.result == {"stored": 0, "removed": 0, "ignored": 1}
    await world.client.aclose()


@pytest.mark.parametrize("deleted_by", ["this process", "another process"])
async def test_a_sync_after_the_tokens_were_deleted_does_not_run_with_them(
    store: Store, store_url: str, user_id: uuid.UUID, deleted_by: str
) -> None:
    """Issue #16, D6. Before: the Strava client kept the tokens of its last sync in memory, so the next sync
    ran with tokens the store no longer held (deleted by this process or by another one)."""
    world = StravaWorld(store)
    await world.connected_athlete(user_id, activities=5)
    api = world.api
    async with api.client() as client:
        first = await client.post("/api/sync", headers=api.auth(user_id))
        done, _ = await poll_until(client, first.json()["jobId"], api.auth(user_id))
        assert done["status"] == "completed", done
        if deleted_by == "this process":
            assert await store.delete_tokens(user_id)
        else:
            other = open_store(store_url)
            assert await other.delete_tokens(user_id)
            await other.close()
        second = await client.post("/api/sync", json={"payload": {"mode": "full"}}, headers=api.auth(user_id))
        job, _ = await poll_until(client, second.json()["jobId"], api.auth(user_id))
    assert job["status"] == "failed" and "no Strava connection" in job["error"], job
    await world.client.aclose()
