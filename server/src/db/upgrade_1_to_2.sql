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

-- What the dashboard counts, kept on the record: its author's role and its first score.
ALTER TABLE records ADD COLUMN author_role TEXT;
ALTER TABLE records ADD COLUMN score REAL;
UPDATE records SET author_role = (SELECT role FROM users WHERE users.id = records.created_by);
CREATE INDEX records_school_date ON records (school_id, template_id, record_date, author_role, created_by, score);
CREATE INDEX records_status_school ON records (status, school_id);

-- Documents move out of `records`, so the rows reports scan stay small.
CREATE TABLE documents (
    record_id TEXT PRIMARY KEY NOT NULL REFERENCES records (id),
    doc BLOB NOT NULL
);
INSERT INTO documents (record_id, doc) SELECT id, doc FROM records;
ALTER TABLE records DROP COLUMN doc;
