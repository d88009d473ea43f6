-- The first schema (user_version 1). Kept verbatim: the migration test builds it and upgrades it
-- step by step, and proves the result equals a fresh `schema.sql`.

-- records: one row per filled form: its compacted Automerge document and the columns listed on.
CREATE TABLE records (
    id TEXT PRIMARY KEY NOT NULL,
    template_id TEXT NOT NULL,
    template_version INTEGER NOT NULL,
    school_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    record_date TEXT,
    updated_at INTEGER NOT NULL,
    snapshot BLOB NOT NULL
);
CREATE INDEX records_school ON records (school_id, updated_at);
CREATE INDEX records_template ON records (template_id, status);
CREATE INDEX records_status ON records (status);
CREATE INDEX records_date ON records (record_date);
CREATE INDEX records_created_by ON records (created_by);

-- record_chunks: changes saved since the snapshot, in order; compaction folds them into it.
CREATE TABLE record_chunks (
    record_id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (record_id, seq)
);

-- store_meta: facts about this store (which device it belongs to).
CREATE TABLE store_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
