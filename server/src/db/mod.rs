//! The central store: one SQLite file (WAL, `synchronous=FULL`), created on first start.
//!
//! `PRAGMA user_version` holds the schema version; [`open`] creates the current schema on a new
//! file and upgrades an older one step by step (each step one IMMEDIATE transaction).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub const VERSION: i64 = 3;
const SCHEMA: &str = include_str!("schema.sql");
/// `(from, sql)`: the step from version `from` to `from + 1`.
const UPGRADES: &[(i64, &str)] = &[(1, include_str!("upgrade_1_to_2.sql")), (2, include_str!("upgrade_2_to_3.sql"))];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("central store {path}: schema version {found} is newer than this server ({VERSION})")]
    TooNew { path: String, found: i64 },
    #[error("central store {path}: {source}")]
    Sql { path: String, source: rusqlite::Error },
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Opens (creating if needed) the central store and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let p = path.display().to_string();
    let sql = |source| DbError::Sql { path: p.clone(), source };
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    configure(&conn).map_err(sql)?;
    init(&mut conn).map_err(|e| match e {
        InitError::TooNew(found) => DbError::TooNew { path: p.clone(), found },
        InitError::Sql(source) => DbError::Sql { path: p.clone(), source },
    })?;
    Ok(conn)
}

/// An in-memory central store, for tests.
pub fn open_in_memory() -> Result<Connection, DbError> {
    let mut conn = Connection::open_in_memory().map_err(|source| DbError::Sql { path: ":memory:".into(), source })?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(|source| DbError::Sql { path: ":memory:".into(), source })?;
    init(&mut conn).map_err(|e| match e {
        InitError::TooNew(found) => DbError::TooNew { path: ":memory:".into(), found },
        InitError::Sql(source) => DbError::Sql { path: ":memory:".into(), source },
    })?;
    Ok(conn)
}

