"""The simulator's own machinery: the virtual-time loop, the in-process ASGI caller, compact Strava pages, the
sweep's ordering, the run's garbage-collector setting and the scheduler's clock. Each must be invisible in the
results, or model what it names."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import socket
import threading
import time
import types
import uuid
from typing import Any

import orjson
import pandas as pd
import pytest

from syncsim.errors import MalformedResponse
from syncsim.retry import RetryPolicy
from syncsim.sim import Scenario, Workload, simulate
from syncsim.sim.asgi import AsgiCaller
from syncsim.sim.browser import PollSchedule
from syncsim.sim.compare import expected_cost
from syncsim.sim.virtual import VirtualTimeLoop, _Timer, run_virtual, virtual_clock
from syncsim.sim.workload import WorkloadRow
from syncsim.strava.fake import COMPACT_SUMMARY_KEYS, FakeStrava
from syncsim.strava.models import Activity
from tests.support.clocks import ManualClock

# -- virtual time -------------------------------------------------------------------------------------------


def test_a_day_of_sleeping_lands_exactly_to_the_microsecond() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = []
        for delay in (86_400.0, 0.005, 1e-7, 0.25):
            await asyncio.sleep(delay)
            seen.append(loop.time())
        return seen

    # Integer microseconds: 1e-7 s is one tick, as a timer closer than one tick must still come due.
    assert run_virtual(main) == [86_400.0, 86_400.005, 86_400.005001, 86_400.255001]


def test_a_timer_between_two_ticks_fires_at_the_later_tick() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[str, float]] = []
        loop.call_later(1.0000004, lambda: fired.append(("later", loop.time())))
        loop.call_later(1.0, lambda: fired.append(("sooner", loop.time())))
        await asyncio.sleep(2.0)
        return fired

    assert run_virtual(main) == [("sooner", 1.0), ("later", 1.000001)]


def test_sleeps_less_than_half_a_microsecond_apart_wake_together_in_the_order_they_began() -> None:
    async def main() -> list[tuple[str, float]]:
        loop, clock = asyncio.get_running_loop(), virtual_clock(epoch=0.0)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, loop.time()))

        await asyncio.gather(sleeper("first, a bit longer", 1.0000004), sleeper("second", 1.0))
        return woke

    assert run_virtual(main) == [("first, a bit longer", 1.0), ("second", 1.0)]


def test_loop_timers_due_together_run_in_scheduling_order_and_cancelled_ones_never() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        handles = [loop.call_later(5.0 if i % 2 else 3.0, fired.append, i) for i in range(400)]
        for handle in handles[:300]:  # most of the heap cancelled: it is swept as new timers come
            handle.cancel()
        loop.call_later(4.0, fired.append, -1)
        await asyncio.sleep(10.0)
        return fired

    evens, odds = [i for i in range(300, 400) if i % 2 == 0], [i for i in range(300, 400) if i % 2]
    assert run_virtual(main) == [*evens, -1, *odds]


def test_cancelled_timers_are_swept_off_the_timeline_before_they_come_due() -> None:
    """Many timers armed and cancelled long before their time (a ``wait_for`` whose work finishes) must not pile up."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        for _ in range(10_000):
            loop.call_later(3_600.0, print).cancel()
        return len(loop._timeline.timers)

    assert run_virtual(main) <= 250


def test_a_timer_cancelled_in_the_instant_it_comes_due_never_runs() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        late: list[asyncio.TimerHandle] = []

        def first() -> None:
            fired.append("first")
            late[0].cancel()  # due at the same instant, already queued to run after this callback

        loop.call_at(1.0, first)
        late.append(loop.call_at(1.0, fired.append, "cancelled"))
        await asyncio.sleep(2.0)
        return fired

    assert run_virtual(main) == ["first"]


def test_timeouts_fire_at_their_virtual_time_and_finished_work_disarms_them() -> None:
    async def main() -> tuple[float, str, float]:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(60.0), timeout=2.5)
        timed_out_at = loop.time()
        done = await asyncio.wait_for(asyncio.sleep(1.0, result="done"), timeout=30.0)
        await asyncio.sleep(100.0)  # the disarmed 30 s timeout must not fire meanwhile
        return timed_out_at, done, loop.time()

    assert run_virtual(main) == (2.5, "done", 103.5)


