//! The central store: one SQLite file (WAL, `synchronous=FULL`), created on first start.
//!
//! `PRAGMA user_version` holds the schema version; [`open`] creates the current schema on a new
//! file and upgrades an older one step by step (each step one IMMEDIATE transaction).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub const VERSION: i64 = 2;
const SCHEMA: &str = include_str!("schema.sql");
/// `(from, sql)`: the step from version `from` to `from + 1`.
const UPGRADES: &[(i64, &str)] = &[(1, include_str!("upgrade_1_to_2.sql"))];

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
