//! Rule books in the central store: loading, saving with every change recorded (who, when, the
//! rule before and after), the semesters, and the expert team of each school.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::rules::{Rules, Term, RULE_NAMES};
use crate::error::{AppError, AppResult};

/// Runs `f` in a savepoint: all of it or nothing, also inside a caller's transaction.
pub(crate) fn atomically<T>(conn: &Connection, f: impl FnOnce(&Connection) -> AppResult<T>) -> AppResult<T> {
    conn.execute_batch("SAVEPOINT programme_rules")?;
    let result = f(conn);
    conn.execute_batch(if result.is_ok() { "RELEASE programme_rules" } else { "ROLLBACK TO programme_rules; RELEASE programme_rules" })?;
    result
}

fn programme_exists(conn: &Connection, programme: &str) -> AppResult<()> {
    let known: Option<i64> = conn.query_row("SELECT 1 FROM programmes WHERE id = ?1", [programme], |r| r.get(0)).optional()?;
    if known.is_none() {
        return Err(AppError::NotFound(format!("programme {programme} does not exist")));
    }
    Ok(())
}

/// The rule book of a programme; an empty book (every rule absent) when it has none stored.
pub fn load(conn: &Connection, programme: &str) -> AppResult<Rules> {
    let text: Option<String> =
        conn.query_row("SELECT rules FROM programme_rules WHERE programme_id = ?1", [programme], |r| r.get(0)).optional()?;
    match text {
        None => Ok(Rules::default()),
        Some(t) => serde_json::from_str(&t).map_err(|e| AppError::Internal(format!("rule book of {programme}: {e}"))),
    }
}

