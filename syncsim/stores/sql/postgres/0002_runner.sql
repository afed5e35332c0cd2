-- What the runner needs beyond the design's table: a lease (who holds the job, until when), the time of the
-- next attempt (backoff is a stored time, not a sleep), a progress checkpoint to resume from, how many
-- invocations picked the job up, the time of the last change; the rules the runner relies on; and indexes
-- for claiming and for listing a user's jobs.

alter table sync_jobs
  add column locked_by text,
  add column locked_until timestamptz,
  add column next_attempt_at timestamptz not null default now(),
  add column progress jsonb not null default '{}',
  add column runs integer not null default 0,
  add column updated_at timestamptz not null default now();

alter table sync_jobs
  add constraint sync_jobs_status_check check (status in ('pending', 'running', 'completed', 'failed')),
  add constraint sync_jobs_max_attempts_check check (max_attempts >= 1),
  add constraint sync_jobs_payload_object_check check (jsonb_typeof(payload) = 'object'),
  add constraint sync_jobs_progress_object_check check (jsonb_typeof(progress) = 'object');

-- Claiming: the due pending jobs, oldest due first; reclaiming: the running jobs whose lease expired.
create index sync_jobs_pending_due_idx on sync_jobs (next_attempt_at) where status = 'pending';
create index sync_jobs_running_lease_idx on sync_jobs (locked_until) where status = 'running';
-- A user's recent jobs (GET /api/sync).
create index sync_jobs_user_created_idx on sync_jobs (user_id, created_at desc);
-- One active sync per user: a second POST /api/sync returns the active job instead of a duplicate.
create unique index sync_jobs_one_active_per_user_type on sync_jobs (user_id, type)
  where status in ('pending', 'running');
