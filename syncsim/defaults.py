"""Every default in one place, each with the reason for its value."""

from __future__ import annotations

#: The embedded store: one SQLite file in the working directory, so the first command needs no server.
STORE_URL = "sqlite:///syncsim.db"
#: Environment variable that overrides STORE_URL everywhere (CLI, API, notebooks).
STORE_ENV = "SYNCSIM_STORE"

#: The only job type the design defines; others are registered by handlers.
JOB_TYPE = "strava_sync"
#: As in the design's schema (`max_attempts integer not null default 3`).
MAX_ATTEMPTS = 3
#: How many times a job's lease may lapse (its invocation killed, its worker dead, its store unreachable) before
#: the job is failed: crashes are counted apart from attempts, since a healthy job must ride out the faults of
#: the infrastructure under it; a job that kills its worker every time is still stopped. The column default of
#: migration 0008.
MAX_CRASHES = 10

#: A claimed job is owned for this long; a live runner extends it, a killed one lets it lapse. Longer than
#: one Strava page (~1 s) many times over, short enough that a dead worker's job is back within a minute.
LEASE_S = 30.0
#: How often a live runner extends its lease: three renewals per lease, so one slow renewal is harmless.
LEASE_RENEW_EVERY_S = LEASE_S / 3

#: The longest rate-limit wait a job sleeps through in its runner, under a strategy that continues jobs from the
#: store (a worker, the tick, polls): a window that resets later puts the job back until the reset instead. A job
#: held through a 15-minute window, or until the daily limit's UTC midnight, would show ``running`` with no
#: next attempt, renew its lease every 10 s meanwhile, bill a serverless invocation's whole wait, and count a
#: crash if its worker restarted; put back, it shows ``pending`` until the reset, and at the reset the store's
#: fair order decides who goes first. A wait within one lease is slept through: putting the job back would cost a
#: reschedule, a claim and, on a serverless platform, a new invocation, for a wait the lease covers anyway.
RATE_WAIT_IN_PROCESS_S = 30.0

#: Backoff: first retry after 2 s, doubling, capped at 5 min (a Strava rate window is 15 min, and a
#: rate-limited job is rescheduled to the window's reset, not backed off).
BACKOFF_BASE_S = 2.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX_S = 300.0
#: Full ±25 % jitter keeps retries of many jobs from arriving together.
BACKOFF_JITTER = 0.25

#: Stop starting new work when less than this is left before the invocation's deadline: one Strava page
#: takes ~0.5-1 s, the checkpoint write a few ms.
DEADLINE_MARGIN_S = 2.0

#: A detail sync reads this many activities in full at once: several requests in flight hide Strava's latency,
#: and every one of them still reserves from the app-wide rate budget first.
DETAIL_CONCURRENCY = 4
#: An incremental sync re-reads this far before the newest stored start (seconds): a watch that syncs days
#: late, or a manual entry of last week's run, starts before what was synced last. Three days of a heavy
#: user's history is one list page.
INCREMENTAL_LOOKBACK_S = 3 * 86_400.0

#: Strava requests one athlete's webhook events may spend per quarter hour (re-reading the activities they
#: name): a tenth of a new app's read budget, so a flood of events, forged or not, cannot starve other syncs.
WEBHOOK_READS_PER_WINDOW = 10
#: The tick submits a reconcile for athletes whose history was not reconciled for this long (seconds):
#: webhooks can be lost, and a weekly listing of a history repairs what they missed at its list pages' cost.
RECONCILE_EVERY_S = 7 * 86_400.0
#: While a sync of the athlete is under way, their webhook events wait (looked at again after this long, s): a
#: page listed before a change and written after the event's re-read would undo it (a deleted activity back, an
#: edit lost). A minute, as the tick's schedule: a sync ends between two looks.
EVENTS_WAIT_FOR_SYNC_S = 60.0
#: At most this many reconciles are submitted per tick, so that one tick stays cheap.
RECONCILES_PER_TICK = 10
#: How long a runner remembers how many jobs are due (seconds): a sync asks after every page whether others
#: wait for Strava's budget, and the queue changes little within a few seconds.
WAITING_TTL_S = 5.0
#: A tick continues this many jobs at once: its invocation waits on Strava most of the time, so a few jobs in
#: flight use its seconds (and the budget at a window's reset) without needing more than one instance.
TICK_CONCURRENCY = 4
#: A tick that finds no job due but one due within this many seconds waits for it (within its deadline margin).
#: A scheduler fires on the clock, so a tick comes right at a rate-limit window's reset, and the syncs that window
#: held back are due just after it (the clock-skew allowance and their turn order, a second or two): left to the
#: next tick they would each lose a minute of the window.
TICK_LOOKAHEAD_S = 5.0

#: An idle worker looks for due jobs this often.
WORKER_POLL_S = 1.0
#: After SIGTERM a worker lets its running jobs finish for this long; the rest are given back, unfinished.
WORKER_GRACE_S = 5.0
#: While its store fails, a worker's claim loop tries again after this long, doubling up to the maximum: a down
#: server costs nothing to ask (the pool waits for a connection, it does not open one per try), and a restarted
#: one is noticed within seconds.
WORKER_STORE_RETRY_FIRST_S = 0.1
WORKER_STORE_RETRY_MAX_S = 2.0
#: How often ``syncsim worker`` submits what a tick would (due reconciles, jobs for webhook events left without
#: one): a deployment with a worker and no tick must reconcile too; a minute, as the tick's own schedule.
WORKER_UPKEEP_S = 60.0
#: Default user-facing listing size.
LIST_LIMIT = 20
#: ``GET /api/sync?limit=`` accepts 1..MAX_LIST_LIMIT: one page of a status list, not a table dump.
MAX_LIST_LIMIT = 100
#: A request's body must arrive within this long (408 otherwise). A body here is at most 64 KiB, which any client
#: sends in well under a second; without a bound, a client that dribbles its body a byte at a time holds a
#: connection and a task for as long as it likes (on a platform without a time limit, for ever).
BODY_READ_TIMEOUT_S = 10.0
#: ``syncsim serve`` answers 503 beyond this many open connections and requests at once, so that a flood of
#: slow clients (which uvicorn gives no deadline to send their headers) runs out of this budget, not of the
#: process's file descriptors (1,024 by default on Linux) or memory.
SERVE_LIMIT_CONCURRENCY = 512
#: ``maxAttempts`` a client may ask for: enough for flaky networks, too few to hammer Strava for hours.
MAX_ATTEMPTS_LIMIT = 10
#: A server process syncs at most this many jobs at once in the background; the rest wait their turn, so that
#: parsing and storing pages cannot starve the requests of the CPU (benchmarks/api.py measures POST latency
#: with and without the bound).
MAX_BACKGROUND_JOBS = 8
