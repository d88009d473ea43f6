//! Listing records from their columns, without loading any document.

use serde::{Deserialize, Serialize};

use super::{Result, Store};
use crate::ids::{RecordId, SchoolId};
use crate::record::Status;

/// What a list of records shows, without loading any document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub id: RecordId,
    pub template_id: String,
    pub template_version: u32,
    pub school_id: String,
    pub status: Status,
    pub created_by: String,
    pub date: Option<String>,
    pub updated_at: i64,
    /// Has changes the server has not acknowledged.
    pub dirty: bool,
}

/// Which records to list; every set field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub school: Option<SchoolId>,
    pub template: Option<String>,
    pub status: Option<Status>,
    /// Anyone who wrote to the record.
    pub author: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds on the record's date.
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub dirty_only: bool,
    pub limit: Option<u32>,
}

impl Store {
    /// Lists records without loading their documents, newest first.
    pub fn list(&self, filter: &RecordFilter) -> Result<Vec<RecordSummary>> {
        let mut sql = String::from(
            "SELECT id, template_id, template_version, school_id, status, created_by, record_date, updated_at, dirty
             FROM records WHERE 1 = 1",
        );
        let mut args: Vec<String> = Vec::new();
        let mut cond = |sql: &mut String, clause: &str, v: String| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &filter.school {
            cond(&mut sql, " AND school_id = ?", s.to_string());
        }
        if let Some(t) = &filter.template {
            cond(&mut sql, " AND template_id = ?", t.clone());
        }
        if let Some(s) = filter.status {
            cond(&mut sql, " AND status = ?", s.as_str().to_string());
        }
        if let Some(a) = &filter.author {
            cond(&mut sql, " AND id IN (SELECT record_id FROM record_authors WHERE user_id = ?)", a.clone());
        }
        if let Some(d) = &filter.date_from {
            cond(&mut sql, " AND record_date >= ?", d.clone());
        }
        if let Some(d) = &filter.date_to {
            cond(&mut sql, " AND record_date <= ?", d.clone());
        }
        if filter.dirty_only {
            sql.push_str(" AND dirty = 1");
        }
        sql.push_str(" ORDER BY updated_at DESC, id");
        if let Some(n) = filter.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, template_id, template_version, school_id, status, created_by, date, updated_at, dirty) = row?;
            let Ok(id) = RecordId::new(id) else { continue };
            out.push(RecordSummary {
                id,
                template_id,
                template_version,
                school_id,
                status: Status::parse(&status).unwrap_or(Status::Draft),
                created_by,
                date,
                updated_at,
                dirty,
            });
        }
        Ok(out)
    }

    /// Number of records in the store.
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))? as u64)
    }
}
