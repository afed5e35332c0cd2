-- Activities a Strava webhook named and that are not re-read yet (one row per activity: events deduplicate), a
-- per-athlete budget of such re-reads per quarter hour, and when each athlete's history was last reconciled.
-- Server-only, like the tokens: RLS on, no policy, nothing for anon or authenticated.

create table strava_activity_events (
  user_id uuid not null references auth.users(id) on delete cascade,
  activity_id bigint not null,
  received_at timestamptz not null,
  primary key (user_id, activity_id)
);
create index strava_activity_events_received_idx on strava_activity_events (received_at);
alter table strava_activity_events enable row level security;
revoke all on strava_activity_events from public, anon, authenticated;
grant all on strava_activity_events to service_role;

alter table strava_tokens
  add column reconciled_at timestamptz,
  add column event_window timestamptz not null default 'epoch',
  add column event_fetches integer not null default 0;
create index strava_tokens_reconciled_idx on strava_tokens (reconciled_at nulls first);

-- The quota, atomically: grant up to p_wanted re-reads within p_limit for the window starting at p_window.
create function syncsim_take_event_quota(p_user_id uuid, p_window timestamptz, p_limit integer, p_wanted integer)
returns integer language sql as $$
  with current as (
    select case when event_window = p_window then event_fetches else 0 end as used
    from strava_tokens where user_id = p_user_id for update
  ), granted as (
    select greatest(0, least(p_wanted, p_limit - used)) as n from current
  ), changed as (
    update strava_tokens t set event_window = p_window, event_fetches = c.used + g.n
    from current c, granted g where t.user_id = p_user_id
    returning g.n
  )
  select coalesce((select n from changed), 0)
$$;
revoke execute on function syncsim_take_event_quota(uuid, timestamptz, integer, integer) from public, anon, authenticated;
grant execute on function syncsim_take_event_quota(uuid, timestamptz, integer, integer) to service_role;
