-- Fair turns when Strava's budget is the limit: a job that has never made progress (served_at is null) is
-- claimed before any job that has, and among each kind the one due first, so every waiting athlete gets a first
-- page before anyone gets a second; a job that yields its turn goes behind those due before it (round robin).
-- served_at is set by the first checkpoint: it is also when the athlete saw their first page.
alter table sync_jobs add column served_at timestamptz;

create index sync_jobs_pending_fair_idx
  on sync_jobs ((served_at is not null), next_attempt_at, created_at) where status = 'pending';
drop index if exists sync_jobs_pending_claim_idx;

create or replace function syncsim_claim_job(
  p_worker text,
  p_now timestamptz,
  p_lease_s double precision,
  p_job_id uuid default null,
  p_types text[] default null
) returns setof sync_jobs
language plpgsql as $$
begin
  perform syncsim_reclaim_expired(p_now);
  return query
  with candidate as (
    select id from sync_jobs
    where status = 'pending'
      and next_attempt_at <= p_now
      and (p_job_id is null or id = p_job_id)
      and (p_types is null or type = any (p_types))
    order by (served_at is not null), next_attempt_at, created_at
    limit 1
    for update skip locked
  )
  update sync_jobs j set
    status = 'running',
    attempts = j.attempts + 1,
    runs = j.runs + 1,
    started_at = coalesce(j.started_at, p_now),
    locked_by = p_worker,
    locked_until = p_now + make_interval(secs => p_lease_s),
    updated_at = p_now
  from candidate
  where j.id = candidate.id
  returning j.*;
end
$$;

create or replace function syncsim_save_progress(
  p_job_id uuid, p_worker text, p_progress jsonb, p_now timestamptz, p_lease_s double precision default null
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      progress = p_progress,
      served_at = coalesce(served_at, p_now),
      locked_until = coalesce(p_now + make_interval(secs => p_lease_s), locked_until),
      updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

-- What a tick reports: how many pending jobs are due at p_now (counted up to p_limit), and when the next one
-- that is not due yet will be.
create function syncsim_due_summary(p_now timestamptz, p_limit integer)
returns table (due bigint, next_due timestamptz)
language sql stable as $$
  select
    (select count(*) from (
       select 1 from sync_jobs where status = 'pending' and next_attempt_at <= p_now limit p_limit
     ) d),
    (select min(next_attempt_at) from sync_jobs where status = 'pending' and next_attempt_at > p_now)
$$;

revoke execute on function syncsim_due_summary(timestamptz, integer) from public, anon, authenticated;
grant execute on function syncsim_due_summary(timestamptz, integer) to service_role;

-- When a tick last asked for a reconcile of the athlete's history (so a reconcile that keeps failing is asked
-- for again only after a while, not every minute).
alter table strava_tokens add column reconcile_asked_at timestamptz;

-- Connected users whose history was not reconciled since p_before (never first), and for whom no reconcile was
-- asked since p_asked_before.
create function syncsim_users_to_reconcile(p_before timestamptz, p_asked_before timestamptz, p_limit integer)
returns setof uuid
language sql stable as $$
  select user_id from strava_tokens
  where (reconciled_at is null or reconciled_at < p_before)
    and (reconcile_asked_at is null or reconcile_asked_at < p_asked_before)
  order by reconciled_at nulls first
  limit p_limit
$$;

revoke execute on function syncsim_users_to_reconcile(timestamptz, timestamptz, integer) from public, anon, authenticated;
grant execute on function syncsim_users_to_reconcile(timestamptz, timestamptz, integer) to service_role;
