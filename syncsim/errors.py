"""syncsim's exception tree, drawn here in one place.

    SyncsimError
    ├── ConfigError            bad store URL, missing optional extra, missing credential
    ├── InvalidInput           a request syncsim refuses (unknown job type, payload not an object, ...)
    ├── StoreError             the store failed or cannot be reached
    │   └── StoreUnavailable    the store cannot be reached now (down, restarting, no connection in time)
    ├── InvocationKilled       the platform killed the invocation at its deadline; nothing more may be written
    └── JobError               raised by job handlers; the runner turns each into a decision
        ├── RetryableError     try again later, with backoff, while attempts remain
        │   ├── NoTimeToRetry       a retry could not have finished before the invocation's deadline: under a
        │   │                       deadline-aware strategy, continued in a new invocation like OutOfTime
        │   ├── StravaUnavailable   5xx, timeouts, connection errors (after the client's own retries)
        │   │   ├── StravaNoTimeToRetry   a request or its retry not sent or given up: no answer could come in time
        │   │   └── StravaDown            every request failing (several athletes', or one's and a probe): an Outage
        │   └── MalformedResponse   a Strava response of the wrong shape
        │       └── UnusableResponse    one that asking again would not mend (also a PermanentError)
        ├── PermanentError     do not retry: the job fails now
        │   └── Unauthorized        token revoked or invalid (Strava 401 after one refresh)
        └── Reschedule         stop now, keep progress, continue at ``at`` (epoch seconds, UTC) without
            │                   spending an attempt
            ├── RateLimited         Strava's app-wide window is spent; ``at`` is its reset
            ├── Outage              a service every job of the type needs is down; ``at`` is when to look again
            ├── OutOfTime           the invocation's deadline is too close to start another step
            └── YieldTurn           others wait for a scarce budget: this job's turn is over

Every message is one line and never contains a token.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidInput",
    "InvocationKilled",
    "JobError",
    "MalformedResponse",
    "NoTimeToRetry",
    "OutOfTime",
    "Outage",
    "PermanentError",
    "RateLimited",
    "Reschedule",
    "RetryableError",
    "StoreError",
    "StoreUnavailable",
    "StravaDown",
    "StravaError",
    "StravaNoTimeToRetry",
    "StravaUnavailable",
    "SyncsimError",
    "Unauthorized",
    "UnusableResponse",
    "YieldTurn",
]


class SyncsimError(Exception):
    """Base of every error syncsim raises on purpose."""


class ConfigError(SyncsimError):
    """The configuration is wrong: a bad URL, a missing extra, a missing credential."""


class InvalidInput(SyncsimError, ValueError):
    """Input syncsim refuses; nothing was written."""


class StoreError(SyncsimError):
    """The store failed or cannot be reached."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now: it is down or restarting, cut the connection, or none was free in time.

    Nothing the job did caused it, so the runner pauses the job without spending an attempt, and a worker backs
    off until the store answers again. A call whose connection was cut may still have taken effect on the
    server: the runner's writes are safe to repeat (upserts) or belong to a lease that lapses if in doubt.
    """


class InvocationKilled(SyncsimError):
    """The platform killed this invocation at its deadline: nothing it does afterwards may reach the store."""


class JobError(SyncsimError):
    """Raised by a job handler; the runner turns it into a retry, a failure or a reschedule."""


class RetryableError(JobError):
    """A transient failure: retry with backoff while attempts remain."""


class NoTimeToRetry(RetryableError):
    """A step that was not tried (again) because it could not have finished before the invocation's deadline.
    Under a deadline-aware strategy the runner continues the job in a new invocation without spending an attempt,
    as for :class:`OutOfTime`; under any other it is a failed attempt like the rest."""


class PermanentError(JobError):
    """A failure that retrying cannot fix: the job fails at once."""


class Reschedule(JobError):
    """Stop cleanly with progress saved and continue at ``at`` (UTC epoch seconds); no attempt is spent.

    ``shared`` says the cause is shared by every job of the same type (an app-wide rate limit): a runner then
    claims no other job of that type before ``at``.
    """

    shared = False

    def __init__(self, message: str, *, at: float) -> None:
        super().__init__(message)
        self.at = at


class Outage(Reschedule):
    """A service that every job of the type needs is down: wait until ``at`` without spending an attempt, every job
    of the type alike (``shared``). Under inline retries, where nothing would continue a waiting job, the runner
    treats it as the failure it also is. ``looks``: how many looks in a row found it down, this one included."""

    shared = True

    def __init__(self, message: str, *, at: float, looks: int = 1) -> None:
        super().__init__(message, at=at)
        self.looks = looks


class OutOfTime(Reschedule):
    """The invocation's deadline is too close to start another step; continue in a new invocation."""


class YieldTurn(Reschedule):
    """Others wait for a scarce resource: stop after this step and continue behind the jobs due before ``at``."""


class StravaError(JobError):
    """Marker base for errors that come from talking to Strava."""


class Unauthorized(StravaError, PermanentError):
    """Strava refused the athlete's token (revoked or invalid) even after a refresh."""


class RateLimited(StravaError, Reschedule):
    """Strava's app-wide rate limit is spent until ``reset_at`` (UTC epoch seconds)."""

    shared = True

    def __init__(self, message: str, *, reset_at: float) -> None:
        super().__init__(message, at=reset_at)
        self.reset_at = reset_at


class StravaUnavailable(StravaError, RetryableError):
    """Strava answered 5xx, timed out or could not be reached, after the client's own retries."""


class StravaDown(Outage, StravaUnavailable):
    """Strava failed every attempt in a row, several athletes' requests alike (or one athlete's, and a probe of
    another request of theirs): an outage, not this job's fault.
    Continue at ``at`` (a growing wait) without spending an attempt. (An Outage first: an API route that meets
    it answers 503 with ``Retry-After``, as for a rate limit.)"""


class StravaNoTimeToRetry(StravaUnavailable, NoTimeToRetry):
    """A Strava request the client did not send, or gave up waiting for, because its answer could not have come in
    time before the caller's deadline: the retry of a failed attempt, a token grant without its time to spare, a
    request still unanswered when the caller's ``answer_by`` came."""


class MalformedResponse(StravaError, RetryableError):
    """Strava's response was not what the API promises (bad JSON, wrong shape, an activity without id)."""


class UnusableResponse(MalformedResponse, PermanentError):
    """A Strava response that breaks the API's contract in a way the same request would repeat (a page that does
    not move the listing's cursor, a value out of range): the job fails at once rather than spend the rate budget
    and its attempts asking again."""
