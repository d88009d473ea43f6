//! Schema versions of a SQLite file, for the device store and the relay's central store alike.
//!
//! `PRAGMA user_version` holds the version. [`Schema::init`] creates the current schema on an
//! empty file in one step, or moves an older file forward one version at a time, every step in
//! one IMMEDIATE transaction, so that a crash leaves the old version whole and a second process
//! opening the same file meanwhile finds either version, never half of one. [`shape`] describes
//! a file's schema however its SQL was written, so a test can prove that the first schema plus
//! every upgrade equals a fresh one.

use rusqlite::{Connection, TransactionBehavior};

/// A schema: the version it creates, its SQL, and the steps up from every older version.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// What the file is, for messages ("store", "central store").
    pub name: &'static str,
    /// The version [`Schema::fresh`] creates.
    pub version: i64,
    /// The current schema, created in one step on an empty file.
    pub fresh: &'static str,
    /// `(from, sql)`: the step from version `from` to `from + 1`, for every `from` in
    /// `1..version`.
    pub upgrades: &'static [(i64, &'static str)],
}

/// Why a file's schema could not be brought up to date. The file is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{name} schema version {found} is newer than this program understands ({supported}); update it")]
    TooNew { name: &'static str, found: i64, supported: i64 },
    #[error("{name} schema upgrade from version {from} failed: {source}")]
    Upgrade { name: &'static str, from: i64, source: rusqlite::Error },
    #[error("{name} schema version {from} has no upgrade step")]
    NoStep { name: &'static str, from: i64 },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// The file's schema version (0 for a new file).
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

impl Schema {
    /// Creates the current schema on an empty file, or upgrades an older one to it.
    pub fn init(&self, conn: &mut Connection) -> Result<(), MigrateError> {
        loop {
            let from = version(conn)?;
            if from > self.version {
                return Err(MigrateError::TooNew { name: self.name, found: from, supported: self.version });
            }
            if from == self.version {
                return Ok(());
            }
            let step = if from == 0 {
                self.fresh
            } else {
                self.upgrades.iter().find(|(v, _)| *v == from).map(|(_, sql)| *sql).ok_or(MigrateError::NoStep { name: self.name, from })?
            };
            let to = if from == 0 { self.version } else { from + 1 };
            let upgrade = |source| MigrateError::Upgrade { name: self.name, from, source };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(upgrade)?;
            // Another connection may have moved the file on meanwhile: then look again.
            if version(&tx).map_err(upgrade)? == from {
                tx.execute_batch(step).map_err(upgrade)?;
                tx.pragma_update(None, "user_version", to).map_err(upgrade)?;
            }
            tx.commit().map_err(upgrade)?;
        }
    }
}

/// A file's schema as sorted lines: each table with its columns (name, type, not null, default,
/// primary key position, hidden) and its foreign keys (columns, target table and columns, update
/// and delete actions); each index with its table, uniqueness, partial condition and columns;
/// each trigger and view with its SQL, whitespace folded. Two files with the same lines have the
/// same schema, whichever statements made them.
pub fn shape(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    let objects: Vec<(String, String, String, Option<String>)> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name, table, sql) in objects {
        match kind.as_str() {
            "table" => {
                let mut columns: Vec<String> = conn
                    .prepare("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)")?
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{}:{}:{}:{:?}:{}:{}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?
                        ))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                columns.sort();
                out.push(format!("table {name} [{}]", columns.join(", ")));
                let mut keys: Vec<String> = conn
                    .prepare("SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1)")?
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{}.{}: {} -> {}.{:?} on update {} on delete {}",
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?
                        ))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                keys.sort();
                for key in keys {
                    out.push(format!("foreign key {name} {key}"));
                }
            }
            "index" => {
                let columns: Vec<String> = conn
                    .prepare("SELECT seqno, name, \"desc\", coll, key FROM pragma_index_xinfo(?1) ORDER BY seqno")?
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{:?}{}{}{}",
                            r.get::<_, Option<String>>(1)?,
                            if r.get::<_, i64>(2)? == 1 { " desc" } else { "" },
                            r.get::<_, Option<String>>(3)?.map(|c| format!(" collate {c}")).unwrap_or_default(),
                            if r.get::<_, i64>(4)? == 1 { "" } else { " (aux)" }
                        ))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let (unique, partial): (i64, i64) = conn
                    .query_row("SELECT \"unique\", partial FROM pragma_index_list(?1) WHERE name = ?2", [&table, &name], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                // A partial index's condition is only in its SQL.
                let condition = if partial == 1 { sql.as_deref().map(fold).unwrap_or_default() } else { String::new() };
                out.push(format!(
                    "index {name} on {table}{} [{}] {condition}",
                    if unique == 1 { " unique" } else { "" },
                    columns.join(", ")
                ));
            }
            _ => out.push(format!("{kind} {name} on {table} {}", sql.as_deref().map(fold).unwrap_or_default())),
        }
    }
    Ok(out)
}

