//! The central store: one SQLite file (WAL, `synchronous=FULL`), created on first start.
//!
//! `PRAGMA user_version` holds the schema version; [`open`] creates the current schema on a new
//! file and upgrades an older one step by step, through the same runner as the device store
//! ([`shidao_core::migrate`]).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use shidao_core::migrate::{MigrateError, Schema};

pub const VERSION: i64 = 9;

/// The central store's schema: the current one, and the steps up from every older version.
pub const SCHEMA: Schema = Schema {
    name: "central store",
    version: VERSION,
    fresh: include_str!("schema.sql"),
    upgrades: &[
        (1, include_str!("upgrade_1_to_2.sql")),
        (2, include_str!("upgrade_2_to_3.sql")),
        (3, include_str!("upgrade_3_to_4.sql")),
        (4, include_str!("upgrade_4_to_5.sql")),
        (5, include_str!("upgrade_5_to_6.sql")),
        (6, include_str!("upgrade_6_to_7.sql")),
        (7, include_str!("upgrade_7_to_8.sql")),
        (8, include_str!("upgrade_8_to_9.sql")),
    ],
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("central store {path}: schema version {found} is newer than this server ({VERSION})")]
    TooNew { path: String, found: i64 },
    #[error("central store {path}: {source}")]
    Sql { path: String, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Schema { path: String, source: MigrateError },
    #[error("central store {path}: {reason}")]
    Setup { path: String, reason: String },
}

