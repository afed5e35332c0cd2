-- What Supabase already provides, created on plain PostgreSQL only where missing, so that the same
-- migrations run on both: schema auth, auth.users, auth.uid() / auth.role() / auth.jwt(), and the roles
-- anon, authenticated and service_role. On Supabase every statement below is a no-op.
--
-- Every step checks the catalog before creating: on Supabase the migrating role may not own schema auth,
-- and CREATE ... IF NOT EXISTS checks privileges before existence.

do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
exception
  -- Roles are cluster-wide: another database's migration may have created one a moment ago.
  when duplicate_object or unique_violation then null;
end
$$;

do $$
begin
  if not exists (select from pg_namespace where nspname = 'auth') then
    create schema auth;
    grant usage on schema auth to anon, authenticated, service_role;
  end if;

  if to_regclass('auth.users') is null then
    create table auth.users (
      id uuid primary key,
      email text,
      raw_user_meta_data jsonb not null default '{}',
      created_at timestamptz not null default now()
    );
    -- The Postgres store reads this comment: it may add users on demand only to a table it created.
    comment on table auth.users is
      'syncsim compat: stands in for Supabase auth.users on plain PostgreSQL; users are added on demand';
    grant select on auth.users to service_role;
  end if;

  -- Supabase's definitions: the JWT's sub/role claims, from PostgREST's request.jwt.claim(s) settings.
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
  end if;
  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $f$;
  end if;
  if to_regprocedure('auth.jwt()') is null then
    create function auth.jwt() returns jsonb language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
      )::jsonb
    $f$;
  end if;
end
$$;
