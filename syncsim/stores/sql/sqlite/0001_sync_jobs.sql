-- The design's sync_jobs table, in SQLite's types: uuid -> TEXT, jsonb -> TEXT (JSON), timestamptz -> REAL
-- (UTC epoch seconds, written by the runner from its clock). SQLite has no auth.users: user_id is not a FK.
CREATE TABLE IF NOT EXISTS sync_jobs (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    type          TEXT NOT NULL DEFAULT 'strava_sync',
    status        TEXT NOT NULL DEFAULT 'pending',
    payload       TEXT NOT NULL DEFAULT '{}',
    result        TEXT,
    error         TEXT,
    created_at    REAL NOT NULL,
    started_at    REAL,
    completed_at  REAL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 3
);
