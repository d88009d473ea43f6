-- user_version 4 → 5: the form registry, labels of computed values, and the changes devices set
-- aside. Programmes that existed before get the built-in
-- library when the server starts (forms::install_missing_libraries).

-- form_defs: every form definition ever published, by content hash (SHA-256 of its JSON); never
-- changed or removed, so a record can always be read with the version it was made with.
CREATE TABLE form_defs (
    hash TEXT PRIMARY KEY NOT NULL,
    template_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL
);

-- form_versions: the versions each programme has published (the built-in library included);
-- source says where it came from (built-in, a JSON file, an XLSForm workbook); a retired version
-- takes no new records.
CREATE TABLE form_versions (
    programme_id TEXT NOT NULL REFERENCES programmes (id),
    template_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL REFERENCES form_defs (hash),
    source TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    retired_at INTEGER,
    PRIMARY KEY (programme_id, template_id, version)
);
CREATE INDEX form_versions_hash ON form_versions (hash);

-- computed.display: the label the form gives a computed value (达标 for 1, 滞后 for red); filled
-- when a record is next projected (until then exports show the value as computed).
ALTER TABLE computed ADD COLUMN display TEXT;

-- set_asides: changes a device set aside after the relay refused them by the rules (an edit made
-- beside an approval, say), as the device reported them, so reviewers see beside the record what
-- did not become part of it. changes: the refused Automerge changes (empty when too large to
-- report); fields / acts / reapplied: JSON lists.
CREATE TABLE set_asides (
    record_id TEXT NOT NULL REFERENCES records (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    user_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    fields TEXT NOT NULL,
    acts TEXT NOT NULL,
    reapplied TEXT NOT NULL,
    changes BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (record_id, device_id, at)
);
CREATE INDEX set_asides_device ON set_asides (device_id);