enum InitError {
    TooNew(i64),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for InitError {
    fn from(e: rusqlite::Error) -> Self {
        InitError::Sql(e)
    }
}

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn init(conn: &mut Connection) -> Result<(), InitError> {
    loop {
        let v = version(conn)?;
        if v > VERSION {
            return Err(InitError::TooNew(v));
        }
        if v == VERSION {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = version(&tx)?;
        if now == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", VERSION)?;
        } else if now == v {
            let step = UPGRADES.iter().find(|(from, _)| *from == v).map(|(_, s)| *s).ok_or(rusqlite::Error::InvalidQuery)?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", v + 1)?;
        }
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_has_the_current_schema_and_reopens() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("central.db");
        drop(open(&path).expect("create"));
        let conn = open(&path).expect("reopen");
        assert_eq!(version(&conn).expect("version"), VERSION);
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('records', 'changes', 'answers', 'devices')", [], |r| r.get(0))
            .expect("tables");
        assert_eq!(tables, 4);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
    }

    /// Tables with their columns and foreign keys, and indexes, however the SQL was written.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut stmt = conn.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").expect("master");
        let rows: Vec<(String, String, Option<String>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("rows").collect::<Result<_, _>>().expect("rows");
        for (ty, name, sql) in rows {
            if ty == "table" {
                let mut cols = conn.prepare(&format!("PRAGMA table_xinfo({name})")).expect("cols");
                let mut c: Vec<String> = cols
                    .query_map([], |r| Ok(format!("{}:{}:{}:{:?}:{}", r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?, r.get::<_, Option<String>>(4)?, r.get::<_, i64>(5)?)))
                    .expect("cols")
                    .collect::<Result<_, _>>()
                    .expect("cols");
                c.sort();
                out.push(format!("table {name} {c:?}"));
            } else {
                out.push(format!("{ty} {name} {:?}", sql.map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))));
            }
        }
        out
    }

    #[test]
    fn first_schema_plus_upgrades_equals_the_current_one() {
        let fresh = open_in_memory().expect("fresh");
        let mut old = Connection::open_in_memory().expect("old");
        old.execute_batch(include_str!("v1.sql")).expect("v1");
        old.pragma_update(None, "user_version", 1).expect("version");
        old.execute("INSERT INTO programmes (id, name) VALUES ('p', '项目')", []).expect("row");
        init(&mut old).map_err(|_| "upgrade failed").expect("upgrade");
        assert_eq!(version(&old).expect("version"), VERSION);
        assert_eq!(shape(&old), shape(&fresh));
        let kept: String = old.query_row("SELECT name FROM programmes", [], |r| r.get(0)).expect("kept");
        assert_eq!(kept, "项目");
    }

    /// Records of every template (filled at random) and visits and task progress written to
    /// cover what the projection distinguishes: open and closed items, an item without deadline,
    /// a deadline without item, a status in conflict, a task progress without a task number.
    fn sample_records() -> Vec<shidao_core::Record> {
        use shidao_core::sample::{fill_completely, Rng};
        use shidao_core::template::BUILTIN_IDS;
        use shidao_core::{builtin, Answer, Clock, DeviceId, Editor, FieldRef, NewRecord, Record, RecordId, SchoolId, UserId};
        let clock = Clock::fixed(1_790_000_000);
        let editor = |user: &str, role| Editor { user: UserId::new(user).expect("id"), device: DeviceId::new(format!("{user}-tab")).expect("id"), role };
        let new = |t: &str, school: &str, user: &str| {
            let t = builtin(t).expect("template");
            let role = t.def.filled_by[0];
            Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new(school).expect("id") }, editor(user, role), clock.clone()).expect("record")
        };
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        for (k, id) in BUILTIN_IDS.iter().enumerate() {
            for i in 0..3 {
                let mut r = new(id, if (k + i) % 2 == 0 { "s1" } else { "s2" }, "u1");
                fill_completely(&mut r, 1 + i, &mut rng).expect("fill");
                out.push(r);
            }
        }
        let set = |r: &mut Record, field: &str, row: Option<&shidao_core::RowId>, a: Answer| {
            let at = match row {
                Some(row) => FieldRef::in_row(field, row),
                None => FieldRef::top(field),
            };
            r.set_answer(&at, a).expect("answer");
        };
        let mut visit = new("inspection-visit", "s1", "insp");
        let rows: Vec<_> = (0..5).map(|_| visit.add_row("rectifications", None).expect("row")).collect();
        let text = |s: &str| Answer::Text(s.into());
        for (i, row) in rows.iter().enumerate() {
            if i != 2 {
                set(&mut visit, "rect_item", Some(row), text(&format!("事项{i}")));
            }
            if i != 1 {
                set(&mut visit, "rect_deadline", Some(row), Answer::Date(format!("2026-10-0{}", i + 1)));
            }
            if i == 0 {
                set(&mut visit, "rect_owner", Some(row), text("王"));
            }
            let status = ["open", "in_progress", "done", "verified", "open"][i];
            if i != 4 {
                set(&mut visit, "rect_status", Some(row), Answer::Choice(status.into()));
            }
        }
        // Two inspectors judge the last row at once: the status is in conflict.
        let mut other = visit.fork(editor("insp2", shidao_core::template::Role::Inspector));
        set(&mut visit, "rect_status", Some(&rows[4]), Answer::Choice("done".into()));
        set(&mut other, "rect_status", Some(&rows[4]), Answer::Choice("in_progress".into()));
        visit.merge(&other).expect("merge");
        out.push(visit);
        let mut task = new("task-progress", "s2", "head");
        fill_completely(&mut task, 2, &mut rng).expect("fill");
        set(&mut task, "task_ref", None, text("yufeng-03"));
        out.push(task);
        out.push(new("task-progress", "s2", "head"));
        out
    }

    /// Projects `records` into `conn` as the relay does (their `records` rows first).
    fn project_all(conn: &Connection, records: &[shidao_core::Record]) {
        for r in records {
            let v = r.read();
            conn.execute(
                "INSERT INTO records (id, template_id, template_version, school_id, created_by, status, record_date, heads, last_seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'draft', ?6, '[]', 0, 0)",
                rusqlite::params![v.id, v.template, v.version, v.school, v.created_by, r.date()],
            )
            .expect("record");
            crate::sync::project(conn, r, &v).expect("project");
        }
    }

    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare(sql).expect("query");
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect()).expect("rows").collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn a_version_2_store_with_records_upgrades_to_the_projection_of_a_fresh_one() {
        let dir = tempfile::tempdir().expect("dir");
        let records = sample_records();
        let fresh_path = dir.path().join("fresh.db");
        let fresh = open(&fresh_path).expect("fresh");
        fresh.pragma_update(None, "foreign_keys", "OFF").expect("pragma");
        project_all(&fresh, &records);
        drop(fresh);

        // A version 2 store holding the same records, answers and computed values, some of its
        // records without their score (as records last projected before version 2).
        let mut old = Connection::open(dir.path().join("old.db")).expect("old");
        old.pragma_update(None, "foreign_keys", "OFF").expect("pragma");
        old.execute_batch(include_str!("v1.sql")).expect("v1");
        old.execute_batch(UPGRADES[0].1).expect("v2");
        old.pragma_update(None, "user_version", 2).expect("version");
        old.execute("ATTACH DATABASE ?1 AS fresh", [fresh_path.to_str().expect("path")]).expect("attach");
        old.execute_batch(
            "INSERT INTO records SELECT id, template_id, template_version, school_id, created_by, status, record_date, heads,
                    last_seq, updated_at, author_role, CASE WHEN rowid % 2 = 0 THEN NULL ELSE score END FROM fresh.records;
             INSERT INTO answers SELECT * FROM fresh.answers;
             INSERT INTO computed SELECT * FROM fresh.computed;
             DETACH DATABASE fresh;",
        )
        .expect("copy");
        init(&mut old).map_err(|_| "upgrade failed").expect("upgrade");
        assert_eq!(version(&old).expect("version"), VERSION);

        let fresh = open(&fresh_path).expect("fresh");
        for sql in [
            "SELECT * FROM rectifications ORDER BY record_id, row_id",
            "SELECT * FROM task_progress ORDER BY record_id",
            "SELECT id, score FROM records ORDER BY id",
        ] {
            assert_eq!(rows(&old, sql), rows(&fresh, sql), "{sql}");
        }
        // The cases are there: open and closed items, no deadline, no item, a task.
        let count = |sql: &str| fresh.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count");
        assert!(count("SELECT COUNT(*) FROM rectifications WHERE closed = 0") >= 3);
        assert!(count("SELECT COUNT(*) FROM rectifications WHERE closed = 1") >= 2);
        assert!(count("SELECT COUNT(*) FROM rectifications WHERE item IS NULL") >= 1);
        assert!(count("SELECT COUNT(*) FROM rectifications WHERE deadline IS NULL") >= 1);
        assert!(count("SELECT COUNT(*) FROM task_progress WHERE task_ref = 'yufeng-03' AND achieved > 0") == 1);
        assert!(count("SELECT COUNT(*) FROM records WHERE score IS NOT NULL") >= 6);
    }

    #[test]
    fn a_newer_store_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("central.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", VERSION + 1).expect("version");
        }
        assert!(matches!(open(&path), Err(DbError::TooNew { .. })));
    }
}
