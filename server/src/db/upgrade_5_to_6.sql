-- user_version 5 → 6: programme rules as data (docs/programme.md), their change history, the
-- expert team of each school, and the source sentence of a task.

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

-- tasks.source: the sentence of the programme document a task comes from (empty when an admin
-- entered it).
ALTER TABLE tasks ADD COLUMN source TEXT NOT NULL DEFAULT '';

-- Programmes from before rule books keep what they had: the three categories every programme
-- was held to, and their one term.
INSERT INTO programme_rules (programme_id, rules, preset, updated_at, updated_by)
SELECT p.id,
       json_object(
           'document', '',
           'terms', CASE WHEN p.term_start IS NOT NULL AND p.term_end IS NOT NULL
                         THEN json_array(json_object('id', 'term-1', 'name', '学期', 'start', p.term_start, 'end', p.term_end))
                         ELSE json_array() END,
           'categories', json_array(
               json_object('name', '示范', 'source', json_object('document', '(schema v5)', 'sentence', 'categories every programme had before rule books')),
               json_object('name', '优质', 'source', json_object('document', '(schema v5)', 'sentence', 'categories every programme had before rule books')),
               json_object('name', '潜质', 'source', json_object('document', '(schema v5)', 'sentence', 'categories every programme had before rule books')))),
       NULL, 0, 'upgrade'
FROM programmes p;
