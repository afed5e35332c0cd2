-- Crashes are counted apart from attempts. A lease that lapses means the invocation or worker running the job
-- was killed or lost its store: nothing the job did. Such a crash gives back the attempt its claim counted and
-- is bounded by max_crashes, larger than max_attempts, so infrastructure faults do not fail healthy jobs while a
-- job that kills every worker running it is still stopped. attempts/max_attempts count the handler's runs.
alter table sync_jobs
  add column crashes integer not null default 0,
  add column max_crashes integer not null default 10;

alter table sync_jobs
  add constraint sync_jobs_max_crashes_check check (max_crashes >= 1);

create or replace function syncsim_reclaim_expired(p_now timestamptz) returns integer
language plpgsql as $$
declare
  n integer;
begin
  with expired as (
    select id from sync_jobs
    where status = 'running' and locked_until < p_now
    for update skip locked
  )
  update sync_jobs j set
    status = case when j.crashes + 1 >= j.max_crashes then 'failed' else 'pending' end,
    attempts = greatest(j.attempts - 1, 0),
    crashes = j.crashes + 1,
    error = format(
      'lease expired on attempt %s (crash %s of %s): the invocation was killed at its deadline, or its worker '
      'died or lost the database; %s', j.attempts, j.crashes + 1, j.max_crashes,
      case when j.crashes + 1 >= j.max_crashes then 'no crashes left' else 'the attempt is not spent' end),
    completed_at = case when j.crashes + 1 >= j.max_crashes then p_now else j.completed_at end,
    next_attempt_at = p_now,
    locked_by = null,
    locked_until = null,
    updated_at = p_now
  from expired
  where j.id = expired.id;
  get diagnostics n = row_count;
  return n;
end
$$;

-- Saving progress proves the runner alive, so it extends the lease as a heartbeat does. The lease length is a
-- new parameter; a caller that omits it (a runner of an earlier release during an upgrade) leaves the lease as
-- it was, as before.
drop function syncsim_save_progress(uuid, text, jsonb, timestamptz);

create function syncsim_save_progress(
  p_job_id uuid, p_worker text, p_progress jsonb, p_now timestamptz, p_lease_s double precision default null
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      progress = p_progress,
      locked_until = coalesce(p_now + make_interval(secs => p_lease_s), locked_until),
      updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

revoke execute on function syncsim_save_progress(uuid, text, jsonb, timestamptz, double precision)
from public, anon, authenticated;
grant execute on function syncsim_save_progress(uuid, text, jsonb, timestamptz, double precision) to service_role;
