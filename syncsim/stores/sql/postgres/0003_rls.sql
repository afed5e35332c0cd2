-- Row-level security as on Supabase: a signed-in user (role authenticated, auth.uid() = the JWT's sub) sees
-- and changes only their own jobs; service_role (the server) bypasses RLS; anon gets nothing.

alter table sync_jobs enable row level security;

create policy sync_jobs_select_own on sync_jobs for select to authenticated
  using (user_id = (select auth.uid()));
create policy sync_jobs_insert_own on sync_jobs for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy sync_jobs_update_own on sync_jobs for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy sync_jobs_delete_own on sync_jobs for delete to authenticated
  using (user_id = (select auth.uid()));

-- Supabase's default privileges grant anon everything in public; RLS would hide the rows, but say it here.
revoke all on sync_jobs from anon;
grant select, insert, update, delete on sync_jobs to authenticated;
grant all on sync_jobs to service_role;
