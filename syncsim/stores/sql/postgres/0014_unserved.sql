-- Fair turns, part two: a sync that has had its newest page leaves the rest of a scarce window to the syncs that
-- have not (see syncsim.strava.sync). It asks how many active jobs were never served, counted up to p_limit.
create index sync_jobs_unserved_idx on sync_jobs (created_at)
  where served_at is null and status in ('pending', 'running');

create function syncsim_unserved_jobs(p_limit integer)
returns bigint
language sql stable as $$
  select count(*) from (
    select 1 from sync_jobs where served_at is null and status in ('pending', 'running') limit p_limit
  ) u
$$;

revoke execute on function syncsim_unserved_jobs(integer) from public, anon, authenticated;
grant execute on function syncsim_unserved_jobs(integer) to service_role;

-- The tick's upkeep asks every minute which athletes are due a reconcile. Written as one OR, the query walks every
-- strava_tokens row when none is due, so a tick with nothing to do grows with the number of users; as two range
-- scans of strava_tokens_reconciled_idx (0012) it reads only the rows it returns and the recently asked it skips.

create or replace function syncsim_users_to_reconcile(p_before timestamptz, p_asked_before timestamptz, p_limit integer)
returns setof uuid
language sql stable as $$
  select user_id from (
    (select user_id, reconciled_at from strava_tokens
     where reconciled_at is null and (reconcile_asked_at is null or reconcile_asked_at < p_asked_before)
     limit p_limit)
    union all
    (select user_id, reconciled_at from strava_tokens
     where reconciled_at < p_before and (reconcile_asked_at is null or reconcile_asked_at < p_asked_before)
     order by reconciled_at
     limit p_limit)
  ) due
  order by reconciled_at nulls first
  limit p_limit
$$;
