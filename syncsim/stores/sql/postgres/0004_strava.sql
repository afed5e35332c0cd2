-- What a sync keeps from Strava. Tokens are server-only: RLS on, no policy, and no privileges for the
-- anon/authenticated roles at all. Activities are readable by their owner.

create table strava_tokens (
  user_id uuid primary key references auth.users(id) on delete cascade,
  athlete_id bigint unique not null,
  access_token text not null,
  refresh_token text not null,
  expires_at timestamptz not null,
  scope text not null default '',
  updated_at timestamptz not null
);

alter table strava_tokens enable row level security;
revoke all on strava_tokens from anon, authenticated;
grant all on strava_tokens to service_role;

create table strava_activities (
  id bigint primary key,
  user_id uuid not null references auth.users(id) on delete cascade,
  athlete_id bigint,
  name text not null,
  sport_type text not null,
  start_date timestamptz not null,
  distance double precision,
  moving_time integer,
  elapsed_time integer,
  total_elevation_gain double precision,
  raw jsonb not null,
  synced_at timestamptz not null
);

create index strava_activities_user_start_idx on strava_activities (user_id, start_date desc);

alter table strava_activities enable row level security;
create policy strava_activities_select_own on strava_activities for select to authenticated
  using (user_id = (select auth.uid()));
revoke all on strava_activities from anon, authenticated;
grant select on strava_activities to authenticated;
grant all on strava_activities to service_role;
