-- Strava data in the same store: tokens (server-only) and activities (upserted by id).
CREATE TABLE IF NOT EXISTS strava_tokens (
    user_id        TEXT PRIMARY KEY,
    athlete_id     INTEGER NOT NULL UNIQUE,
    access_token   TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    expires_at     REAL NOT NULL,
    scope          TEXT NOT NULL DEFAULT '',
    updated_at     REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS strava_activities (
    id                    INTEGER PRIMARY KEY,
    user_id               TEXT NOT NULL,
    athlete_id            INTEGER,
    name                  TEXT NOT NULL,
    sport_type            TEXT NOT NULL,
    start_date            REAL NOT NULL,
    distance              REAL,
    moving_time           INTEGER,
    elapsed_time          INTEGER,
    total_elevation_gain  REAL,
    raw                   TEXT NOT NULL,
    synced_at             REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS strava_activities_user_start ON strava_activities (user_id, start_date DESC);
