-- user_version 8 → 9: the answers' projection no longer keeps the device each answer was
-- written on. No page read it; the record's document and the change log keep it. About 37 bytes
-- of every answer row (docs/benchmarks.md, "Relay ingest on its own").

ALTER TABLE answers DROP COLUMN device;
