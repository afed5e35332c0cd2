"""The embedded default store: SQLite through the standard library.

One file (``sqlite:///syncsim.db``), WAL journal, so several processes on one machine can share it: every
write that must be atomic (a claim, a create) runs in ``BEGIN IMMEDIATE``, which takes SQLite's single write
lock, so two workers can never claim the same job. Calls are synchronous inside ``async`` methods: each
statement takes microseconds, far less than handing it to a thread would. The one wait is for the write lock
another process holds: a write waits for it asleep on the event loop, so that the process's other calls go on.

Times are REAL columns holding UTC epoch seconds, all written from the caller's clock.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from syncsim.clock import from_datetime, to_datetime
from syncsim.errors import ConfigError, InvalidInput, StoreError, StoreUnavailable
from syncsim.jobs.model import Job, JobStatus, TypePause
from syncsim.stores.sql import pending_migrations
from syncsim.strava.models import Activity, ActivityFields, StoredActivity, StravaTokens
from syncsim.strava.ratelimit import SlotRequest

__all__ = ["SQLiteStore"]

_JOB_COLUMNS = (
    "id, user_id, type, status, payload, result, error, created_at, started_at, completed_at, attempts, "
    "max_attempts, locked_by, locked_until, next_attempt_at, progress, runs, updated_at, crashes, max_crashes, "
    "served_at"
)

#: The columns of :class:`~syncsim.strava.models.ActivityFields`, in its order.
_FIELD_COLUMNS = "name, sport_type, start_date, distance, moving_time, elapsed_time, total_elevation_gain"

# Postgres's syncsim_reclaim_expired (migration 0008): a lapsed lease is a crash, counted apart from attempts;
# it gives back the attempt its claim counted, and fails the job only when no crashes are left. SQLite reads
# the old values of every column on the right of SET, as PostgreSQL does.
_RECLAIM_SQL = """
UPDATE sync_jobs SET
    status = CASE WHEN crashes + 1 >= max_crashes THEN 'failed' ELSE 'pending' END,
    attempts = max(attempts - 1, 0),
    crashes = crashes + 1,
    error = 'lease expired on attempt ' || attempts || ' (crash ' || (crashes + 1) || ' of ' || max_crashes
        || '): the invocation was killed at its deadline, or its worker died or lost the database; '
        || CASE WHEN crashes + 1 >= max_crashes THEN 'no crashes left' ELSE 'the attempt is not spent' END,
    completed_at = CASE WHEN crashes + 1 >= max_crashes THEN :now ELSE completed_at END,
    next_attempt_at = :now,
    locked_by = NULL,
    locked_until = NULL,
    updated_at = :now
WHERE status = 'running' AND locked_until < :now
"""


#: Whether a claim could lease anything: a due pending job (never-served ones, then served ones: each a range of
#: the claim index) or a lease that has expired. ``{filters}`` narrows the pending jobs as the claim does.
_CLAIMABLE_SQL = """
SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE status = 'pending' AND (served_at IS NOT NULL) = 0
                                         AND next_attempt_at <= ? {filters})
    OR EXISTS (SELECT 1 FROM sync_jobs WHERE status = 'pending' AND (served_at IS NOT NULL) = 1
                                         AND next_attempt_at <= ? {filters})
    OR EXISTS (SELECT 1 FROM sync_jobs WHERE status = 'running' AND locked_until < ?)
