-- When a listing of Strava last saw each stored activity (or a write last touched it). A full listing that
-- started at T and reached its end removes the user's activities with seen_at < T: what Strava no longer has.
-- syncsim writes it from its own clock; the default only serves rows written by other means.
alter table strava_activities add column seen_at timestamptz;
update strava_activities set seen_at = synced_at;
alter table strava_activities alter column seen_at set default now(), alter column seen_at set not null;
create index strava_activities_user_seen_idx on strava_activities (user_id, seen_at);
