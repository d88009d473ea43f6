-- user_version 7 → 8: the dashboard over counted records from covering indexes, and ratings
-- projected (docs/benchmarks.md, "Dashboard with the programme's rule book"). The ratings of
-- records already stored are filled by the relay right after this step (`sync::reproject_ratings`).
-- Devices keep the app and version of their last sync.

ALTER TABLE devices ADD COLUMN app TEXT;

DROP INDEX records_status_school;
CREATE INDEX records_status_school ON records (status, school_id, record_date);
CREATE INDEX records_counted ON records (template_id, status, record_date, school_id, created_by, score);
CREATE INDEX records_author ON records (created_by, template_id, status, record_date, school_id);

CREATE TABLE ratings (
    record_id TEXT NOT NULL REFERENCES records (id),
    meaning TEXT NOT NULL,
    school_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record_date TEXT,
    points REAL NOT NULL,
    PRIMARY KEY (record_id, meaning)
);
CREATE INDEX ratings_mean ON ratings (meaning, status, record_date, school_id, points);
