-- Activities a Strava webhook named and that are not re-read yet (one row per activity: events deduplicate), a
-- per-athlete budget of such re-reads per quarter hour, and when each athlete's history was last reconciled.
CREATE TABLE IF NOT EXISTS strava_activity_events (
    user_id      TEXT NOT NULL,
    activity_id  INTEGER NOT NULL,
    received_at  REAL NOT NULL,
    PRIMARY KEY (user_id, activity_id)
);
CREATE INDEX IF NOT EXISTS strava_activity_events_received ON strava_activity_events (received_at);
ALTER TABLE strava_tokens ADD COLUMN reconciled_at REAL;
ALTER TABLE strava_tokens ADD COLUMN event_window REAL NOT NULL DEFAULT 0;
ALTER TABLE strava_tokens ADD COLUMN event_fetches INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS strava_tokens_reconciled ON strava_tokens (reconciled_at);
