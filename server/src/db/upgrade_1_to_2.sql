-- user_version 1 → 2: sign-in sessions of the web pages, and indexes the reports read by.

-- sessions: signed-in supervisors and admins; the id is kept as its SHA-256; csrf is the token
-- every form of the session must carry.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Reports look answers and computed values up by field across records, and records by date.
CREATE INDEX answers_field ON answers (field, record_id);
CREATE INDEX computed_name ON computed (name, record_id);
CREATE INDEX records_date ON records (record_date);
