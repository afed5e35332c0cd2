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