fn fold(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "CREATE TABLE a (id TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);";
    const UPGRADES: &[(i64, &str)] = &[
        (1, "CREATE TABLE b (id TEXT PRIMARY KEY, a_id TEXT NOT NULL REFERENCES a(id) ON DELETE CASCADE); CREATE INDEX b_a ON b (a_id);"),
        (2, "ALTER TABLE a ADD COLUMN note TEXT;"),
    ];
    const FRESH: &str = "CREATE TABLE a (id TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, note TEXT);
        CREATE TABLE b (id TEXT PRIMARY KEY, a_id TEXT NOT NULL REFERENCES a(id) ON DELETE CASCADE);
        CREATE INDEX b_a ON b (a_id);";
    const SCHEMA: Schema = Schema { name: "test store", version: 3, fresh: FRESH, upgrades: UPGRADES };

    fn shape_of(sql: &str) -> Vec<String> {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(sql).expect("sql");
        shape(&conn).expect("shape")
    }

    #[test]
    fn the_first_schema_plus_every_upgrade_equals_the_fresh_one_and_keeps_rows() {
        let mut old = Connection::open_in_memory().expect("open");
        old.execute_batch(V1).expect("v1");
        old.pragma_update(None, "user_version", 1).expect("version");
        old.execute("INSERT INTO a (id, n) VALUES ('x', 7)", []).expect("row");
        SCHEMA.init(&mut old).expect("upgrade");
        let mut fresh = Connection::open_in_memory().expect("open");
        SCHEMA.init(&mut fresh).expect("fresh");
        assert_eq!(version(&old).expect("version"), 3);
        assert_eq!(version(&fresh).expect("version"), 3);
        assert_eq!(shape(&old).expect("shape"), shape(&fresh).expect("shape"));
        let n: i64 = old.query_row("SELECT n FROM a WHERE id = 'x'", [], |r| r.get(0)).expect("kept");
        assert_eq!(n, 7);
    }

    #[test]
    fn the_shape_sees_columns_foreign_keys_and_indexes() {
        let base = shape_of(FRESH);
        // Each of these differs from FRESH in one respect the shape must see.
        for (what, other) in [
            ("a column's default", FRESH.replace("DEFAULT 0", "DEFAULT 1")),
            ("a column's type", FRESH.replace("note TEXT", "note BLOB")),
            ("a foreign key's action", FRESH.replace("ON DELETE CASCADE", "ON DELETE SET NULL")),
            ("a foreign key's target", FRESH.replace("REFERENCES a(id)", "REFERENCES a(note)")),
            ("a foreign key dropped", FRESH.replace("REFERENCES a(id) ON DELETE CASCADE", "")),
            ("an index's columns", FRESH.replace("b (a_id)", "b (a_id, id)")),
            ("an index made unique", FRESH.replace("CREATE INDEX", "CREATE UNIQUE INDEX")),
            ("an index made partial", FRESH.replace("b (a_id);", "b (a_id) WHERE a_id <> '';")),
            ("an index dropped", FRESH.replace("CREATE INDEX b_a ON b (a_id);", "")),
        ] {
            assert_ne!(shape_of(&other), base, "{what}");
        }
        // Written another way, the same schema has the same shape.
        let same = FRESH.replace("\n        ", " ").replace("TEXT PRIMARY KEY", "text  PRIMARY KEY");
        assert_eq!(shape_of(&same.replace("text  ", "TEXT ")), base);
    }

    #[test]
    fn a_newer_file_is_refused_and_left_alone() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", 4).expect("version");
        let e = SCHEMA.init(&mut conn).expect_err("newer");
        assert!(matches!(e, MigrateError::TooNew { found: 4, supported: 3, .. }), "{e}");
        assert!(e.to_string().contains("test store"), "{e}");
        assert_eq!(version(&conn).expect("version"), 4);
    }

    #[test]
    fn a_failing_step_leaves_the_version_it_started_from() {
        const BROKEN: &[(i64, &str)] = &[(1, "CREATE TABLE b (id TEXT); CREATE TABLE b (id TEXT);"), (2, "")];
        let schema = Schema { upgrades: BROKEN, ..SCHEMA };
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(V1).expect("v1");
        conn.pragma_update(None, "user_version", 1).expect("version");
        let e = schema.init(&mut conn).expect_err("broken");
        assert!(matches!(e, MigrateError::Upgrade { from: 1, .. }), "{e}");
        assert_eq!(version(&conn).expect("version"), 1);
        let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'", [], |r| r.get(0)).expect("count");
        assert_eq!(tables, 0, "the failed step was rolled back");
        let gap = Schema { upgrades: &UPGRADES[1..], ..SCHEMA };
        assert!(matches!(gap.init(&mut conn), Err(MigrateError::NoStep { from: 1, .. })));
    }
}
