-- A pause shared by every job of a type (see postgres/0016): one row per type, kept after it ends.
CREATE TABLE IF NOT EXISTS job_type_pauses (
    type TEXT PRIMARY KEY,
    until REAL NOT NULL,
    looks INTEGER NOT NULL DEFAULT 0 CHECK (looks >= 0),
    reason TEXT NOT NULL,
    paused_at REAL NOT NULL
);
