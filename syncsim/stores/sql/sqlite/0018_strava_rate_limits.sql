-- The limits last read from Strava's headers, kept with the count they bound (see postgres/0018).
ALTER TABLE strava_rate_slots ADD COLUMN limit_15min INTEGER CHECK (limit_15min >= 1);
ALTER TABLE strava_rate_slots ADD COLUMN limit_daily INTEGER CHECK (limit_daily >= 1);
