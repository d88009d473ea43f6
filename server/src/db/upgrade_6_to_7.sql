-- user_version 6 → 7: the audit log (docs/architecture.md, "Audit log").

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