def test_real_io_is_served_before_the_clock_jumps_to_the_next_timer() -> None:
    """A socket that is ready is read at once, at the current virtual time, not after a pending timer."""

    async def main() -> tuple[bytes, float, float]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        got: asyncio.Future[tuple[bytes, float]] = loop.create_future()
        sleeper = asyncio.ensure_future(asyncio.sleep(3_600.0))  # a timer an hour away
        await asyncio.sleep(1.0)
        loop.add_reader(ours, lambda: got.set_result((ours.recv(16), loop.time())))
        theirs.send(b"ping")
        data, at = await got
        loop.remove_reader(ours)
        ours.close()
        theirs.close()
        await sleeper
        return data, at, loop.time()

    assert run_virtual(main) == (b"ping", 1.0, 3_600.0)


def test_a_thread_can_still_wake_the_loop_when_no_timer_is_left() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()
        threading.Timer(0.05, lambda: loop.call_soon_threadsafe(answer.set_result, "woken")).start()
        return await answer, loop.time()

    assert run_virtual(main) == ("woken", 0.0)  # waited in real time; the virtual clock stood still


def test_work_handed_to_a_thread_comes_back_while_timers_wait() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        later = asyncio.ensure_future(asyncio.sleep(60.0))
        result = await asyncio.to_thread(lambda: time.sleep(0.05) or "from the thread")
        at = loop.time()
        await later
        return result, at

    result, at = run_virtual(main)
    # The clock may jump towards the pending timer while the thread works (it is not virtual), never past it.
    assert result == "from the thread" and 0.0 <= at <= 60.0


async def test_run_virtual_from_a_running_loop_uses_a_helper_thread() -> None:
    """As in a Jupyter cell: a loop is already running in this thread, so the virtual one runs in another."""

    async def main() -> tuple[str, float]:
        await asyncio.sleep(3_600.0)
        return threading.current_thread().name, asyncio.get_running_loop().time()

    assert run_virtual(main) == ("syncsim-virtual-time", 3_600.0)


def test_the_clock_reads_the_virtual_loop_whether_made_in_it_or_before() -> None:
    made_before = virtual_clock(epoch=1_000.0)

    async def main() -> list[float]:
        made_in = virtual_clock(epoch=1_000.0)  # bound to this loop
        readings = [made_in.now(), made_before.now()]
        await made_in.sleep(900.0)
        readings += [made_in.now(), made_before.now()]
        await made_before.sleep(0.25)
        await made_in.sleep(0)
        return [*readings, made_in.now(), made_before.now()]

    loop = VirtualTimeLoop(start=0.0)
    try:
        assert loop.run_until_complete(main()) == [1_000.0, 1_000.0, 1_900.0, 1_900.0, 1_900.25, 1_900.25]
    finally:
        loop.close()


def test_at_one_instant_timers_run_before_sleepers_wake_and_each_in_scheduling_order() -> None:
    """Clock sleeps and loop timers share one timeline: in time order to the microsecond, and at one instant the
    timers first, even one armed after the sleepers went to sleep."""

    async def main() -> list[tuple[str, float]]:
        loop, clock = asyncio.get_running_loop(), virtual_clock(epoch=0.0)
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            seen.append((name, loop.time()))

        loop.call_later(0.5, lambda: seen.append(("timer 0.5", loop.time())))
        loop.call_later(1.5, lambda: seen.append(("timer 1.5", loop.time())))
        sleepers = asyncio.gather(
            sleeper("a 1.0", 1.0), sleeper("b 1.0", 1.0), sleeper("c 2.0", 2.0), sleeper("d 1e-7", 1e-7)
        )
        await asyncio.sleep(0)  # the sleepers are asleep
        loop.call_later(1.0, lambda: seen.append(("timer 1.0", loop.time())))
        await sleepers
        return seen

    assert run_virtual(main) == [
        ("d 1e-7", 0.000001),  # closer than one tick: still one tick later
        ("timer 0.5", 0.5),
        ("timer 1.0", 1.0),
        ("a 1.0", 1.0),  # the same instant: in the order they went to sleep
        ("b 1.0", 1.0),
        ("timer 1.5", 1.5),
        ("c 2.0", 2.0),
    ]