impl DbError {
    fn of_schema(path: &str, e: MigrateError) -> DbError {
        match e {
            MigrateError::TooNew { found, .. } => DbError::TooNew { path: path.to_string(), found },
            MigrateError::Sql(source) => DbError::Sql { path: path.to_string(), source },
            source => DbError::Schema { path: path.to_string(), source },
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each pushed record is applied in a savepoint of its own; its statement journal lives in
    // memory rather than in a temporary file, and a 32 MiB page cache keeps a request's pages
    // from spilling to disk before its commit (both showed in profiles of the relay under load).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    // A push runs some thirty distinct statements (the record, its log, six projection tables,
    // the checks); with rusqlite's default cache of 16 they pushed each other out and were parsed
    // again for every record (11 % of the relay's time in a profile of `ingest-bench`).
    conn.set_prepared_statement_cache_capacity(128);
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
    let before = shidao_core::migrate::version(&conn).map_err(sql)?;
    SCHEMA.init(&mut conn).map_err(|e| DbError::of_schema(&p, e))?;
    after_upgrade(&mut conn, before).map_err(|e| DbError::Setup { path: p.clone(), reason: e.to_string() })?;
    Ok(conn)
}

/// What an upgrade cannot do in SQL: from before version 8, the ratings of the records already
/// stored are projected through their forms' scales, in one transaction.
fn after_upgrade(conn: &mut Connection, before: i64) -> crate::error::AppResult<()> {
    if (1..8).contains(&before) {
        let started = std::time::Instant::now();
        let tx = conn.transaction()?;
        let n = crate::projection::reproject_ratings(&tx)?;
        tx.commit()?;
        tracing::info!(ratings = n, ms = started.elapsed().as_millis() as u64, "ratings projected after the upgrade to version 8");
    }
    Ok(())
}

/// An in-memory central store, for tests.
pub fn open_in_memory() -> Result<Connection, DbError> {
    let mut conn = Connection::open_in_memory().map_err(|source| DbError::Sql { path: ":memory:".into(), source })?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(|source| DbError::Sql { path: ":memory:".into(), source })?;
    SCHEMA.init(&mut conn).map_err(|e| DbError::of_schema(":memory:", e))?;
    Ok(conn)
}

#[cfg(test)]
fn version(conn: &Connection) -> rusqlite::Result<i64> {
    shidao_core::migrate::version(conn)
}

#[cfg(test)]
fn init(conn: &mut Connection) -> Result<(), MigrateError> {
    SCHEMA.init(conn)
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

    fn shape(conn: &Connection) -> Vec<String> {
        shidao_core::migrate::shape(conn).expect("shape")
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
            crate::projection::project(conn, r, &v, false).expect("project");
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
        old.execute_batch(SCHEMA.upgrades[0].1).expect("v2");
        old.pragma_update(None, "user_version", 2).expect("version");
        old.execute("ATTACH DATABASE ?1 AS fresh", [fresh_path.to_str().expect("path")]).expect("attach");
        old.execute_batch(
            "INSERT INTO records SELECT id, template_id, template_version, school_id, created_by, status, record_date, heads,
                    last_seq, updated_at, author_role, CASE WHEN rowid % 2 = 0 THEN NULL ELSE score END FROM fresh.records;
             INSERT INTO answers (record_id, field, row_id, value, display, number, author, at, conflicts)
                 SELECT record_id, field, row_id, value, display, number, author, at, conflicts FROM fresh.answers;
             INSERT INTO computed SELECT record_id, name, row_id, number, text, band FROM fresh.computed;
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

    /// The ratings filled after the upgrade to version 8 are the rows a push projects: the same
    /// meanings, points, schools, statuses and dates, none missing.
    #[test]
    fn ratings_filled_after_the_upgrade_equal_the_projected_ones() {
        let mut conn = open_in_memory().expect("store");
        conn.execute_batch(
            "INSERT INTO programmes (id, name) VALUES ('p', 'P');
             INSERT INTO schools (id, programme_id, name) VALUES ('s1', 'p', 'S1'), ('s2', 'p', 'S2');",
        )
        .expect("programme");
        crate::forms::install_library(&conn, "p", 0).expect("forms");
        conn.pragma_update(None, "foreign_keys", "OFF").expect("pragma");
        let records = sample_records();
        project_all(&conn, &records);
        // Some records handed in: a push projects them again with their new status.
        conn.execute("UPDATE records SET status = 'submitted' WHERE rowid % 2 = 0", []).expect("status");
        for r in &records {
            crate::projection::project(&conn, r, &r.read(), false).expect("project");
        }
        let projected = rows(&conn, "SELECT * FROM ratings ORDER BY record_id, meaning");
        let meanings = rows(&conn, "SELECT DISTINCT meaning FROM ratings ORDER BY 1");
        assert!(meanings.len() >= 2, "{meanings:?}");
        assert!(rows(&conn, "SELECT 1 FROM ratings WHERE status = 'submitted'").len() >= 1);
        after_upgrade(&mut conn, 7).expect("after the upgrade");
        assert_eq!(rows(&conn, "SELECT * FROM ratings ORDER BY record_id, meaning"), projected);
    }

    /// A version 3 store with a file stored by `u1` (which `u2`'s record merely names) and
    /// `u2`'s upload cut at byte 10 in the shared `{hash}.part`: after the upgrade `u1` alone
    /// holds the file, and `u2`'s upload resumes in its old part file and completes.
    #[test]
    fn a_version_3_store_upgrades_its_attachments_to_holders_and_uploads_of_their_own() {
        use crate::accounts::Device;
        use shidao_core::{DeviceId, UserId};
        use shidao_core::template::Role;
        let dir = tempfile::tempdir().expect("dir");
        let files = dir.path().join("attachments");
        std::fs::create_dir_all(&files).expect("files");
        let stored = b"a photo stored under version 3".to_vec();
        let cut: Vec<u8> = (0..100u8).collect();
        let (h1, h2) = (shidao_core::store::content_hash(&stored), shidao_core::store::content_hash(&cut));
        std::fs::write(files.join(&h1), &stored).expect("stored");
        std::fs::write(files.join(format!("{h2}.part")), &cut[..10]).expect("part");

        let mut old = Connection::open(dir.path().join("old.db")).expect("old");
        old.pragma_update(None, "foreign_keys", "ON").expect("pragma");
        old.execute_batch(include_str!("v1.sql")).expect("v1");
        old.execute_batch(SCHEMA.upgrades[0].1).expect("v2");
        old.execute_batch(SCHEMA.upgrades[1].1).expect("v3");
        old.pragma_update(None, "user_version", 3).expect("version");
        old.execute_batch(&format!(
            "INSERT INTO programmes (id, name) VALUES ('p', '项目');
             INSERT INTO schools (id, programme_id, name) VALUES ('s1', 'p', '一校'), ('s2', 'p', '二校');
             INSERT INTO users (id, name, role, programme_id, created_at) VALUES ('u1', 'u1', 'inspector', 'p', 0), ('u2', 'u2', 'inspector', 'p', 0);
             INSERT INTO records (id, template_id, template_version, school_id, created_by, status, heads, last_seq, updated_at)
                  VALUES ('r2', 'inspection-visit', 1, 's2', 'u2', 'draft', '[]', 0, 0);
             INSERT INTO record_files (record_id, hash) VALUES ('r2', '{h1}');
             INSERT INTO attachments (hash, size, received, complete, mime, uploaded_by, created_at)
                  VALUES ('{h1}', {}, {}, 1, 'image/jpeg', 'u1', 7), ('{h2}', 100, 10, 0, 'image/png', 'u2', 8);",
            stored.len(),
            stored.len()
        ))
        .expect("v3 rows");
        init(&mut old).map_err(|_| "upgrade failed").expect("upgrade");
        assert_eq!(version(&old).expect("version"), VERSION);
        let text = |v: &str| rusqlite::types::Value::Text(v.into());
        let int = |n: i64| rusqlite::types::Value::Integer(n);
        assert_eq!(rows(&old, "SELECT * FROM attachment_holders"), vec![vec![text(&h1), text("u1"), int(7)]]);
        assert_eq!(
            rows(&old, "SELECT hash, user_id, size, received, mime, part FROM attachment_uploads"),
            vec![vec![text(&h2), text("u2"), int(100), int(10), text("image/png"), text(&format!("{h2}.part"))]]
        );
        assert_eq!(
            rows(&old, "SELECT hash, size, mime, uploaded_by FROM attachments"),
            vec![vec![text(&h1), int(stored.len() as i64), text("image/jpeg"), text("u1")]]
        );
        let fk: i64 = old.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).expect("fk");
        assert_eq!(fk, 0);

        // u2 names u1's file in a record of another school: still not theirs to read.
        let u2 = Device { id: DeviceId::new("d2").expect("id"), user: UserId::new("u2").expect("id"), name: "平板".into(), role: Role::Inspector, programme: Some("p".into()) };
        assert_eq!(crate::attachments::status(&old, &u2, &h1).expect("status"), None);
        // u2's cut upload resumes at byte 10 and completes; u2 becomes its holder.
        assert_eq!(crate::attachments::status(&old, &u2, &h2).expect("status"), Some((10, 100, false)));
        let done = crate::attachments::append(&old, &files, &u2, &h2, 10, 100, "image/png", &cut[10..], 9).expect("resume");
        assert_eq!(done, 100);
        assert_eq!(std::fs::read(files.join(&h2)).expect("stored"), cut);
        assert!(!files.join(format!("{h2}.part")).exists());
        assert_eq!(crate::attachments::status(&old, &u2, &h2).expect("status"), Some((100, 100, true)));
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
