-- user_version 3 → 4: the form definitions this device holds beyond the built-in ones, and
-- whether the relay has had the report of each change set aside.

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

-- reported_at: when the relay acknowledged the report of a set-aside (reviewers see it there).
ALTER TABLE set_aside ADD COLUMN reported_at INTEGER;