def test_a_cancelled_clock_sleep_neither_wakes_nor_moves_the_clock_later() -> None:
    async def main() -> tuple[bool, float]:
        loop, clock = asyncio.get_running_loop(), virtual_clock(epoch=0.0)
        woke = False

        async def long_sleep() -> None:
            nonlocal woke
            await clock.sleep(3_600.0)
            woke = True

        task = asyncio.ensure_future(long_sleep())
        await clock.sleep(10.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        answer: asyncio.Future[None] = loop.create_future()
        # Nothing is left on the clock: the loop waits for the thread instead of jumping to the cancelled sleep.
        threading.Timer(0.05, lambda: loop.call_soon_threadsafe(answer.set_result, None)).start()
        await answer
        return woke, loop.time()

    assert run_virtual(main) == (False, 10.0)


def test_the_virtual_loop_and_its_timers_add_no_name_that_asyncio_uses() -> None:
    """They subclass asyncio's: a name of ours that asyncio also used would silently replace asyncio's."""
    plain = asyncio.SelectorEventLoop()
    loop = VirtualTimeLoop()
    try:
        asyncio_names = set(dir(plain))
        assert set(dir(loop)) - asyncio_names == {"_timeline", "advance", "sleep_future"}
        assert {name for name in vars(VirtualTimeLoop) if name in asyncio_names and not name.startswith("__")} == {
            "call_at",
            "time",
        }
        assert set(_Timer.__slots__).isdisjoint(dir(asyncio.TimerHandle))
    finally:
        plain.close()
        loop.close()


# -- the browsers' HTTP ---------------------------------------------------------------------------------------


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    request = await receive()
    headers = dict(scope["headers"])
    body = orjson.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": request["body"].decode(),
            "auth": headers.get(b"authorization", b"").decode(),
            "type": headers.get(b"content-type", b"").decode(),
        }
    )
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-echo", b"1")]})
    await send({"type": "http.response.body", "body": body[:10], "more_body": True})
    await send({"type": "http.response.body", "body": body[10:]})
    assert await receive() == {"type": "http.disconnect"}  # the client leaves once the response is complete


async def test_the_caller_speaks_asgi_both_ways() -> None:
    http = AsgiCaller(echo)
    response = await http.post("/api/sync?x=1", headers={"Authorization": "Bearer t"}, json={"a": 1})
    assert response.status_code == 201 and (b"x-echo", b"1") in response.headers
    assert response.json() == {
        "method": "POST",
        "path": "/api/sync",
        "query": "x=1",
        "body": '{"a":1}',
        "auth": "Bearer t",
        "type": "application/json",
    }
    got = (await http.get("/healthz")).json()
    assert got["method"] == "GET" and got["body"] == "" and got["type"] == ""


async def test_app_errors_reach_the_caller_and_a_missing_response_is_an_error() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    with pytest.raises(ValueError, match="boom"):
        await AsgiCaller(broken).get("/")
    with pytest.raises(RuntimeError, match="without completing"):
        await AsgiCaller(silent).get("/")


# -- compact pages --------------------------------------------------------------------------------------------


def test_compact_pages_carry_the_same_activities_in_fewer_bytes() -> None:
    full, compact = (FakeStrava(clock=ManualClock(1_767_571_200.0), seed=3, compact=c) for c in (False, True))
    for fake in (full, compact):
        fake.add_athlete(activities=450, athlete_id=10_000_001)
    compact.update_activity(full.activity_ids(10_000_001)[5], name="Renamed", description="not in a list item")
    full.update_activity(full.activity_ids(10_000_001)[5], name="Renamed", description="not in a list item")
    for page in (1, 2, 3):
        big = full.page_json(10_000_001, page=page, per_page=200, after=0)
        small = compact.page_json(10_000_001, page=page, per_page=200, after=0)
        assert len(small) < len(big) / 2.5 or not orjson.loads(big)
        items = orjson.loads(small)
        assert all(tuple(item) == COMPACT_SUMMARY_KEYS for item in items)
        assert [orjson.loads(big)[i][k] for i in range(len(items)) for k in COMPACT_SUMMARY_KEYS] == [
            item[k] for item in items for k in COMPACT_SUMMARY_KEYS
        ]
        parsed = [dataclasses.replace(Activity.from_json(item), raw={}) for item in items]
        assert parsed == [dataclasses.replace(Activity.from_json(item), raw={}) for item in orjson.loads(big)]


