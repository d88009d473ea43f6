-- The current schema of a device store (user_version 4), created in one step on a new store.

-- records: one row per filled form: its compacted Automerge document and the columns listed on.
-- dirty: the record has changes the server has not acknowledged. synced_heads: the heads the
-- server is known to have (NULL: never synced). chunk_seq: the last chunk number handed out; it
-- only grows, so a copy in memory can tell whether it wrote every chunk since it was loaded.
-- heads: the record's heads as stored (32-byte hashes), so sync bookkeeping needs no document.
-- generation: bumped when the record is put back to the relay's state after a refusal (see
-- set_aside); a copy in memory of an older generation may not be saved.
CREATE TABLE records (
    id TEXT PRIMARY KEY NOT NULL,
    template_id TEXT NOT NULL,
    template_version INTEGER NOT NULL,
    school_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    record_date TEXT,
    updated_at INTEGER NOT NULL,
    snapshot BLOB NOT NULL,
    dirty INTEGER NOT NULL DEFAULT 1,
    synced_heads BLOB,
    chunk_seq INTEGER NOT NULL DEFAULT 0,
    heads BLOB,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_school ON records (school_id, updated_at);
CREATE INDEX records_template ON records (template_id, status);
CREATE INDEX records_status ON records (status);
CREATE INDEX records_date ON records (record_date);
CREATE INDEX records_created_by ON records (created_by);
CREATE INDEX records_dirty ON records (dirty) WHERE dirty = 1;

-- record_chunks: changes saved since the snapshot, in order; compaction folds them into it.
CREATE TABLE record_chunks (
    record_id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (record_id, seq)
);

-- record_authors: every user who wrote to a record, for listing by author.
CREATE TABLE record_authors (
    record_id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (user_id, record_id)
);
CREATE INDEX record_authors_record ON record_authors (record_id);

-- set_aside: changes the relay refused, kept whole after the record was put back to the relay's
-- state. changes: the refused Automerge changes (they load on top of the record); base_heads:
-- the relay's heads they were taken off; heads: the refused copy's heads; fields / acts / reapplied: JSON lists of the field
-- paths they touched, the review steps they took, and the fields written again as new changes.
CREATE TABLE set_aside (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    fields TEXT NOT NULL,
    acts TEXT NOT NULL,
    reapplied TEXT NOT NULL,
    base_heads BLOB NOT NULL,
    heads BLOB NOT NULL,
    changes BLOB NOT NULL,
    -- reported_at: when the relay acknowledged the report of it (reviewers see it there).
    reported_at INTEGER
);
CREATE INDEX set_aside_record ON set_aside (record_id);

-- attachments: file bytes (photos, signature strokes) by SHA-256, outside the documents.
CREATE TABLE attachments (
    hash TEXT PRIMARY KEY NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- store_meta: facts about this store (which device it belongs to).
CREATE TABLE store_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- forms: every form version delivered by sync or added by the app, as its definition (JSON) by
-- content hash (SHA-256 of the JSON). Never deleted: a record opens with the version it was made
-- with for as long as the record is kept.
CREATE TABLE forms (
    hash TEXT PRIMARY KEY NOT NULL,
    template_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX forms_template ON forms (template_id, version);
