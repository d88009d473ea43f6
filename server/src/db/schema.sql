-- The central store (user_version 8). One SQLite file in WAL mode; one writer.

-- programmes: a district's improvement programme (e.g. 瓯海区初中全面提升行动计划).
CREATE TABLE programmes (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    term_start TEXT,
    term_end TEXT
);

-- schools: schools in a programme, with their category (one of the programme's categories rule)
-- and key project.
CREATE TABLE schools (
    id TEXT PRIMARY KEY NOT NULL,
    programme_id TEXT NOT NULL REFERENCES programmes (id),
    name TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    key_project TEXT NOT NULL DEFAULT ''
);
CREATE INDEX schools_programme ON schools (programme_id);

-- users: people with accounts. Reviewers (supervisor, admin) see their whole programme; others
-- the schools they are assigned to. password_hash serves the web pages.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    programme_id TEXT REFERENCES programmes (id),
    password_hash TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE INDEX users_programme ON users (programme_id);

-- assignments: the schools a user works in.
CREATE TABLE assignments (
    user_id TEXT NOT NULL REFERENCES users (id),
    school_id TEXT NOT NULL REFERENCES schools (id),
    PRIMARY KEY (user_id, school_id)
);
CREATE INDEX assignments_school ON assignments (school_id);

-- tasks: programme or school tasks with a numeric target and a time line.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    programme_id TEXT NOT NULL REFERENCES programmes (id),
    school_id TEXT REFERENCES schools (id),
    title TEXT NOT NULL,
    target REAL NOT NULL,
    unit TEXT NOT NULL,
    start_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tasks_programme ON tasks (programme_id);
CREATE INDEX tasks_school ON tasks (school_id);

-- enrol_codes: one-time codes (SHA-256) with which a device enrols for a user.
CREATE TABLE enrol_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX enrol_codes_user ON enrol_codes (user_id);

-- devices: enrolled tablets; the token is kept as its SHA-256; a revoked device is refused. app:
-- the app and version its last sync named.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_seen INTEGER,
    app TEXT
);
CREATE INDEX devices_user ON devices (user_id);

-- actors: the Automerge actor ids a device writes with; an actor belongs to one device for good.
CREATE TABLE actors (
    actor TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id)
);
CREATE INDEX actors_device ON actors (device_id);