def test_compact_or_full_pages_give_the_same_simulation() -> None:
    workload = Workload.from_rows([WorkloadRow(i, n, i * 0.5) for i, n in enumerate((0, 150, 900, 2600))])
    runs = [
        simulate(workload=workload, platform="hobby", strategy="resumable", compact_activities=c, latency=0.4)
        for c in (True, False)
    ]
    pd.testing.assert_frame_equal(runs[0].jobs, runs[1].jobs)
    assert runs[0].params["compact_activities"] and not runs[1].params["compact_activities"]


@pytest.mark.parametrize(
    "stamp",
    ["2018-02-16T14:52:54Z", "2018-02-16T14:52:54+02:00", "2018-02-16T14:52:54", "2018-02-16T14:52:54.250Z"],
)
def test_activity_times_parse_the_same_on_the_fast_path_and_the_general_one(stamp: str) -> None:
    from datetime import UTC, datetime

    general = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    expected = (general if general.tzinfo else general.replace(tzinfo=UTC)).astimezone(UTC)
    activity = Activity.from_json({"id": 1, "name": "Run", "sport_type": "Run", "start_date": stamp})
    assert activity.start_date == expected and activity.start_date.tzinfo is UTC


def test_a_bad_activity_time_is_still_a_malformed_response() -> None:
    with pytest.raises(MalformedResponse, match="activity 1 is malformed"):
        Activity.from_json({"id": 1, "name": "Run", "sport_type": "Run", "start_date": "2018-02-30T14:52:54Z"})


# -- the sweep and the run --------------------------------------------------------------------------------------


def test_a_sweep_starts_its_longest_runs_first() -> None:
    workload = Workload.from_rows([WorkloadRow(i, 10, 0.0) for i in range(10)])
    costs = {
        s: expected_cost(Scenario.build(workload=workload, strategy=s)) for s in ("resumable", "worker", "waituntil")
    }
    assert costs["worker"] > costs["waituntil"] > costs["resumable"] > 0
    twice = Workload.from_rows([WorkloadRow(i, 10, 0.0) for i in range(20)])
    bigger = Scenario.build(workload=twice, strategy="worker")
    assert expected_cost(bigger) > costs["worker"]


def test_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    result = simulate(athletes=2, platform="hobby", strategy="resumable", latency=0.1)
    assert result.passed and gc.get_freeze_count() == 0 and gc.isenabled()
    assert gc.get_threshold() == thresholds
    assert uuid.UUID(result.jobs.loc[0, "user_id"])


def test_a_sync_ended_by_an_exception_leaves_no_reference_cycle() -> None:
    """A refused request (rate limit) or a stop before the deadline ends a sync's invocation by an exception.

    Its traceback holds the sync's frame, and with it the page being parsed: if the frame also held the
    exception (or the task holding it), that cycle would keep ~200 activities alive until the garbage collector
    ran, which is what made the collector ~10 % of a page-heavy run.
    """
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = simulate(
            workload=Workload.from_rows([WorkloadRow(i, 3_000, 0.0) for i in range(2)]),
            platform="hobby",
            strategy="resumable",
            latency=1.0,
            store_latency_s=0.0,
            rate_limits=(20, 1_000),
            keep_events=False,
        )
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, types.FrameType) and o.f_code.co_name == "strava_sync"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    jobs = result.jobs
    # Both exceptions happened: rate-limit refusals, and invocations stopped before their deadline.
    assert jobs["rate_limited"].sum() > 0 and (jobs["invocations"] > jobs["rate_limited"] + 1).any()
    assert (jobs["status"] == "completed").all() and (jobs["activities_synced"] == 3_000).all()
    assert held == []


