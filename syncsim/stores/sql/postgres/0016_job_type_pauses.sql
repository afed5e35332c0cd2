-- A pause shared by every job of a type: a spent app-wide rate limit, or Strava down. The runner that meets the
-- cause writes it, so that every other process (another serverless instance, a cold start, a second worker)
-- claims none of those jobs before `until`, instead of each learning the cause by spending a request or an
-- attempt of a job of its own. `looks` counts the looks that found Strava down in a row: the process that looks
-- next continues the count, so the wait keeps growing across processes. One row per type, kept after it ends.
create table job_type_pauses (
  type text primary key,
  until timestamptz not null,
  looks integer not null default 0 check (looks >= 0),
  reason text not null,
  paused_at timestamptz not null
);

alter table job_type_pauses enable row level security;
revoke all on job_type_pauses from public, anon, authenticated;
grant all on job_type_pauses to service_role;

-- A pause already longer keeps its end; the looks and the reason are the latest.
create function syncsim_pause_job_type(
  p_type text, p_until timestamptz, p_looks integer, p_reason text, p_now timestamptz
) returns void
language sql as $$
  insert into job_type_pauses (type, until, looks, reason, paused_at)
  values (p_type, p_until, p_looks, p_reason, p_now)
  on conflict (type) do update set
    until = greatest(job_type_pauses.until, excluded.until),
    looks = excluded.looks,
    reason = excluded.reason,
    paused_at = excluded.paused_at
$$;

-- Strava answered again: forget the looks of a pause that has ended (a running one was written since).
create function syncsim_clear_type_outage(p_type text, p_now timestamptz)
returns void
language sql as $$
  update job_type_pauses set looks = 0 where type = p_type and looks > 0 and until <= p_now
$$;

revoke execute on function
  syncsim_pause_job_type(text, timestamptz, integer, text, timestamptz),
  syncsim_clear_type_outage(text, timestamptz)
from public, anon, authenticated;
grant execute on function
  syncsim_pause_job_type(text, timestamptz, integer, text, timestamptz),
  syncsim_clear_type_outage(text, timestamptz)
to service_role;
