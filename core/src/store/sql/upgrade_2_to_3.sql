-- user_version 2 → 3: refused changes set aside, and the generation that a set-aside starts.

-- generation: bumped when the record is put back to the relay's state after a refusal (see
-- set_aside); a copy in memory of an older generation may not be saved.
ALTER TABLE records ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

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
    changes BLOB NOT NULL
);
CREATE INDEX set_aside_record ON set_aside (record_id);
