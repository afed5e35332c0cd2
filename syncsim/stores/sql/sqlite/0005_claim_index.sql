-- Claiming orders pending jobs by (next_attempt_at, created_at): index exactly that.
CREATE INDEX IF NOT EXISTS sync_jobs_pending_claim ON sync_jobs (next_attempt_at, created_at) WHERE status = 'pending';
DROP INDEX IF EXISTS sync_jobs_pending_due;
