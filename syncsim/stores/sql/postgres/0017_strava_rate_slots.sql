-- Strava's rate limits are the application's, shared by every instance that calls Strava for it. Each instance's
-- client counts its own requests and learns the others' from Strava's headers, which arrive too late at a reset:
-- every instance's held-back jobs go at once, each instance believes the new window is its own, and the excess is
-- answered 429 (and still counts against the day). So a request first takes a slot here, where every instance
-- counts. One row per kind of limit ('overall', 'read'): the current 15-minute window and UTC day by the callers'
-- clocks, and how many requests each has taken.
create table strava_rate_slots (
  kind text primary key check (kind in ('overall', 'read')),
  window_start timestamptz not null,
  used_15min integer not null check (used_15min >= 0),
  day_start timestamptz not null,
  used_daily integer not null check (used_daily >= 0)
);
insert into strava_rate_slots values
  ('overall', '-infinity', 0, '-infinity', 0),
  ('read', '-infinity', 0, '-infinity', 0);

alter table strava_rate_slots enable row level security;
revoke all on strava_rate_slots from public, anon, authenticated;
grant all on strava_rate_slots to service_role;

-- Take a slot of the overall limits (and of the read limits, for a read) in the window and day that start at
-- p_window and p_day, under the limits given (the caller's, learnt from Strava's headers). Returns null if taken,
-- else which limit is spent, 'day' before 'window', and takes nothing. The rows are locked in one order, so
-- concurrent callers queue rather than deadlock; a window another caller has already moved past stays.
create function syncsim_take_rate_slot(
  p_read boolean, p_window timestamptz, p_day timestamptz,
  p_overall_15min integer, p_overall_daily integer, p_read_15min integer, p_read_daily integer
) returns text
language plpgsql as $$
declare
  v_kinds text[] := case when p_read then array['overall', 'read'] else array['overall'] end;
  v_spent text;
begin
  perform 1 from strava_rate_slots where kind = any(v_kinds) order by kind for update;
  update strava_rate_slots set
    used_15min = case when window_start < p_window then 0 else used_15min end,
    window_start = greatest(window_start, p_window),
    used_daily = case when day_start < p_day then 0 else used_daily end,
    day_start = greatest(day_start, p_day)
  where kind = any(v_kinds) and (window_start < p_window or day_start < p_day);
  select case
      when bool_or(used_daily >= case kind when 'overall' then p_overall_daily else p_read_daily end) then 'day'
      when bool_or(used_15min >= case kind when 'overall' then p_overall_15min else p_read_15min end) then 'window'
    end
  into v_spent
  from strava_rate_slots where kind = any(v_kinds);
  if v_spent is not null then
    return v_spent;
  end if;
  update strava_rate_slots set used_15min = used_15min + 1, used_daily = used_daily + 1 where kind = any(v_kinds);
  return null;
end
$$;

revoke execute on function
  syncsim_take_rate_slot(boolean, timestamptz, timestamptz, integer, integer, integer, integer)
from public, anon, authenticated;
grant execute on function
  syncsim_take_rate_slot(boolean, timestamptz, timestamptz, integer, integer, integer, integer)
to service_role;
