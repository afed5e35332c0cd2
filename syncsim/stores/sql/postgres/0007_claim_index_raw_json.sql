-- Claiming orders pending jobs by (next_attempt_at, created_at): index exactly that, so a claim stays one
-- index probe however long the queue is.
create index if not exists sync_jobs_pending_claim_idx
    on sync_jobs (next_attempt_at, created_at) where status = 'pending';
drop index if exists sync_jobs_pending_due_idx;

-- Activities keep Strava's JSON as received; nothing queries inside it, and parsing it into jsonb was about
-- 60 % of the upsert time. json stores the text as is (still validated).
alter table strava_activities alter column raw type json using raw::json;
