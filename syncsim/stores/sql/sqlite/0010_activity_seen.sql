-- When a listing of Strava last saw each stored activity (or a write last touched it), UTC epoch seconds.
ALTER TABLE strava_activities ADD COLUMN seen_at REAL NOT NULL DEFAULT 0;
UPDATE strava_activities SET seen_at = synced_at;
CREATE INDEX IF NOT EXISTS strava_activities_user_seen ON strava_activities (user_id, seen_at);
