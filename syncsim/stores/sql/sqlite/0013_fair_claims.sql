-- Fair turns: jobs never served (no progress yet) are claimed first, then the one due first (see postgres/0013).
ALTER TABLE sync_jobs ADD COLUMN served_at REAL;
CREATE INDEX IF NOT EXISTS sync_jobs_pending_fair
    ON sync_jobs ((served_at IS NOT NULL), next_attempt_at, created_at) WHERE status = 'pending';
DROP INDEX IF EXISTS sync_jobs_pending_claim;
-- When a tick last asked for a reconcile of the athlete's history (see postgres/0013).
ALTER TABLE strava_tokens ADD COLUMN reconcile_asked_at REAL;
