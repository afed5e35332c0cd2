-- Strava's app-wide budget, counted where every process counts (see postgres/0017): one row per kind of limit.
CREATE TABLE IF NOT EXISTS strava_rate_slots (
    kind TEXT PRIMARY KEY CHECK (kind IN ('overall', 'read')),
    window_start REAL NOT NULL,
    used_15min INTEGER NOT NULL CHECK (used_15min >= 0),
    day_start REAL NOT NULL,
    used_daily INTEGER NOT NULL CHECK (used_daily >= 0)
);
INSERT OR IGNORE INTO strava_rate_slots VALUES ('overall', -1e308, 0, -1e308, 0), ('read', -1e308, 0, -1e308, 0);
