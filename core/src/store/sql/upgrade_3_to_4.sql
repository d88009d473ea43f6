-- user_version 3 → 4: the form definitions this device holds beyond the built-in ones.

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
