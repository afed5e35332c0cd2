-- Crashes are counted apart from attempts (see the postgres migration of the same number): a lapsed lease gives
-- back the attempt its claim counted and is bounded by max_crashes instead. The reclaim itself is the store's
-- SQL (sqlite.py); saving progress extends the lease there too.
ALTER TABLE sync_jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_jobs ADD COLUMN max_crashes INTEGER NOT NULL DEFAULT 10 CHECK (max_crashes >= 1);
