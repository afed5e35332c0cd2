-- seen_at is written for every activity a listing sees and read only by the delete at the end of a full listing,
-- which follows a listing that touched all of the user's rows: (user_id, start_date) finds them as cheaply.
-- The index on (user_id, seen_at) cost every listed activity an index write (see postgres/0015).
DROP INDEX IF EXISTS strava_activities_user_seen;
