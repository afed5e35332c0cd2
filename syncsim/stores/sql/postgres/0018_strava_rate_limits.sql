-- The limits last read from Strava's headers by any instance, kept with the count they bound. An instance learns
-- the limits only from Strava's answers: a cold one has the defaults (100 reads / 15 min, 1,000 / day), and
-- compared with a count that instances under an app's raised limits have taken, they would hold back every
-- request and pause every sync of the deployment until the window's reset (past 1,000 reads, until midnight).
-- Null until an instance has read them.
alter table strava_rate_slots
  add column limit_15min integer check (limit_15min >= 1),
  add column limit_daily integer check (limit_daily >= 1);

-- As in 0017, and: limits read from Strava's headers (not p_assumed) are stored with the count; a caller that
-- has not read them yet (p_assumed, its limits the defaults) is held to the stored ones, if any.
create function syncsim_take_rate_slot(
  p_read boolean, p_window timestamptz, p_day timestamptz,
  p_overall_15min integer, p_overall_daily integer, p_read_15min integer, p_read_daily integer,
  p_assumed boolean
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
  if not p_assumed then
    update strava_rate_slots set
      limit_15min = case kind when 'overall' then p_overall_15min else p_read_15min end,
      limit_daily = case kind when 'overall' then p_overall_daily else p_read_daily end
    where kind = any(v_kinds);
  end if;
  select case
      when bool_or(used_daily >= case
        when p_assumed and limit_daily is not null then limit_daily
        when kind = 'overall' then p_overall_daily else p_read_daily end) then 'day'
      when bool_or(used_15min >= case
        when p_assumed and limit_15min is not null then limit_15min
        when kind = 'overall' then p_overall_15min else p_read_15min end) then 'window'
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
  syncsim_take_rate_slot(boolean, timestamptz, timestamptz, integer, integer, integer, integer, boolean)
from public, anon, authenticated;
grant execute on function
  syncsim_take_rate_slot(boolean, timestamptz, timestamptz, integer, integer, integer, integer, boolean)
to service_role;

-- A syncsim of before this migration calls the seven-argument function: an instance not yet redeployed while the
-- migration lands (migrate before deploying). It stays, as the new one with its limits taken as assumed: it cannot
-- say whether it read them, so it stores none and is held to those stored.
create or replace function syncsim_take_rate_slot(
  p_read boolean, p_window timestamptz, p_day timestamptz,
  p_overall_15min integer, p_overall_daily integer, p_read_15min integer, p_read_daily integer
) returns text
language sql as $$
  select syncsim_take_rate_slot(
    p_read, p_window, p_day, p_overall_15min, p_overall_daily, p_read_15min, p_read_daily, true
  )
$$;
