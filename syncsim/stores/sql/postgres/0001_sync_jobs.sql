-- The design's table, exactly as approved. Everything the runner needs beyond it comes in later migrations.

create table sync_jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users(id),
  type text not null default 'strava_sync',
  status text not null default 'pending',
  payload jsonb not null default '{}',
  result jsonb,
  error text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  attempts integer not null default 0,
  max_attempts integer not null default 3
);
