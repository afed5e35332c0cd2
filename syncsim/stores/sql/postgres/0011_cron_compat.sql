-- What Supabase Cron's tick needs besides pg_cron, created on plain PostgreSQL only, as 0000 provides auth:
-- a Vault to keep the cron secret out of the job's text (vault.create_secret / update_secret /
-- decrypted_secrets, Supabase Vault's interface, here without encryption), and net.http_post, which pg_net
-- provides on Supabase but no Debian package does: this one records each request in net.http_request_queue
-- instead of sending it. Plain PostgreSQL is recognised as in 0006: auth.users is the compat stand-in.

do $$
begin
  if not coalesce(starts_with(obj_description('auth.users'::regclass, 'pg_class'), 'syncsim compat:'), false) then
    return;  -- Supabase: its own Vault and pg_net
  end if;

  if not exists (select from pg_namespace where nspname = 'vault') then
    create schema vault;
    comment on schema vault is 'syncsim compat: Supabase Vault''s interface, without encryption';
    create table vault.secrets (
      id uuid primary key default gen_random_uuid(),
      name text unique,
      description text not null default '',
      secret text not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create view vault.decrypted_secrets as
      select id, name, description, secret as decrypted_secret, created_at, updated_at from vault.secrets;
    create function vault.create_secret(
      new_secret text, new_name text default null, new_description text default '', new_key_id uuid default null
    ) returns uuid language sql as $f$
      insert into vault.secrets (name, description, secret) values (new_name, new_description, new_secret)
      returning id
    $f$;
    create function vault.update_secret(
      secret_id uuid, new_secret text default null, new_name text default null,
      new_description text default null, new_key_id uuid default null
    ) returns void language sql as $f$
      update vault.secrets set
        secret = coalesce(new_secret, secret), name = coalesce(new_name, name),
        description = coalesce(new_description, description), updated_at = now()
      where id = secret_id
    $f$;
    revoke all on schema vault from public;
    revoke all on all tables in schema vault from public;
    revoke all on all functions in schema vault from public;
  end if;

  if not exists (select from pg_namespace where nspname = 'net') then
    create schema net;
    comment on schema net is 'syncsim compat: pg_net''s http_post, recording requests instead of sending them';
    create table net.http_request_queue (
      id bigserial primary key,
      method text not null,
      url text not null,
      headers jsonb not null,
      body jsonb,
      timeout_milliseconds integer not null,
      created_at timestamptz not null default clock_timestamp()
    );
    create function net.http_post(
      url text,
      body jsonb default '{}'::jsonb,
      params jsonb default '{}'::jsonb,
      headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
      timeout_milliseconds integer default 5000
    ) returns bigint language sql as $f$
      insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
      values ('POST', url, headers, body, timeout_milliseconds)
      returning id
    $f$;
    revoke all on schema net from public;
    revoke all on all tables in schema net from public;
    revoke all on all functions in schema net from public;
  end if;
end
$$;
