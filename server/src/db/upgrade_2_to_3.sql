-- user_version 2 → 3: what the dashboard and the school report read without walking answers,
-- projected with each record (`sync::project`) and backfilled here from the answers.

-- rectifications: every row of an inspection visit's rectification group that holds an answer.
-- row_index orders the rows as on the form; item is the item's display (NULL when the row has
-- none); deadline the date as written; closed whether the status is done or verified (no status
-- is open).
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

-- task_progress: the task a task-progress record reports on and its achieved amount.
CREATE TABLE task_progress (
    record_id TEXT PRIMARY KEY NOT NULL REFERENCES records (id),
    school_id TEXT NOT NULL,
    task_ref TEXT NOT NULL,
    achieved REAL
);
CREATE INDEX task_progress_task ON task_progress (task_ref, achieved);
CREATE INDEX task_progress_school ON task_progress (school_id, task_ref, achieved);

-- The rows of the rectification group (its fields rect_item, rect_module, rect_owner,
-- rect_deadline, rect_status), read as `project` reads them; a record's answers were inserted in
-- form order, so their rowids give the rows' order.
INSERT INTO rectifications (record_id, row_id, row_index, school_id, item, owner, deadline, status, closed)
SELECT g.record_id, g.row_id, ROW_NUMBER() OVER (PARTITION BY g.record_id ORDER BY g.first) - 1, g.school_id,
       (SELECT a.display FROM answers a WHERE a.record_id = g.record_id AND a.field = 'rect_item' AND a.row_id = g.row_id),
       COALESCE((SELECT a.display FROM answers a WHERE a.record_id = g.record_id AND a.field = 'rect_owner' AND a.row_id = g.row_id), ''),
       (SELECT json_extract(a.value, '$.value') FROM answers a WHERE a.record_id = g.record_id AND a.field = 'rect_deadline' AND a.row_id = g.row_id),
       COALESCE((SELECT a.display FROM answers a WHERE a.record_id = g.record_id AND a.field = 'rect_status' AND a.row_id = g.row_id), ''),
       COALESCE((SELECT json_extract(a.value, '$.value') IN ('done', 'verified') FROM answers a
                  WHERE a.record_id = g.record_id AND a.field = 'rect_status' AND a.row_id = g.row_id), 0)
FROM (SELECT r.id AS record_id, a.row_id AS row_id, r.school_id AS school_id, MIN(a.rowid) AS first
        FROM records r JOIN answers a ON a.record_id = r.id
       WHERE r.template_id = 'inspection-visit' AND a.row_id <> ''
         AND a.field IN ('rect_item', 'rect_module', 'rect_owner', 'rect_deadline', 'rect_status')
       GROUP BY r.id, a.row_id) g;

INSERT INTO task_progress (record_id, school_id, task_ref, achieved)
SELECT r.id, r.school_id, json_extract(a.value, '$.value'), c.number
FROM records r
JOIN answers a ON a.record_id = r.id AND a.field = 'task_ref' AND a.row_id = ''
JOIN computed c ON c.record_id = r.id AND c.name = 'achieved' AND c.row_id = ''
WHERE r.template_id = 'task-progress' AND json_extract(a.value, '$.value') IS NOT NULL;

-- The record's first score, which the dashboard now averages, for records not projected since
-- the 1 → 2 step added the column empty.
UPDATE records SET score = (
    SELECT c.number FROM computed c WHERE c.record_id = records.id AND c.row_id = ''
       AND c.name = CASE records.template_id WHEN 'classroom-observation' THEN 'total'
                                             WHEN 'inspection-visit' THEN 'visit_score'
                                             WHEN 'supervision-evaluation' THEN 'score_cadre' END)
WHERE score IS NULL AND template_id IN ('classroom-observation', 'inspection-visit', 'supervision-evaluation');

-- The dashboard's counts and means by template over a term, from one covering index whether or
-- not the store was ever analysed.
CREATE INDEX records_template_date ON records (template_id, record_date, school_id, created_by, score);
