-- seen_at is written for every activity a listing sees, and read by one statement only: the delete at the end of
-- a full listing, of the user's activities not seen since it started. That delete follows a listing that touched
-- every one of the user's rows, so reading them again through (user_id, start_date) costs it no more than the
-- listing did; the index on (user_id, seen_at), though, cost every listed activity an index write, and made the
-- seen_at-only update of a reconcile a non-HOT update that writes every index of the table.
drop index if exists strava_activities_user_seen_idx;