"""


#: SQLite's primary result codes for a store that fails now but not for good: another connection holds the
#: write lock (BUSY, LOCKED), the disk is full (FULL), or the disk or its file system failed a read or a write
#: (IOERR). Nothing a job did causes them, so they are :class:`StoreUnavailable`, which a runner, a worker and the
#: API wait out, and never a spent attempt.
_TRANSIENT_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})


#: How long a statement may wait for another connection's lock inside SQLite (seconds). SQLite waits by sleeping in
#: the calling thread, the event loop's: every other request of the process would wait as long. A write that finds
#: the lock taken waits for it in :meth:`SQLiteStore._begin` instead, up to the store's busy timeout.
_LOCK_WAIT_IN_SQLITE_S = 0.005
#: A waiting write's first pause before it tries the lock again, and its longest (seconds; doubling in between).
_LOCK_RETRY_FIRST_S = 0.002
_LOCK_RETRY_MAX_S = 0.05


_PAUSE_FIELDS = ("type", "until", "looks", "reason", "paused_at")
_PAUSE_COLUMNS = ", ".join(_PAUSE_FIELDS)


#: A page's activities of one user, by id: ``+user_id`` keeps the planner off the (user_id, start_date) index. Without
#: statistics it rates "user_id = ?" as the better choice, and reads every activity of the user for each page (a
#: reconcile of a history of n activities then reads n²/200 rows); the ids find the page's rows by primary key.
_BY_IDS = "+user_id = ? AND id IN ({marks})"


def _ts(value: float | None) -> datetime | None:
    return None if value is None else to_datetime(value)


def _json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    (
        id_, user_id, type_, status, payload, result, error, created_at, started_at, completed_at,
        attempts, max_attempts, locked_by, locked_until, next_attempt_at, progress, runs, updated_at, crashes,
        max_crashes, served_at,
    ) = row  # fmt: skip
    return Job(
        id=uuid.UUID(id_),
        user_id=uuid.UUID(user_id),
        type=type_,
        status=JobStatus(status),
        payload=_json(payload) or {},
        result=_json(result),
        error=error,
        created_at=to_datetime(created_at),
        started_at=_ts(started_at),
        completed_at=_ts(completed_at),
        attempts=attempts,
        max_attempts=max_attempts,
        locked_by=locked_by,
        locked_until=_ts(locked_until),
        next_attempt_at=_ts(next_attempt_at),
        progress=_json(progress) or {},
        runs=runs,
        updated_at=_ts(updated_at),
        crashes=crashes,
        max_crashes=max_crashes,
        served_at=_ts(served_at),
    )


class SQLiteStore:
    """The Store protocol on one SQLite database file (or ``:memory:``)."""

    def __init__(self, path: str, *, busy_timeout_s: float = 10.0) -> None:
        """``busy_timeout_s``: how long a write waits for the write lock another connection holds (seconds)."""
        self.path = path
        self.url = f"sqlite:///{path}"
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        #: The open file's absolute path and its (device, inode), to notice it deleted or replaced under the
        #: connection; ``None`` for ``:memory:``.
        self._file: tuple[str, tuple[int, int]] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigError(f"not a sqlite URL: {url!r}")
        path = unquote(parts.netloc + parts.path)
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigError(f"sqlite URL has no path: {url!r} (use sqlite:///syncsim.db)")
        return cls(path, **options)

    # -- connection ------------------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open sqlite store {self.path!r}: directory {str(parent)!r} does not exist")
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            wait_ms = round(min(self._busy_timeout_s, _LOCK_WAIT_IN_SQLITE_S) * 1000)
            conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
        except sqlite3.Error as exc:
            raise self._error(exc, "open", "could not be opened") from None
        if self.path != ":memory:":
            path = os.path.abspath(self.path)  # as SQLite opened it: a later chdir must not move it
            with suppress(OSError):  # a file that cannot be told apart from another goes unchecked
                opened = os.stat(path)
                self._file = (path, (opened.st_dev, opened.st_ino))
        return conn

    def _check_file(self, doing: str) -> None:
        """Fail if the file at the store's path is no longer the one the connection has open. Deleted (or replaced)
        under a running process, the connection would go on reading and writing the unlinked file: jobs accepted,
        run and completed there, and gone at the next start. One ``stat``, before every call."""
        if self._file is None:
            return
        path, identity = self._file
        try:
            now = os.stat(path)
        except FileNotFoundError:
            pass
        except OSError:
            return  # cannot tell: SQLite's own calls say whether the file is usable
        else:
            if (now.st_dev, now.st_ino) == identity:
                return
        raise StoreError(
            f"sqlite store {self.path!r}, {doing}: the file was deleted or replaced since this process opened it; "
            "restart the process to open the one at that path"
        )

    def _error(self, exc: sqlite3.Error, doing: str, failed: str) -> StoreError:
        """``exc`` as one line naming the store: :class:`StoreUnavailable` if it is of a kind that passes."""
        code = getattr(exc, "sqlite_errorcode", None)  # absent on errors of the sqlite3 module's own
        primary = None if code is None else code & 0xFF
        busy = " is busy" if primary == sqlite3.SQLITE_BUSY else ""
        message = f"sqlite store {self.path!r}{busy}, {doing}: {failed}: {' '.join(str(exc).split())}"
        if primary in _TRANSIENT_CODES:
            return StoreUnavailable(f"{message} ({getattr(exc, 'sqlite_errorname', code)})")
        if "no such table" in str(exc):
            message += " (is the store migrated? run `syncsim migrate`)"
        return StoreError(message)

    @asynccontextmanager
    async def _write(self, doing: str) -> AsyncIterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from the start (no lock upgrades, no deadlocks).
        Its errors, the commit's included, leave as one-line :class:`StoreError`. The transaction's statements
        run without a pause between them: no other call of the process can come between them on the connection."""
        conn = self.conn
        self._check_file(doing)
        try:
            await self._begin(conn)
        except sqlite3.Error as exc:
            raise self._error(exc, doing, "could not be written") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _roll_back(conn)
            raise self._error(exc, doing, "could not be written") from None
        except BaseException:
            _roll_back(conn)
            raise

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``; while another connection holds the write lock, tried again after growing pauses
        on the event loop until the busy timeout has passed (then SQLite's busy error). Without another holder
        it takes the lock at once, without yielding to the event loop: an uncontended write costs no turn of it."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_s
        pause = _LOCK_RETRY_FIRST_S
        while True:
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or loop.time() >= deadline:
                    raise
            pause = min(2 * pause, _LOCK_RETRY_MAX_S)

    def _fetchone(self, doing: str, sql: str, params: Sequence[Any] = ()) -> Any:
        """One row of a read, or ``None``; its errors as one-line :class:`StoreError`: an unmigrated file (what
        ``syncsim jobs`` and ``status`` meet, which read without migrating), one reset under a worker, a disk
        that fails."""
        self._check_file(doing)
        try:
            return self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, doing, "could not be read") from None

    def _fetchall(self, doing: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a read; its errors as :meth:`_fetchone`'s."""
        self._check_file(doing)
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, doing, "could not be read") from None

    async def migrate(self) -> list[str]:
        async with self._write("migrate") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS syncsim_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
        applied: list[str] = []
        done = [name for (name,) in self._fetchall("migrate", "SELECT name FROM syncsim_migrations")]
        for name, sql in pending_migrations("sqlite", done, store=f"sqlite store {self.path!r}"):
            async with self._write(f"apply migration {name}") as conn:
                if conn.execute("SELECT 1 FROM syncsim_migrations WHERE name = ?", (name,)).fetchone():
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                # Bookkeeping only: the one place a store takes the wall clock, since no job time depends on it.
                conn.execute("INSERT INTO syncsim_migrations (name, applied_at) VALUES (?, julianday('now'))", (name,))
            applied.append(name)
        return applied

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._file = None

    # -- jobs --------------------------------------------------------------------------------------------------
    async def create_job(
        self, *, user_id: uuid.UUID, type: str, payload: dict[str, Any], max_attempts: int, now: float
    ) -> tuple[Job, bool]:
        job_id = uuid.uuid4()
        async with self._write("create a job") as conn:
            row = conn.execute(
                f"""INSERT INTO sync_jobs (id, user_id, type, status, payload, created_at, max_attempts,
                        next_attempt_at, updated_at)
                    VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)
                    ON CONFLICT DO NOTHING RETURNING {_JOB_COLUMNS}""",
                (
                    str(job_id),
                    str(user_id),
                    type,
                    orjson.dumps(payload).decode(),
                    now,
                    max_attempts,
                    now,
                    now,
                ),
            ).fetchone()
            if row is not None:
                return _job_from_row(row), True
            row = conn.execute(
                f"""SELECT {_JOB_COLUMNS} FROM sync_jobs
                    WHERE user_id = ? AND type = ? AND status IN ('pending', 'running')""",
                (str(user_id), type),
            ).fetchone()
        if row is None:  # pragma: no cover - only if the constraint fired for another reason
            raise StoreError(f"could not create a {type} job for user {user_id}")
        return _job_from_row(row), False

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        row = self._fetchone(f"get job {job_id}", f"SELECT {_JOB_COLUMNS} FROM sync_jobs WHERE id = ?", (str(job_id),))
        return None if row is None else _job_from_row(row)

    async def list_jobs(
        self, *, user_id: uuid.UUID | None = None, status: JobStatus | None = None, limit: int = 20
    ) -> list[Job]:
        where, params = [], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(str(user_id))
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._fetchall(
            "list jobs",
            f"SELECT {_JOB_COLUMNS} FROM sync_jobs {clause} ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_job_from_row(r) for r in rows]

    async def claim_job(
        self,
        *,
        worker_id: str,
        now: float,
        lease_s: float,
        job_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        filters, params = [], []
        if job_id is not None:
            filters.append("AND id = ?")
            params.append(str(job_id))
        if types:
            filters.append(f"AND type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        # Look before taking the write lock: an idle worker looks every second, and on a store on a file each
        # look would otherwise hold SQLite's one write lock (BEGIN IMMEDIATE) against the API's submits. Nothing
        # is lost by a look that misses a job made due just after it: the next look, or the claim below, sees it.
        due = " ".join(filters)
        claimable = self._fetchone(
            "look for due jobs", _CLAIMABLE_SQL.format(filters=due), (now, *params, now, *params, now)
        )
        if not claimable[0]:
            return None
        async with self._write("claim a job") as conn:
            conn.execute(_RECLAIM_SQL, {"now": now})
            row = conn.execute(
                f"""UPDATE sync_jobs SET status = 'running', attempts = attempts + 1, runs = runs + 1,
                        started_at = COALESCE(started_at, ?), locked_by = ?, locked_until = ?, updated_at = ?
                    WHERE id = (SELECT id FROM sync_jobs WHERE status = 'pending' AND next_attempt_at <= ?
                                {" ".join(filters)}
                                ORDER BY served_at IS NOT NULL, next_attempt_at, created_at LIMIT 1)
                    RETURNING {_JOB_COLUMNS}""",
                (now, worker_id, now + lease_s, now, now, *params),
            ).fetchone()
        return None if row is None else _job_from_row(row)

    async def _update_owned(
        self, doing: str, job_id: uuid.UUID, worker_id: str, assignments: str, params: Sequence[Any]
    ) -> bool:
        async with self._write(doing) as conn:
            cursor = conn.execute(
                f"UPDATE sync_jobs SET {assignments} WHERE id = ? AND status = 'running' AND locked_by = ?",
                (*params, str(job_id), worker_id),
            )
            return cursor.rowcount == 1

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool:
        return await self._update_owned(
            "extend a lease", job_id, worker_id, "locked_until = ?, updated_at = ?", (now + lease_s, now)
        )

    async def save_progress(
        self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float, lease_s: float
    ) -> bool:
        return await self._update_owned(
            "save a job's progress",
            job_id,
            worker_id,
            "progress = ?, served_at = COALESCE(served_at, ?), locked_until = ?, updated_at = ?",
            (orjson.dumps(progress).decode(), now, now + lease_s, now),
        )

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool:
        return await self._update_owned(
            "complete a job",
            job_id,
            worker_id,
            "status = 'completed', result = ?, error = NULL, completed_at = ?, locked_by = NULL, "
            "locked_until = NULL, updated_at = ?",
            (orjson.dumps(result).decode(), now, now),
        )

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        return await self._update_owned(
            "put a job back for a retry",
            job_id,
            worker_id,
            "status = 'pending', error = ?, next_attempt_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ?",
            (error, retry_at, now),
        )

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        return await self._update_owned(
            "reschedule a job",
            job_id,
            worker_id,
            "status = 'pending', attempts = attempts - 1, error = ?, next_attempt_at = ?, locked_by = NULL, "
            "locked_until = NULL, updated_at = ?",
            (reason, at, now),
        )

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool:
        return await self._update_owned(
            "fail a job",
            job_id,
            worker_id,
            "status = 'failed', error = ?, completed_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ?",
            (error, now, now),
        )

    async def reclaim_expired(self, *, now: float) -> int:
        async with self._write("reclaim expired leases") as conn:
            return conn.execute(_RECLAIM_SQL, {"now": now}).rowcount

    async def cancel_job(self, job_id: uuid.UUID, *, user_id: uuid.UUID, reason: str, now: float) -> bool:
        async with self._write("cancel a job") as conn:
            return (
                conn.execute(
                    """UPDATE sync_jobs SET status = 'failed', error = ?, completed_at = ?, locked_by = NULL,
                            locked_until = NULL, updated_at = ?
                       WHERE id = ? AND user_id = ? AND status IN ('pending', 'running')""",
                    (reason, now, now, str(job_id), str(user_id)),
                ).rowcount
                == 1
            )

    async def due_summary(self, *, now: float, limit: int) -> tuple[int, float | None]:
        row = self._fetchone(
            "count due jobs",
            """SELECT (SELECT count(*) FROM (SELECT 1 FROM sync_jobs WHERE status = 'pending' AND next_attempt_at <= ?
                                            LIMIT ?)),
                      (SELECT min(next_attempt_at) FROM sync_jobs WHERE status = 'pending' AND next_attempt_at > ?)""",
            (now, limit, now),
        )
        return int(row[0]), row[1]

    async def unserved_jobs(self, *, limit: int) -> int:
        row = self._fetchone(
            "count unserved jobs",
            """SELECT count(*) FROM (SELECT 1 FROM sync_jobs
                                     WHERE served_at IS NULL AND status IN ('pending', 'running') LIMIT ?)""",
            (limit,),
        )
        return int(row[0])

    async def pause_job_type(self, type: str, *, until: float, looks: int, reason: str, now: float) -> None:
        async with self._write("pause a job type") as conn:
            conn.execute(
                """INSERT INTO job_type_pauses (type, until, looks, reason, paused_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (type) DO UPDATE SET until = max(until, excluded.until), looks = excluded.looks,
                                                    reason = excluded.reason, paused_at = excluded.paused_at""",
                (type, until, looks, reason, now),
            )

    async def job_type_pause(self, type: str) -> TypePause | None:
        row = self._fetchone(
            "read a job type's pause", f"SELECT {_PAUSE_COLUMNS} FROM job_type_pauses WHERE type = ?", (type,)
        )
        return None if row is None else TypePause(**dict(zip(_PAUSE_FIELDS, row, strict=True)))

    async def type_pauses(self, *, now: float) -> list[TypePause]:
        rows = self._fetchall(
            "read the running pauses",
            f"SELECT {_PAUSE_COLUMNS} FROM job_type_pauses WHERE until > ? ORDER BY type",
            (now,),
        )
        return [TypePause(**dict(zip(_PAUSE_FIELDS, row, strict=True))) for row in rows]

    async def clear_type_outage(self, type: str, *, now: float) -> None:
        async with self._write("clear a job type's outage") as conn:
            conn.execute(
                "UPDATE job_type_pauses SET looks = 0 WHERE type = ? AND looks > 0 AND until <= ?", (type, now)
            )

    async def take_rate_slot(self, slot: SlotRequest) -> str | None:
        window_start, day_start = slot.window_start, slot.day_start
        limits = {"overall": slot.overall_limits, "read": slot.read_limits}
        kinds = ("overall", "read") if slot.read else ("overall",)
        marks = ", ".join("?" * len(kinds))
        async with self._write("take a rate slot") as conn:
            conn.execute(
                f"""UPDATE strava_rate_slots SET
                      used_15min = CASE WHEN window_start < ? THEN 0 ELSE used_15min END,
                      window_start = max(window_start, ?),
                      used_daily = CASE WHEN day_start < ? THEN 0 ELSE used_daily END,
                      day_start = max(day_start, ?)
                    WHERE kind IN ({marks}) AND (window_start < ? OR day_start < ?)""",
                (window_start, window_start, day_start, day_start, *kinds, window_start, day_start),
            )
            if not slot.assumed:  # read from Strava's headers: the limits every caller is held to
                for kind in kinds:
                    conn.execute(
                        """UPDATE strava_rate_slots SET limit_15min = ?, limit_daily = ?
                           WHERE kind = ? AND (limit_15min IS NOT ? OR limit_daily IS NOT ?)""",
                        (*limits[kind], kind, *limits[kind]),
                    )
            rows = conn.execute(
                f"SELECT kind, used_15min, used_daily, limit_15min, limit_daily FROM strava_rate_slots"
                f" WHERE kind IN ({marks})",
                kinds,
            ).fetchall()
            # A caller that has not read the limits yet is held to the stored ones, if a caller has read them.
            used = [
                (w, d, (lw, ld) if slot.assumed and lw is not None and ld is not None else limits[kind])
                for kind, w, d, lw, ld in rows
            ]
            if any(daily >= limit[1] for _, daily, limit in used):
                return "day"
            if any(window >= limit[0] for window, _, limit in used):
                return "window"
            conn.execute(
                f"""UPDATE strava_rate_slots SET used_15min = used_15min + 1, used_daily = used_daily + 1
                    WHERE kind IN ({marks})""",
                kinds,
            )
        return None

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        async with self._write("cancel a user's jobs") as conn:
            return conn.execute(
                """UPDATE sync_jobs SET status = 'failed', error = ?, completed_at = ?, updated_at = ?
                   WHERE user_id = ? AND status = 'pending'""",
                (reason, now, now, str(user_id)),
            ).rowcount

    # -- Strava data ---------------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        row = self._fetchone(
            "get a user's tokens",
            "SELECT athlete_id, access_token, refresh_token, expires_at, scope FROM strava_tokens WHERE user_id = ?",
            (str(user_id),),
        )
        if row is None:
            return None
        return StravaTokens(
            athlete_id=row[0], access_token=row[1], refresh_token=row[2], expires_at=row[3], scope=row[4]
        )

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None:
        async with self._write("save a user's tokens") as conn:
            try:
                conn.execute(
                    """INSERT INTO strava_tokens (user_id, athlete_id, access_token, refresh_token, expires_at,
                            scope, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (user_id) DO UPDATE SET athlete_id = excluded.athlete_id,
                            access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                            expires_at = excluded.expires_at, scope = excluded.scope,
                            updated_at = excluded.updated_at""",
                    (
                        str(user_id),
                        tokens.athlete_id,
                        tokens.access_token,
                        tokens.refresh_token,
                        tokens.expires_at,
                        tokens.scope,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise InvalidInput(f"Strava athlete {tokens.athlete_id} is already connected to another user") from None

    async def delete_tokens(self, user_id: uuid.UUID) -> bool:
        async with self._write("delete a user's tokens") as conn:
            conn.execute("DELETE FROM strava_activity_events WHERE user_id = ?", (str(user_id),))
            return conn.execute("DELETE FROM strava_tokens WHERE user_id = ?", (str(user_id),)).rowcount == 1

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None:
        row = self._fetchone(
            "find an athlete's user",
            "SELECT user_id FROM strava_tokens WHERE athlete_id = ?",
            (athlete_id,),
        )
        return None if row is None else uuid.UUID(row[0])

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        if not activities:
            return 0
        uid = str(user_id)
        rows = [
            (
                a.id,
                uid,
                a.athlete_id,
                a.name,
                a.sport_type,
                from_datetime(a.start_date),
                a.distance,
                a.moving_time,
                a.elapsed_time,
                a.total_elevation_gain,
                orjson.dumps(a.raw).decode(),
                now,
                now,
            )
            for a in activities
        ]
        async with self._write("upsert activities") as conn:
            conn.executemany(
                """INSERT INTO strava_activities (id, user_id, athlete_id, name, sport_type, start_date, distance,
                        moving_time, elapsed_time, total_elevation_gain, raw, synced_at, seen_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, athlete_id = excluded.athlete_id,
                        name = excluded.name, sport_type = excluded.sport_type, start_date = excluded.start_date,
                        distance = excluded.distance, moving_time = excluded.moving_time,
                        elapsed_time = excluded.elapsed_time,
                        total_elevation_gain = excluded.total_elevation_gain, raw = excluded.raw,
                        synced_at = excluded.synced_at, seen_at = excluded.seen_at""",
                rows,
            )
        return len(rows)

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool:
        async with self._write("delete an activity") as conn:
            return (
                conn.execute(
                    "DELETE FROM strava_activities WHERE user_id = ? AND id = ?", (str(user_id), activity_id)
                ).rowcount
                == 1
            )

    async def stored_activities(
        self, user_id: uuid.UUID, activity_ids: Sequence[int] | None = None
    ) -> dict[int, StoredActivity]:
        where = "user_id = ?"
        params: list[Any] = [str(user_id)]
        if activity_ids is not None:
            if not activity_ids:
                return {}
            where = _BY_IDS.format(marks=", ".join("?" * len(activity_ids)))
            params.extend(activity_ids)
        rows = self._fetchall(
            "read stored activities",
            f"""SELECT id, {_FIELD_COLUMNS}, json_extract(raw, '$.resource_state') = 3
                FROM strava_activities WHERE {where}""",
            params,
        )
        return {row[0]: StoredActivity(ActivityFields(*row[1:8]), bool(row[8])) for row in rows}

    async def mark_activities_seen(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return
        marks = ", ".join("?" * len(activity_ids))
        async with self._write("mark activities seen") as conn:
            conn.execute(
                f"UPDATE strava_activities SET seen_at = ? WHERE {_BY_IDS.format(marks=marks)}",
                (now, str(user_id), *activity_ids),
            )

    async def delete_activities_unseen_since(self, user_id: uuid.UUID, since: float) -> int:
        async with self._write("delete activities no longer on Strava") as conn:
            return conn.execute(
                "DELETE FROM strava_activities WHERE user_id = ? AND seen_at < ?", (str(user_id), since)
            ).rowcount

    async def add_activity_events(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return
        async with self._write("record webhook events") as conn:
            conn.executemany(
                """INSERT INTO strava_activity_events (user_id, activity_id, received_at) VALUES (?, ?, ?)
                   ON CONFLICT (user_id, activity_id) DO UPDATE SET received_at = excluded.received_at""",
                [(str(user_id), activity_id, now) for activity_id in activity_ids],
            )

    async def pending_activity_events(self, user_id: uuid.UUID, *, limit: int) -> list[tuple[int, float]]:
        rows = self._fetchall(
            "read webhook events",
            """SELECT activity_id, received_at FROM strava_activity_events WHERE user_id = ?
               ORDER BY received_at, activity_id LIMIT ?""",
            (str(user_id), limit),
        )
        return [(row[0], row[1]) for row in rows]

    async def clear_activity_events(self, user_id: uuid.UUID, events: Sequence[tuple[int, float]]) -> None:
        if not events:
            return
        async with self._write("clear webhook events") as conn:
            conn.executemany(
                "DELETE FROM strava_activity_events WHERE user_id = ? AND activity_id = ? AND received_at = ?",
                [(str(user_id), activity_id, at) for activity_id, at in events],
            )

    async def users_with_activity_events(self, *, limit: int) -> list[uuid.UUID]:
        rows = self._fetchall(
            "find users with webhook events",
            """SELECT user_id FROM strava_activity_events GROUP BY user_id ORDER BY min(received_at) LIMIT ?""",
            (limit,),
        )
        return [uuid.UUID(row[0]) for row in rows]

    async def take_event_quota(self, user_id: uuid.UUID, *, window: float, limit: int, wanted: int) -> int:
        async with self._write("take a webhook quota") as conn:
            row = conn.execute(
                "SELECT event_window, event_fetches FROM strava_tokens WHERE user_id = ?", (str(user_id),)
            ).fetchone()
            if row is None:
                return 0
            used = row[1] if row[0] == window else 0
            granted = max(0, min(wanted, limit - used))
            conn.execute(
                "UPDATE strava_tokens SET event_window = ?, event_fetches = ? WHERE user_id = ?",
                (window, used + granted, str(user_id)),
            )
            return granted

    async def mark_reconciled(self, user_id: uuid.UUID, *, now: float) -> None:
        async with self._write("mark a user reconciled") as conn:
            conn.execute("UPDATE strava_tokens SET reconciled_at = ? WHERE user_id = ?", (now, str(user_id)))

    async def reconciled_at(self, user_id: uuid.UUID) -> float | None:
        row = self._fetchone(
            "read when a user was reconciled",
            "SELECT reconciled_at FROM strava_tokens WHERE user_id = ?",
            (str(user_id),),
        )
        return None if row is None else row[0]

    async def users_to_reconcile(self, *, before: float, asked_before: float, limit: int) -> list[uuid.UUID]:
        rows = self._fetchall(
            "find users to reconcile",
            """SELECT user_id FROM strava_tokens
               WHERE (reconciled_at IS NULL OR reconciled_at < ?)
                 AND (reconcile_asked_at IS NULL OR reconcile_asked_at < ?)
               ORDER BY reconciled_at IS NOT NULL, reconciled_at LIMIT ?""",
            (before, asked_before, limit),
        )
        return [uuid.UUID(row[0]) for row in rows]

    async def mark_reconcile_asked(self, user_id: uuid.UUID, *, now: float) -> None:
        async with self._write("mark a reconcile asked") as conn:
            conn.execute("UPDATE strava_tokens SET reconcile_asked_at = ? WHERE user_id = ?", (now, str(user_id)))

    async def count_activities(self, user_id: uuid.UUID) -> int:
        row = self._fetchone(
            "count activities",
            "SELECT count(*) FROM strava_activities WHERE user_id = ?",
            (str(user_id),),
        )
        return int(row[0])

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None:
        row = self._fetchone(
            "find the latest activity",
            "SELECT max(start_date) FROM strava_activities WHERE user_id = ?",
            (str(user_id),),
        )
        return None if row is None or row[0] is None else to_datetime(row[0])

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


def _roll_back(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any: SQLite rolls one back itself on some errors (a full disk, an I/O
    error), and a ROLLBACK then would fail and hide the error that matters."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no semicolons inside literals or triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
