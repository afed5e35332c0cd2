-- The job state machine as SQL functions, shared by the Postgres store (direct calls) and the Supabase REST
-- store (RPC). Every time is a parameter: the caller's clock, simulated or real, never the database's now().
-- Writes by a runner name the lease owner (p_worker) and change nothing, returning false, once that worker
-- no longer holds the job (its lease expired and the job was reclaimed or taken by another worker).

-- Expired leases: the holder was killed at its deadline or died. The attempt it spent stays counted: back to
-- pending, due at once, while attempts remain; failed when none do.
create function syncsim_reclaim_expired(p_now timestamptz) returns integer
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
    status = case when j.attempts >= j.max_attempts then 'failed' else 'pending' end,
    error = case
      when j.attempts >= j.max_attempts then format(
        'lease expired on attempt %s of %s: the invocation was killed at its deadline or its worker died; '
        'no attempts left', j.attempts, j.max_attempts)
      else format(
        'lease expired on attempt %s: the invocation was killed at its deadline or its worker died',
        j.attempts)
    end,
    completed_at = case when j.attempts >= j.max_attempts then p_now else j.completed_at end,
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

-- Reclaim expired leases, then lease one due pending job (p_job_id if given; of p_types if given), oldest
-- due first. FOR UPDATE SKIP LOCKED: concurrent claimers never take the same job, nor wait for each other.
create function syncsim_claim_job(
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
    order by next_attempt_at, created_at
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

create function syncsim_extend_lease(
  p_job_id uuid, p_worker text, p_now timestamptz, p_lease_s double precision
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set locked_until = p_now + make_interval(secs => p_lease_s), updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

create function syncsim_save_progress(
  p_job_id uuid, p_worker text, p_progress jsonb, p_now timestamptz
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set progress = p_progress, updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

-- Success clears the error an earlier attempt may have left: a completed job has no error.
create function syncsim_complete_job(
  p_job_id uuid, p_worker text, p_result jsonb, p_now timestamptz
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      status = 'completed', result = p_result, error = null, completed_at = p_now,
      locked_by = null, locked_until = null, updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

-- Back to pending, due at p_retry_at; the attempt just spent stays counted.
create function syncsim_retry_job(
  p_job_id uuid, p_worker text, p_error text, p_retry_at timestamptz, p_now timestamptz
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      status = 'pending', error = p_error, next_attempt_at = p_retry_at,
      locked_by = null, locked_until = null, updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

-- Back to pending, due at p_at, without spending an attempt (rate limit, deadline): the claim's increment is
-- undone. runs keeps counting the pick-up.
create function syncsim_reschedule_job(
  p_job_id uuid, p_worker text, p_at timestamptz, p_reason text, p_now timestamptz
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      status = 'pending', attempts = greatest(attempts - 1, 0), error = p_reason, next_attempt_at = p_at,
      locked_by = null, locked_until = null, updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

create function syncsim_fail_job(
  p_job_id uuid, p_worker text, p_error text, p_now timestamptz
) returns boolean
language sql as $$
  with changed as (
    update sync_jobs set
      status = 'failed', error = p_error, completed_at = p_now,
      locked_by = null, locked_until = null, updated_at = p_now
    where id = p_job_id and status = 'running' and locked_by = p_worker
    returning 1
  )
  select exists (select from changed)
$$;

-- Only the server runs jobs. Functions are executable by PUBLIC by default (and Supabase grants anon and
-- authenticated on new functions); as SECURITY INVOKER they would obey RLS anyway, but a user has no
-- business claiming or completing jobs.
revoke execute on function
  syncsim_reclaim_expired(timestamptz),
  syncsim_claim_job(text, timestamptz, double precision, uuid, text[]),
  syncsim_extend_lease(uuid, text, timestamptz, double precision),
  syncsim_save_progress(uuid, text, jsonb, timestamptz),
  syncsim_complete_job(uuid, text, jsonb, timestamptz),
  syncsim_retry_job(uuid, text, text, timestamptz, timestamptz),
  syncsim_reschedule_job(uuid, text, timestamptz, text, timestamptz),
  syncsim_fail_job(uuid, text, text, timestamptz)
from public, anon, authenticated;

grant execute on function
  syncsim_reclaim_expired(timestamptz),
  syncsim_claim_job(text, timestamptz, double precision, uuid, text[]),
  syncsim_extend_lease(uuid, text, timestamptz, double precision),
  syncsim_save_progress(uuid, text, jsonb, timestamptz),
  syncsim_complete_job(uuid, text, jsonb, timestamptz),
  syncsim_retry_job(uuid, text, text, timestamptz, timestamptz),
  syncsim_reschedule_job(uuid, text, timestamptz, text, timestamptz),
  syncsim_fail_job(uuid, text, text, timestamptz)
to service_role;