/// The preset a programme was created from, if any.
pub fn preset_of(conn: &Connection, programme: &str) -> AppResult<Option<String>> {
    Ok(conn
        .query_row("SELECT preset FROM programme_rules WHERE programme_id = ?1", [programme], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// One rule of a book as JSON (`null` when absent or empty).
pub fn rule_value(rules: &Rules, name: &str) -> serde_json::Value {
    let all = serde_json::to_value(rules).unwrap_or_default();
    let v = all.get(name).cloned().unwrap_or(serde_json::Value::Null);
    match &v {
        serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
        serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
        _ => v,
    }
}

/// Replaces a programme's rule book after validating it, refusing to remove a category a school
/// still has, and records each rule that changed. Nothing is changed on any error.
pub fn save(conn: &Connection, programme: &str, rules: &Rules, by: &str, now: i64) -> AppResult<usize> {
    save_with_preset(conn, programme, rules, None, by, now)
}

pub(crate) fn save_with_preset(conn: &Connection, programme: &str, rules: &Rules, preset: Option<&str>, by: &str, now: i64) -> AppResult<usize> {
    programme_exists(conn, programme)?;
    rules.validate()?;
    if !rules.categories.is_empty() {
        let mut stmt = conn.prepare("SELECT id, category FROM schools WHERE programme_id = ?1 AND category != '' ORDER BY id")?;
        let used: Vec<(String, String)> = stmt.query_map([programme], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        if let Some((school, cat)) = used.iter().find(|(_, c)| !rules.allows_category(c)) {
            return Err(AppError::BadRequest(format!(
                "rule categories, field name: school {school} has the category `{cat}`, which the new categories ({}) leave out; change the school first",
                rules.category_names().join(", ")
            )));
        }
    }
    let before = load(conn, programme)?;
    for gone in before.indicators.iter().filter(|b| !rules.indicators.iter().any(|i| i.name == b.name)) {
        if let Some(record) = indicator_use(conn, programme, &gone.name)? {
            return Err(AppError::BadRequest(format!(
                "rule indicators, field name: indicator `{}` ({}) is reported by record {record}; keep it in the bank (rename it in the records first)",
                gone.name, gone.id
            )));
        }
    }
    atomically(conn, |tx| {
    let mut changed = 0;
    for name in RULE_NAMES {
        let (b, a) = (rule_value(&before, name), rule_value(rules, name));
        if b != a {
            let text = |v: &serde_json::Value| if v.is_null() { None } else { Some(v.to_string()) };
            tx.execute(
                "INSERT INTO rule_history (programme_id, at, by, rule, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![programme, now, by, name, text(&b), text(&a)],
            )?;
            changed += 1;
        }
    }
    let json = serde_json::to_string(rules).map_err(|e| AppError::Internal(format!("rule book: {e}")))?;
    tx.execute(
        "INSERT INTO programme_rules (programme_id, rules, preset, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (programme_id) DO UPDATE SET rules = excluded.rules, preset = COALESCE(excluded.preset, programme_rules.preset),
            updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![programme, json, preset, now, by],
    )?;
    Ok(changed)
    })
}

/// A record of the programme whose indicator rows name `name` (any version of any of the
/// programme's forms with a repeat field `…_indicator`), if one does.
fn indicator_use(conn: &Connection, programme: &str, name: &str) -> AppResult<Option<String>> {
    let mut fields: Vec<String> = Vec::new();
    let mut versions = conn.prepare_cached("SELECT template_id, version FROM form_versions WHERE programme_id = ?1")?;
    let versions: Vec<(String, u32)> = versions.query_map([programme], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    for (form, version) in versions {
        let Some(t) = crate::forms::template(conn, programme, &form, version)? else { continue };
        for field in &t.fields {
            if field.id().ends_with("_indicator") && !fields.iter().any(|f| f == field.id()) {
                fields.push(field.id().to_string());
            }
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT a.record_id FROM answers a JOIN records r ON r.id = a.record_id JOIN schools s ON s.id = r.school_id
         WHERE a.field = ?1 AND a.row_id != '' AND a.display = ?2 AND s.programme_id = ?3 LIMIT 1",
    )?;
    for f in fields {
        if let Some(id) = stmt.query_row(params![f, name, programme], |r| r.get(0)).optional()? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Replaces one rule (`name` one of [`RULE_NAMES`]) with `value` (JSON; `null` removes it).
pub fn set_rule(conn: &Connection, programme: &str, name: &str, value: serde_json::Value, by: &str, now: i64) -> AppResult<usize> {
    if !RULE_NAMES.contains(&name) {
        return Err(AppError::BadRequest(format!("unknown rule `{name}` (one of {})", RULE_NAMES.join(", "))));
    }
    let rules = load(conn, programme)?;
    let mut all = serde_json::to_value(&rules).map_err(|e| AppError::Internal(e.to_string()))?;
    let value = if value.is_null() { serde_json::to_value(Rules::default()).unwrap_or_default()[name].clone() } else { value };
    all[name] = value;
    let new: Rules = serde_json::from_value(all).map_err(|e| AppError::BadRequest(format!("rule {name}: {e}")))?;
    save(conn, programme, &new, by, now)
}

/// Adds a semester to a programme's rule book (refused when it overlaps another).
pub fn add_term(conn: &Connection, programme: &str, term: Term, by: &str, now: i64) -> AppResult<()> {
    programme_exists(conn, programme)?;
    let mut rules = load(conn, programme)?;
    rules.terms.retain(|t| t.id != term.id);
    rules.terms.push(term);
    rules.terms.sort_by(|a, b| a.start.cmp(&b.start));
    save(conn, programme, &rules, by, now)?;
    Ok(())
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub at: i64,
    pub by: String,
    pub rule: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The changes of a programme's rules and expert teams, newest first.
pub fn history(conn: &Connection, programme: &str) -> AppResult<Vec<Change>> {
    let mut stmt = conn.prepare("SELECT at, by, rule, before, after FROM rule_history WHERE programme_id = ?1 ORDER BY id DESC")?;
    let rows = stmt.query_map([programme], |r| Ok(Change { at: r.get(0)?, by: r.get(1)?, rule: r.get(2)?, before: r.get(3)?, after: r.get(4)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn school_programme(conn: &Connection, school: &str) -> AppResult<String> {
    conn.query_row("SELECT programme_id FROM schools WHERE id = ?1", [school], |r| r.get(0))
        .optional()?
        .ok_or_else(|| AppError::NotFound(format!("school {school} does not exist")))
}

/// The experts assigned to a school, by user id.
pub fn expert_team(conn: &Connection, school: &str) -> AppResult<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM expert_team WHERE school_id = ?1 ORDER BY user_id")?;
    let rows = stmt.query_map([school], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn record_team(conn: &Connection, programme: &str, school: &str, before: &[String], by: &str, now: i64) -> AppResult<()> {
    let after = expert_team(conn, school)?;
    let json = |v: &[String]| serde_json::json!({ "school": school, "experts": v }).to_string();
    conn.execute(
        "INSERT INTO rule_history (programme_id, at, by, rule, before, after) VALUES (?1, ?2, ?3, 'expert_team.members', ?4, ?5)",
        params![programme, now, by, json(before), json(&after)],
    )?;
    Ok(())
}

/// Puts an expert on a school's team (一校一团队); the expert also gets the school in scope.
pub fn assign_expert(conn: &Connection, school: &str, user: &str, by: &str, now: i64) -> AppResult<bool> {
    let programme = school_programme(conn, school)?;
    let who: Option<(String, Option<String>)> =
        conn.query_row("SELECT role, programme_id FROM users WHERE id = ?1", [user], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let Some((role, user_programme)) = who else { return Err(AppError::NotFound(format!("user {user} does not exist"))) };
    if role != "expert" {
        return Err(AppError::BadRequest(format!("user {user} is a {role}, not an expert: only experts form a school's team")));
    }
    if user_programme.as_deref().is_some_and(|p| p != programme) {
        return Err(AppError::BadRequest(format!("user {user} belongs to another programme than school {school} ({programme})")));
    }
    let before = expert_team(conn, school)?;
    if before.iter().any(|u| u == user) {
        return Ok(false);
    }
    atomically(conn, |tx| {
        tx.execute("INSERT INTO expert_team (school_id, user_id, assigned_at, assigned_by) VALUES (?1, ?2, ?3, ?4)", params![school, user, now, by])?;
        tx.execute("INSERT OR IGNORE INTO assignments (user_id, school_id) VALUES (?1, ?2)", params![user, school])?;
        record_team(tx, &programme, school, &before, by, now)?;
        Ok(true)
    })
}

/// Takes an expert off a school's team (their access to the school stays as it was).
pub fn unassign_expert(conn: &Connection, school: &str, user: &str, by: &str, now: i64) -> AppResult<()> {
    let programme = school_programme(conn, school)?;
    let before = expert_team(conn, school)?;
    if !before.iter().any(|u| u == user) {
        return Err(AppError::NotFound(format!("user {user} is not on the expert team of school {school}")));
    }
    atomically(conn, |tx| {
        tx.execute("DELETE FROM expert_team WHERE school_id = ?1 AND user_id = ?2", params![school, user])?;
        record_team(tx, &programme, school, &before, by, now)
    })
}
