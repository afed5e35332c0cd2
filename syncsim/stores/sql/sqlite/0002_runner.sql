-- What the runner needs: a lease, a next-attempt time, progress/checkpoint, claim indexes, and at most one
-- pending-or-running job per (user_id, type).
ALTER TABLE sync_jobs ADD COLUMN locked_by TEXT;
ALTER TABLE sync_jobs ADD COLUMN locked_until REAL;
ALTER TABLE sync_jobs ADD COLUMN next_attempt_at REAL NOT NULL DEFAULT 0;
ALTER TABLE sync_jobs ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sync_jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_jobs ADD COLUMN updated_at REAL NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS sync_jobs_pending_due ON sync_jobs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS sync_jobs_running_lease ON sync_jobs (locked_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS sync_jobs_user_created ON sync_jobs (user_id, created_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS sync_jobs_one_active_per_user
    ON sync_jobs (user_id, type) WHERE status IN ('pending', 'running');