def test_invocations_are_killed_at_their_own_deadlines_in_the_order_they_started() -> None:
    """One loop, two platforms: every invocation still running at its deadline is killed then, exactly; one
    that ended first never is; invocations due at the same moment die in the order they started."""
    from syncsim.platforms import LocalPlatform

    async def main() -> tuple[list[tuple[str, float]], list[bool]]:
        clock = virtual_clock()
        t0 = clock.now()
        hobby, pro = LocalPlatform("hobby", clock=clock), LocalPlatform("pro", clock=clock)
        killed: list[tuple[str, float]] = []
        started = []
        for name, platform in [("pro-1", pro), ("hobby-1", hobby), ("hobby-2", hobby), ("hobby-ended", hobby)]:
            invocation = platform.start_invocation()
            invocation.on_end(lambda inv, name=name: inv.killed and killed.append((name, clock.now() - t0)))
            started.append(invocation)
        started[3].finish_response()  # answered, no background work: it ends now
        await clock.sleep(4.0)
        late = hobby.start_invocation()  # due at 14 s
        late.on_end(lambda inv: inv.killed and killed.append(("hobby-late", clock.now() - t0)))
        started.append(late)
        await clock.sleep(400.0)
        return killed, [inv.killed for inv in started]

    killed, flags = run_virtual(main)
    assert killed == [("hobby-1", 10.0), ("hobby-2", 10.0), ("hobby-late", 14.0), ("pro-1", 300.0)]
    assert flags == [True, True, True, False, True]


def test_a_callback_that_raises_reaches_the_loops_exception_handler_and_the_loop_goes_on() -> None:
    def broken() -> None:
        raise ValueError("boom")

    async def main() -> tuple[list[dict[str, Any]], float]:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: seen.append(context))
        loop.call_soon(broken)
        loop.call_later(5.0, broken)
        await asyncio.sleep(10.0)
        return seen, loop.time()

    seen, end = run_virtual(main)
    assert [type(c["exception"]) for c in seen] == [ValueError, ValueError]
    assert all(c["message"].startswith("Exception in callback ") and "broken" in c["message"] for c in seen)
    assert isinstance(seen[0]["handle"], asyncio.Handle) and end == pytest.approx(10.0)


def test_a_closed_loop_takes_no_callback_and_no_timer() -> None:
    loop = VirtualTimeLoop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1.0, print)


def test_a_timer_runs_in_its_callers_context_or_the_one_given() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        var.set("caller")
        handle = loop.call_later(1.0, lambda: seen.append(f"kept:{var.get()}"))
        loop.call_later(1.0, lambda: seen.append(f"given:{var.get()}"), context=contextvars.Context())
        await asyncio.sleep(2.0)
        return seen, isinstance(handle, asyncio.TimerHandle) and handle.when() == 1.0

    assert run_virtual(main) == (["kept:caller", "given:unset"], True)


@pytest.mark.parametrize("latency_s", [0.0, 0.005])
def test_a_store_round_trip_takes_its_latency_and_none_yields_nothing(latency_s: float) -> None:
    """Without store latency a store call completes without yielding to the loop (as a plain ``async def``
    would); with it, each call takes exactly that much simulated time."""
    from syncsim.sim.recorder import ObservedStore, Recorder
    from syncsim.stores import open_store

    async def main() -> tuple[bool, float, bool]:
        clock = virtual_clock()
        store = ObservedStore(
            open_store("sqlite:///:memory:"), clock=clock, recorder=Recorder(clock, clock.now()), latency_s=latency_s
        )
        await store.migrate()
        job, _ = await store.create_job(user_id=uuid.uuid4(), type="strava_sync", payload={}, max_attempts=3, now=0)
        call = store.get_job(job.id).__await__()
        try:
            yielded = next(call)  # the first step: does it yield to the loop?
        except StopIteration as done:
            assert done.value is not None and done.value.id == job.id
            yields = False
        else:
            assert isinstance(yielded, asyncio.Future)  # the round trip's sleep
            call.close()
            yields = True
        t0 = clock.now()
        found = await store.get_job(job.id)
        return yields, clock.now() - t0, found is not None and found.id == job.id

    yields, elapsed, found = run_virtual(main)
    assert found
    assert yields is (latency_s > 0)
    assert elapsed == pytest.approx(latency_s, abs=1e-6)  # to the tick (epoch seconds are floats)


