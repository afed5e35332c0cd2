-- Users on demand for the Supabase REST store, with the Postgres store's rule: a user id is added to
-- auth.users only when that table is the compat migration's stand-in (plain PostgreSQL). On Supabase,
-- auth.users belongs to Supabase Auth and this only reports whether the user exists. Returns whether the user
-- exists now. SECURITY DEFINER because service_role may only read auth.users.
create function syncsim_ensure_user(p_user_id uuid) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  if exists (select from auth.users where id = p_user_id) then
    return true;
  end if;
  if coalesce(starts_with(obj_description('auth.users'::regclass, 'pg_class'), 'syncsim compat:'), false) then
    insert into auth.users (id) values (p_user_id) on conflict (id) do nothing;
    return true;
  end if;
  return false;
end
$$;

revoke execute on function syncsim_ensure_user(uuid) from public, anon, authenticated;
grant execute on function syncsim_ensure_user(uuid) to service_role;
