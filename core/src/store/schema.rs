//! The device store's schema: created fresh in one step, or upgraded one version at a time.
//!
//! `PRAGMA user_version` holds the version. [`init`] creates the current schema on an empty file;
//! [`upgrade`] moves an older file forward, every step in one IMMEDIATE transaction so a crash
//! leaves the old version intact. A test proves that the first schema plus every upgrade equals a
//! fresh one.

use rusqlite::{Connection, TransactionBehavior};

/// The version [`init`] creates.
pub const VERSION: i64 = 4;

const SCHEMA: &str = include_str!("sql/schema.sql");
#[cfg(test)]
pub(crate) const V1: &str = include_str!("sql/v1.sql");
const UPGRADES: &[(i64, &str)] =
    &[(1, include_str!("sql/upgrade_1_to_2.sql")), (2, include_str!("sql/upgrade_2_to_3.sql")), (3, include_str!("sql/upgrade_3_to_4.sql"))];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("store schema version {0} is newer than this app understands ({VERSION}); update the app")]
    TooNew(i64),
    #[error("store schema upgrade from version {from} failed: {source}")]
    Upgrade { from: i64, source: rusqlite::Error },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Creates the current schema on an empty database, or upgrades an older one.
pub fn init(conn: &mut Connection) -> Result<(), SchemaError> {
    let v = version(conn)?;
    if v > VERSION {
        return Err(SchemaError::TooNew(v));
    }
    if v == 0 {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another connection may have initialised it meanwhile.
        if version(&tx)? == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", VERSION)?;
        }
        tx.commit()?;
        return Ok(());
    }
    upgrade(conn)
}

/// Applies every upgrade from the file's version to [`VERSION`].
pub fn upgrade(conn: &mut Connection) -> Result<(), SchemaError> {
    loop {
        let from = version(conn)?;
        if from >= VERSION {
            return Ok(());
        }
        upgrade_from(conn, from).map_err(|source| SchemaError::Upgrade { from, source })?;
    }
}

/// Moves the schema one step up from `from`.
fn upgrade_from(conn: &mut Connection, from: i64) -> rusqlite::Result<()> {
    let sql = UPGRADES
        .iter()
        .find(|(v, _)| *v == from)
        .map(|(_, s)| *s)
        .ok_or(rusqlite::Error::InvalidQuery)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if version(&tx)? == from {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from + 1)?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables, their columns and their indexes, independent of how the SQL was written.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut tables = conn
            .prepare("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .expect("prepare");
        let names: Vec<(String, String)> = tables
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for (name, ty) in names {
            if ty == "table" {
                let mut cols = conn.prepare(&format!("PRAGMA table_xinfo({name})")).expect("xinfo");
                let c: Vec<String> = cols
                    .query_map([], |r| {
                        Ok(format!(
                            "{}:{}:{}:{:?}:{}",
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, i64>(5)?
                        ))
                    })
                    .expect("cols")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cols");
                let mut c = c;
                c.sort();
                out.push(format!("table {name} [{}]", c.join(", ")));
                let mut fks = conn.prepare(&format!("PRAGMA foreign_key_list({name})")).expect("fk");
                let f: Vec<String> = fks
                    .query_map([], |r| Ok(format!("{}->{}.{}", r.get::<_, String>(3)?, r.get::<_, String>(2)?, r.get::<_, String>(4)?)))
                    .expect("fk")
                    .collect::<Result<_, _>>()
                    .expect("fk");
                out.push(format!("fk {name} {f:?}"));
            } else {
                let sql: Option<String> = conn
                    .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [&name], |r| r.get(0))
                    .expect("sql");
                let norm = sql.map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
                out.push(format!("{ty} {name} {norm:?}"));
            }
        }
        out
    }

    #[test]
    fn first_schema_plus_upgrades_equals_fresh_schema() {
        let mut fresh = Connection::open_in_memory().expect("open");
        init(&mut fresh).expect("init");
        assert_eq!(version(&fresh).expect("version"), VERSION);

        let mut old = Connection::open_in_memory().expect("open");
        old.execute_batch(V1).expect("v1");
        old.pragma_update(None, "user_version", 1).expect("version");
        old.execute(
            "INSERT INTO records (id, template_id, template_version, school_id, status, created_by, updated_at, snapshot)
             VALUES ('r1', 'guidance-log', 1, 's1', 'draft', 'u1', 0, x'00')",
            [],
        )
        .expect("row");
        init(&mut old).expect("upgrade");
        assert_eq!(version(&old).expect("version"), VERSION);
        assert_eq!(shape(&old), shape(&fresh));
        // Data survives the upgrade and is indexed by author.
        let author: String = old
            .query_row("SELECT user_id FROM record_authors WHERE record_id = 'r1'", [], |r| r.get(0))
            .expect("author");
        assert_eq!(author, "u1");
    }

    #[test]
    fn a_newer_store_is_refused_not_damaged() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", VERSION + 1).expect("version");
        assert!(matches!(init(&mut conn), Err(SchemaError::TooNew(v)) if v == VERSION + 1));
    }
}