def test_the_observed_store_answers_a_job_read_again_from_its_read_until_a_call_changes_that_job() -> None:
    """Reads kept across a claim are exactly the jobs a claim cannot change: the claim's reclaim of a lapsed lease
    and the job it takes are read afresh, a finished job and a pause's row do not send a poll back to SQLite."""
    from syncsim.sim.recorder import ObservedStore, Recorder
    from syncsim.stores import open_store

    async def main() -> None:
        clock = virtual_clock()
        inner = open_store("sqlite:///:memory:")
        store = ObservedStore(inner, clock=clock, recorder=Recorder(clock, clock.now()))
        await store.migrate()
        reads: list[uuid.UUID] = []
        read = inner.get_job

        async def counted(job_id: uuid.UUID) -> Any:
            reads.append(job_id)
            return await read(job_id)

        inner.get_job = counted  # type: ignore[method-assign]
        new = [
            (await store.create_job(user_id=uuid.uuid4(), type="strava_sync", payload={}, max_attempts=3, now=t))[0]
            for t in (0, 1, 2)
        ]
        lapsing = await store.claim_job(worker_id="w1", now=3, lease_s=10)
        done = await store.claim_job(worker_id="w1", now=3, lease_s=10)
        assert lapsing is not None and done is not None
        await store.complete_job(done.id, worker_id="w1", result={}, now=4)
        waiting = new[2]
        before = {job.id: await store.get_job(job.id) for job in new}
        assert [before[j.id].status for j in new] == ["running", "completed", "pending"]  # type: ignore[union-attr]
        await store.pause_job_type("strava_sync", until=60, looks=0, reason="rate limit", now=5)
        assert await store.job_type_pause("strava_sync") is not None
        assert [await store.get_job(job.id) for job in new] == list(before.values())
        assert len(reads) == 3  # the pause's row changed no job: every read was answered as it was read

        # At 20 the first lease has lapsed: the claim reclaims that job and takes the waiting one.
        taken = await store.claim_job(worker_id="w2", now=20, lease_s=10)
        assert taken is not None and taken.id == waiting.id
        after = {job.id: await store.get_job(job.id) for job in new}
        assert after == {job.id: await read(job.id) for job in new}  # what SQLite holds, not what was read
        assert after[lapsing.id].status != "running" and after[waiting.id].status == "running"  # type: ignore[union-attr]
        assert after[done.id] is before[done.id]
        assert sorted(map(str, reads[3:])) == sorted([str(lapsing.id), str(waiting.id)])

    run_virtual(main)


def test_a_browser_polls_on_the_one_backoff_formula_and_refuses_a_schedule_that_cannot_run() -> None:
    schedule = PollSchedule(first_s=2.0, cap_s=30.0)
    assert [schedule.delay(k) for k in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert schedule.backoff == RetryPolicy(base_s=2.0, factor=2.0, max_s=30.0, jitter=0.0)
    assert "backoff" not in repr(schedule)  # a run's parameters record the schedule by its repr
    for bad in ({"first_s": 0.0}, {"first_s": 60.0}, {"give_up_s": 0.0}, {"post_attempts": 0}):
        with pytest.raises(ValueError, match="PollSchedule needs 0 < first_s <= cap_s"):
            PollSchedule(**bad)


def test_the_simulated_scheduler_fires_the_tick_on_the_clock_not_after_its_last_answer() -> None:
    """Cron fires at the minute whatever its last call took, so a tick comes right at each rate-limit reset. The
    tab closes after a minute; from then on every invocation is a tick, each at a multiple of 60 s, though each
    one's store calls take time (5 ms each) and the one at 900 s waits for the job the window held back."""
    workload = Workload.from_rows([WorkloadRow(0, 19_702, 0.0)], name="one-heavy")
    result = simulate(
        workload=workload,
        platform="hobby",
        strategy="resumable",
        latency=1.0,
        rate_limits=(100, 1_000),
        tick_s=60.0,
        poll=PollSchedule(give_up_s=60.0),
    )
    events = result.events
    starts = events.loc[(events["kind"] == "invocation_start") & (events["t_s"] >= 60.0), "t_s"].tolist()
    assert starts == [pytest.approx(60.0 * k, abs=1e-6) for k in range(1, 16)]
    assert result.jobs.iloc[0]["status"] == "completed"
