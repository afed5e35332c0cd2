-- Privileges as if Supabase's defaults were in force, whatever they are. On Supabase every new table in public
-- starts with ALL granted to anon, authenticated and service_role, and every new function with EXECUTE: what the
-- earlier migrations did not take back stays open through the REST API.
--
-- syncsim_migrations is created by `migrate` itself, before any migration runs, so nothing revoked anon's
-- grants on it: anyone with the project's public key could read it, or delete its rows and make the next
-- `migrate` re-run 0001 and fail. Nobody but the migrating role (its owner) needs it.
alter table syncsim_migrations enable row level security;
revoke all on syncsim_migrations from public, anon, authenticated, service_role;

-- Jobs: a user reads their own (the select policy of 0003) and nothing else. Every write goes through the API,
-- whose server role bypasses RLS: a user writing rows directly could raise max_attempts, move
-- next_attempt_at to jump the queue, or insert jobs without limit. TRUNCATE, REFERENCES and TRIGGER, granted
-- by the defaults, go too (TRUNCATE ignores RLS).
drop policy if exists sync_jobs_insert_own on sync_jobs;
drop policy if exists sync_jobs_update_own on sync_jobs;
drop policy if exists sync_jobs_delete_own on sync_jobs;
revoke all on sync_jobs from public, anon, authenticated;
grant select on sync_jobs to authenticated;

-- Activities: readable by their owner (the policy of 0004), written only by the server.
revoke all on strava_activities from public, anon, authenticated;
grant select on strava_activities to authenticated;

-- Tokens: server only.
revoke all on strava_tokens from public, anon, authenticated;

-- Functions: every syncsim_* function in this schema is the server's alone, including ones added by earlier
-- migrations after 0005 listed its own.
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_proc p
    where p.pronamespace = current_schema()::regnamespace and p.proname like 'syncsim\_%'
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
