"""The athletes' browsers: submit a sync over HTTP at the arrival time, then poll it until it ends.

Each browser talks to the real ASGI app (:func:`syncsim.api.create_app`), in-process through
:class:`~syncsim.sim.asgi.AsgiCaller` or over real HTTP through an ``httpx.AsyncClient``, so every request is
one platform invocation, as on Vercel. The poll schedule (simulated seconds):

    poll k (k = 1, 2, ...) is sent ``min(cap_s, first_s * 2 ** (k - 1))`` after the previous answer,
    or at ``nextAttemptAt + 1 s`` if the job says it is waiting (rate-limited) until later than that;

the browser stops at a final status (``completed`` / ``failed``) or gives up ``give_up_s`` after its POST
(the tab is closed). A POST that does not answer 202 is retried on the same schedule, at most
``post_attempts`` times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncsim.clock import Clock
from syncsim.errors import InvalidInput
from syncsim.options import is_number, is_whole
from syncsim.retry import RetryPolicy
from syncsim.sim.asgi import HttpCaller
from syncsim.sim.recorder import Recorder

__all__ = ["Browser", "BrowserOutcome", "PollSchedule"]

FINAL = frozenset({"completed", "failed"})


@dataclass(frozen=True, kw_only=True, slots=True)
class PollSchedule:
    """When a browser polls (seconds): first after ``first_s``, doubling to ``cap_s``, giving up at ``give_up_s``."""

    first_s: float = 2.0
    cap_s: float = 30.0
    give_up_s: float = 7_200.0
    post_attempts: int = 3
    #: Honour the job's ``nextAttemptAt`` (a rate-limited job will not move before it): fewer useless polls.
    honour_next_attempt: bool = True
    #: The doubling itself: syncsim's one backoff formula, without jitter (a browser's timer is exact).
    backoff: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            not all(is_number(n) for n in (self.first_s, self.cap_s, self.give_up_s))
            or not 0 < self.first_s <= self.cap_s
            or not self.give_up_s > 0
            or not is_whole(self.post_attempts)
            or self.post_attempts < 1
        ):
            raise InvalidInput(
                "PollSchedule needs 0 < first_s <= cap_s, give_up_s > 0 and post_attempts >= 1, "
                f"not {self.first_s}, {self.cap_s}, {self.give_up_s}, {self.post_attempts}"
            )
        object.__setattr__(self, "backoff", RetryPolicy(base_s=self.first_s, factor=2.0, max_s=self.cap_s, jitter=0.0))

    def delay(self, k: int) -> float:
        """Seconds before poll ``k`` (1-based)."""
        return self.backoff.delay(k)


@dataclass(slots=True)
class BrowserOutcome:
    """What one browser saw: its job, the POST's latency (simulated s), polls sent, the last status."""

    user_id: uuid.UUID
    job_id: uuid.UUID | None = None
    api_latency_s: float = float("nan")
    polls: int = 0
    status: str | None = None
    gave_up: bool = False
    error: str | None = None


class Browser:
    """One athlete's browser tab."""

    def __init__(
        self,
        http: HttpCaller,
        *,
        clock: Clock,
        recorder: Recorder,
        user_id: uuid.UUID,
        token: str,
        schedule: PollSchedule,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self.http = http
        self.submit_body: dict[str, Any] = {"payload": payload} if payload else {}
        self.clock = clock
        self.recorder = recorder
        self.headers = {"authorization": f"Bearer {token}"}
        self.schedule = schedule
        self.outcome = BrowserOutcome(user_id)
        #: The outcome of :meth:`sync_again`, once it has run.
        self.again: BrowserOutcome | None = None

    async def run(self) -> BrowserOutcome:
        """POST /api/sync, then poll GET /api/sync/{jobId}; see the module docstring for the schedule."""
        out = self.outcome
        started = self.clock.now()
        give_up_at = started + self.schedule.give_up_s
        body: dict[str, Any] | None = None
        for attempt in range(1, self.schedule.post_attempts + 1):
            sent = self.clock.now()
            response = await self.http.post("/api/sync", headers=self.headers, json=self.submit_body)
            latency = self.clock.now() - sent
            if attempt == 1:
                out.api_latency_s = latency
            if response.status_code == 202:
                body = response.json()
                break
            out.error = f"POST /api/sync answered {response.status_code}: {response.text[:200]}"
            self.recorder.event("submit", user=out.user_id, detail=f"HTTP {response.status_code}")
            await self.clock.sleep(self.schedule.delay(attempt))
        if body is None:
            out.status = "failed"
            return out
        out.job_id = uuid.UUID(body["jobId"])
        out.status = body.get("status")
        status_url = f"/api/sync/{out.job_id}"
        self.recorder.event("submit", user=out.user_id, job=out.job_id, detail=f"{latency:.4f}")
        # The loop below runs once per poll, the bulk of a simulation's requests: what it reads often is local.
        clock, http, headers, schedule, recorder = self.clock, self.http, self.headers, self.schedule, self.recorder
        honour = schedule.honour_next_attempt
        k = 0
        next_attempt: float | None = None
        raw: str | None = None
        while out.status not in FINAL:
            k += 1
            wait = schedule.delay(k)
            now = clock.now()
            if honour and next_attempt is not None:
                wait = max(wait, next_attempt + 1.0 - now)
            if now + wait > give_up_at:
                out.gave_up = True
                recorder.event("gave_up", user=out.user_id, job=out.job_id, detail=str(out.status))
                return out
            await clock.sleep(wait)
            response = await http.get(status_url, headers=headers)
            out.polls += 1
            if response.status_code != 200:
                recorder.event("poll", user=out.user_id, job=out.job_id, detail=f"HTTP {response.status_code}")
                continue
            job = response.json()
            out.status = job.get("status")
            text = job.get("nextAttemptAt")
            if text != raw:  # parsed only when it changed (a waiting job repeats it poll after poll)
                raw = text
                next_attempt = datetime.fromisoformat(text).timestamp() if text else None
            if recorder.keep_events:
                recorder.event("poll", user=out.user_id, job=out.job_id, detail=str(out.status))
        return out

    async def sync_again(self) -> BrowserOutcome:
        """The athlete syncs again (``auto``: incremental once activities are stored) and polls it to the end;
        the first sync's outcome stays what :attr:`outcome` reports."""
        first, self.outcome = self.outcome, BrowserOutcome(self.outcome.user_id)
        try:
            return await self.run()
        finally:
            self.again, self.outcome = self.outcome, first

    async def webhook(self, event: dict[str, Any]) -> int:
        """POST a Strava webhook event (as Strava's servers would); returns the HTTP status."""
        response = await self.http.post("/api/strava/webhook", json=event)
        self.recorder.event("webhook", user=self.outcome.user_id, detail=f"HTTP {response.status_code}")
        return response.status_code
