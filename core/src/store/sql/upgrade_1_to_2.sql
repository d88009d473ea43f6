-- user_version 1 → 2: who wrote each record, attachments by content hash, and sync bookkeeping.

-- record_authors: every user who wrote to a record, for listing by author.
CREATE TABLE record_authors (
    record_id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (user_id, record_id)
);
CREATE INDEX record_authors_record ON record_authors (record_id);
INSERT INTO record_authors (record_id, user_id) SELECT id, created_by FROM records;

-- attachments: file bytes (photos, signature strokes) by SHA-256, outside the documents.
CREATE TABLE attachments (
    hash TEXT PRIMARY KEY NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- dirty: the record has changes the server has not acknowledged. synced_heads: the heads the
-- server is known to have (NULL: never synced). chunk_seq: the last chunk number handed out.
ALTER TABLE records ADD COLUMN dirty INTEGER NOT NULL DEFAULT 1;
ALTER TABLE records ADD COLUMN synced_heads BLOB;
ALTER TABLE records ADD COLUMN chunk_seq INTEGER NOT NULL DEFAULT 0;
-- heads: the record's heads as stored (NULL until its next save).
ALTER TABLE records ADD COLUMN heads BLOB;
UPDATE records SET chunk_seq = (SELECT COALESCE(MAX(seq), 0) FROM record_chunks WHERE record_id = records.id);
CREATE INDEX records_dirty ON records (dirty) WHERE dirty = 1;
