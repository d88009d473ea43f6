//! The audit log: every admin and review action, sign-in and failed sign-in, in the central
//! store's `audit_log` table (append-only; triggers refuse UPDATE and DELETE).
//!
//! [`append`] is the one way a row is written. Callers run it on the connection (or in the
//! transaction) of the action it records, so the action and its row commit together or not at
//! all. [`query`] reads rows back for the page, the CSV export and `admin audit`.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::AppResult;

/// The actor of changes made with the `admin` command line.
pub const CONSOLE: &str = "console";

/// One action to record. `before` and `after` are JSON (None when not kept); `source` is the
/// client address of a sign-in.
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    pub actor: &'a str,
    pub actor_role: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub programme: Option<&'a str>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub detail: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Appends one row; returns its sequence number.
pub fn append(conn: &Connection, at: i64, e: &Entry<'_>) -> AppResult<i64> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, actor_role, action, target, programme, before, after, detail, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![at, e.actor, e.actor_role, e.action, e.target, e.programme, json(&e.before), json(&e.after), e.detail, e.source])?;
    Ok(conn.last_insert_rowid())
}

/// Runs `f` in a savepoint and, when it succeeds, appends `entry` with `after` read from the
/// store then: the action and its row are kept together, or neither.
pub fn recorded<T>(
    conn: &Connection,
    now: i64,
    mut entry: Entry<'_>,
    after: impl FnOnce(&Connection) -> AppResult<Option<serde_json::Value>>,
    f: impl FnOnce(&Connection) -> AppResult<T>,
) -> AppResult<T> {
    conn.execute_batch("SAVEPOINT audited")?;
    let result = f(conn).and_then(|value| {
        entry.after = after(conn)?;
        append(conn, now, &entry).map(|_| value)
    });
    conn.execute_batch(if result.is_ok() { "RELEASE audited" } else { "ROLLBACK TO audited; RELEASE audited" })?;
    result
}

/// A pointer into the programme rules' own change history (`rule_history`, which keeps each
/// rule before and after): its last entry.
pub fn rule_history_mark(conn: &Connection) -> AppResult<Option<serde_json::Value>> {
    let last: Option<i64> = conn.query_row("SELECT MAX(id) FROM rule_history", [], |r| r.get(0))?;
    Ok(Some(serde_json::json!({ "rule_history": last })))
}

/// Records a backup taken by `actor` (`console`, or `schedule` for the relay's own) into
/// `dest`. A backup copies files, so its row follows it rather than sharing its transaction; the
/// backup itself does not hold its own row.
pub fn backup_taken(conn: &Connection, now: i64, actor: &str, dest: &std::path::Path, m: &crate::backup::Manifest) -> AppResult<()> {
    let dest = dest.display().to_string();
    let after = serde_json::json!({ "records": m.records, "attachments": m.attachments, "db_sha256": m.db_sha256 });
    append(conn, now, &Entry { actor, actor_role: Some("admin"), action: "backup", target: Some(&dest), after: Some(after), ..Default::default() })?;
    Ok(())
}

/// A stored row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub actor_role: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub programme: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub detail: Option<String>,
    pub source: Option<String>,
}

/// Which rows to read: each filter optional; `from`/`to` are Unix seconds, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub programme: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Rows matching the filter, newest first; `limit` rows after skipping `offset`.
pub fn query(conn: &Connection, f: &Filter, limit: i64, offset: i64) -> AppResult<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, actor_role, action, target, programme, before, after, detail, source FROM audit_log
         WHERE (?1 IS NULL OR action = ?1 OR action LIKE ?1 || '.%')
           AND (?2 IS NULL OR actor = ?2)
           AND (?3 IS NULL OR target = ?3)
           AND (?4 IS NULL OR programme = ?4 OR programme IS NULL)
           AND (?5 IS NULL OR at >= ?5)
           AND (?6 IS NULL OR at < ?6)
         ORDER BY seq DESC LIMIT ?7 OFFSET ?8",
    )?;
    let rows = stmt.query_map(params![f.action, f.actor, f.target, f.programme, f.from, f.to, limit, offset], |r| {
        Ok(Row {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            actor_role: r.get(3)?,
            action: r.get(4)?,
            target: r.get(5)?,
            programme: r.get(6)?,
            before: r.get(7)?,
            after: r.get(8)?,
            detail: r.get(9)?,
            source: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// `YYYY-MM-DD` as the Unix second of its start in China time (UTC+8, as the pages show
/// times), or a clear error naming the value.
pub fn day_start(what: &str, day: &str) -> AppResult<i64> {
    let days = shidao_core::date::parse_date(day.trim())
        .ok_or_else(|| crate::error::AppError::BadRequest(format!("{what}: `{day}` is not a date YYYY-MM-DD")))?;
    Ok(days * 86_400 - 8 * 3600)
}
