-- Active jobs never served, for the fair turns' second rule (see postgres/0014).
CREATE INDEX IF NOT EXISTS sync_jobs_unserved
    ON sync_jobs (created_at) WHERE served_at IS NULL AND status IN ('pending', 'running');
