//! The device store's schema: created fresh in one step, or upgraded one version at a time.
//!
//! The steps are run by [`crate::migrate`], as the relay's are; a test proves that the first
//! schema plus every upgrade equals a fresh one.

use rusqlite::Connection;

pub use crate::migrate::MigrateError as SchemaError;
use crate::migrate::Schema;

/// The version [`init`] creates.
pub const VERSION: i64 = 4;

#[cfg(test)]
pub(crate) const V1: &str = include_str!("sql/v1.sql");

/// The device store's schema: the current one, and the steps up from every older version.
pub const SCHEMA: Schema = Schema {
    name: "store",
    version: VERSION,
    fresh: include_str!("sql/schema.sql"),
    upgrades: &[
        (1, include_str!("sql/upgrade_1_to_2.sql")),
        (2, include_str!("sql/upgrade_2_to_3.sql")),
        (3, include_str!("sql/upgrade_3_to_4.sql")),
    ],
};

/// Creates the current schema on an empty database, or upgrades an older one.
pub fn init(conn: &mut Connection) -> Result<(), SchemaError> {
    SCHEMA.init(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::version;

    fn shape(conn: &Connection) -> Vec<String> {
        crate::migrate::shape(conn).expect("shape")
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
        assert!(matches!(init(&mut conn), Err(SchemaError::TooNew { found, .. }) if found == VERSION + 1));
    }
}