-- records: what every record is about; last_seq is its latest entry in the change log.
-- author_role and score (the template's first score, e.g. a lesson's total) are kept for the
-- dashboard, whose counts and means read covering indexes (with or without ANALYZE statistics).
-- The documents themselves live in `documents`, so these rows stay small.
CREATE TABLE records (
    id TEXT PRIMARY KEY NOT NULL,
    template_id TEXT NOT NULL,
    template_version INTEGER NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools (id),
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    record_date TEXT,
    heads TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    author_role TEXT,
    score REAL
);
CREATE INDEX records_school ON records (school_id, template_id);
CREATE INDEX records_template ON records (template_id, status);
CREATE INDEX records_status ON records (status);
CREATE INDEX records_date ON records (record_date);
CREATE INDEX records_school_date ON records (school_id, template_id, record_date, author_role, created_by, score);
CREATE INDEX records_status_school ON records (status, school_id, record_date);
CREATE INDEX records_template_date ON records (template_id, record_date, school_id, created_by, score);
-- Counted records (submitted, approved) of a form over a period, and one person's records of a
-- form over a period (a lesson quota, an expert's visits), each read from one index.
CREATE INDEX records_counted ON records (template_id, status, record_date, school_id, created_by, score);
CREATE INDEX records_author ON records (created_by, template_id, status, record_date, school_id);

-- documents: every record's compacted Automerge document, rewritten on each accepted push.
CREATE TABLE documents (
    record_id TEXT PRIMARY KEY NOT NULL REFERENCES records (id),
    doc BLOB NOT NULL
);

-- changes: the log of every accepted push: its change bytes, who pushed them from which device
-- and when. Pull cursors follow seq; nothing is ever deleted from it.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL REFERENCES records (id),
    school_id TEXT NOT NULL,
    bytes BLOB NOT NULL,
    change_count INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX changes_record ON changes (record_id);
CREATE INDEX changes_school_seq ON changes (school_id, seq);

-- answers: the current answers of every record (author and time per field), kept up to date in
-- the same transaction as each push, for reports that must not load documents. (The device an
-- answer was written on is in the record's document and the change log, not here.)
CREATE TABLE answers (
    record_id TEXT NOT NULL REFERENCES records (id),
    field TEXT NOT NULL,
    row_id TEXT NOT NULL DEFAULT '',
    value TEXT NOT NULL,
    display TEXT NOT NULL,
    number REAL,
    author TEXT,
    at INTEGER,
    conflicts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (record_id, field, row_id)
);
CREATE INDEX answers_field ON answers (field, record_id);

-- computed: computed fields and scores of every record, kept like answers. text is the value as
-- computed (`1`, `red`); display the label the form gives it (达标, 滞后), in Chinese.
CREATE TABLE computed (
    record_id TEXT NOT NULL REFERENCES records (id),
    name TEXT NOT NULL,
    row_id TEXT NOT NULL DEFAULT '',
    number REAL,
    text TEXT NOT NULL,
    band TEXT,
    display TEXT,
    PRIMARY KEY (record_id, name, row_id)
);
CREATE INDEX computed_name ON computed (name, record_id);

-- rectifications: every row of an inspection visit's rectification group that holds an answer,
-- projected with the record so the dashboard's overdue count and the school report's open items
-- need not walk answers. row_index orders the rows as on the form; item is the item's display
-- (NULL when the row has none); deadline the date as written; closed whether the status is done
-- or verified (no status is open).
CREATE TABLE rectifications (
    record_id TEXT NOT NULL REFERENCES records (id),
    row_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    school_id TEXT NOT NULL,
    item TEXT,
    owner TEXT NOT NULL,
    deadline TEXT,
    status TEXT NOT NULL,
    closed INTEGER NOT NULL,
    PRIMARY KEY (record_id, row_id)
);
CREATE INDEX rectifications_overdue ON rectifications (closed, deadline, school_id);
CREATE INDEX rectifications_school ON rectifications (school_id, closed, deadline);

-- task_progress: the task a task-progress record reports on and its achieved amount, projected
-- like rectifications, for the tasks' sums.
CREATE TABLE task_progress (
    record_id TEXT PRIMARY KEY NOT NULL REFERENCES records (id),
    school_id TEXT NOT NULL,
    task_ref TEXT NOT NULL,
    achieved REAL
);
CREATE INDEX task_progress_task ON task_progress (task_ref, achieved);
CREATE INDEX task_progress_school ON task_progress (school_id, task_ref, achieved);

-- ratings: every rating that carries a meaning on its form (a lesson's 学习兴趣度 / 学生参与度),
-- as points 0–100 through the form version's scale, projected with the record's school, status
-- and date so the dashboard's per-school means read one index and never walk answers.
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

-- record_files: attachments records refer to (who may download what).
CREATE TABLE record_files (
    record_id TEXT NOT NULL REFERENCES records (id),
    hash TEXT NOT NULL,
    PRIMARY KEY (hash, record_id)
);
CREATE INDEX record_files_record ON record_files (record_id);

-- attachments: stored files by SHA-256 (their bytes hashed to the name); the bytes live in a
-- file named by the hash beside the database; uploaded_by is the first to upload them.
CREATE TABLE attachments (
    hash TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- attachment_holders: who proved they hold a stored file by uploading its bytes whole (the
-- bytes hashed to the name); since: when that upload completed. The server answers about a file
-- only to its holders and to those who may read it: a record in their scope refers to it and a
-- holder has that record's school in scope.
CREATE TABLE attachment_holders (
    hash TEXT NOT NULL REFERENCES attachments (hash),
    user_id TEXT NOT NULL REFERENCES users (id),
    since INTEGER NOT NULL,
    PRIMARY KEY (hash, user_id)
);

-- attachment_uploads: uploads in progress, one per file and user, each in a part file of its own
-- (`part`, a name in the attachments folder), so nobody can spoil another's upload.
CREATE TABLE attachment_uploads (
    hash TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    mime TEXT NOT NULL,
    part TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (hash, user_id)
);

-- sync_requests: request ids seen, for diagnostics and replay detection.
CREATE TABLE sync_requests (
    request_id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    pushed INTEGER NOT NULL,
    accepted INTEGER NOT NULL
);

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

-- programme_rules: each programme's rule book (JSON, the format of docs/programme.md), checked by
-- the server before it is stored; one row per programme.
CREATE TABLE programme_rules (
    programme_id TEXT PRIMARY KEY NOT NULL REFERENCES programmes (id),
    rules TEXT NOT NULL,
    preset TEXT,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);

-- rule_history: every change of a rule book or of an expert team: who, when, which rule, and
-- the rule before and after (JSON; NULL when it was absent).
CREATE TABLE rule_history (
    id INTEGER PRIMARY KEY,
    programme_id TEXT NOT NULL REFERENCES programmes (id),
    at INTEGER NOT NULL,
    by TEXT NOT NULL,
    rule TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX rule_history_programme ON rule_history (programme_id, id);

-- expert_team: the experts assigned to each school (一校一团队); what a programme's expert team
-- rule counts.
CREATE TABLE expert_team (
    school_id TEXT NOT NULL REFERENCES schools (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    assigned_at INTEGER NOT NULL,
    assigned_by TEXT NOT NULL,
    PRIMARY KEY (school_id, user_id)
);
CREATE INDEX expert_team_user ON expert_team (user_id);

-- audit_log: every admin and review action, sign-in and failed sign-in: who (a user id, or
-- `console` for the admin command line), when, what (a stable action name), on what, and the
-- state before and after (JSON, NULL when not kept). Append-only: the triggers below refuse
-- every UPDATE and DELETE.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT,
    action TEXT NOT NULL,
    target TEXT,
    programme TEXT,
    before TEXT,
    after TEXT,
    detail TEXT,
    source TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
