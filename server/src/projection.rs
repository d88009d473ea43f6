//! The projection: what the review pages read instead of documents. Each accepted push rewrites
//! its record's rows in the same transaction: answers with author and time, computed values and
//! scores, the files it refers to, a visit's rectification items, a task-progress record's task
//! and amount, and the ratings a form's meanings name, with the record's school, status and date.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};
use shidao_core::record::{Answer, Record, RecordView};
use shidao_core::template::{CompiledField, Parent, Template};

use crate::error::AppResult;
use crate::forms;

/// Rewrites the projection of one record: answers with author and time, computed values, scores,
/// the files it refers to, and what the dashboard reads without walking answers (a visit's
/// rectification items, a task-progress record's task and achieved amount). `created`: the
/// record is new to the store, so it has no rows to remove.
pub fn project(conn: &Connection, record: &Record, view: &RecordView, created: bool) -> rusqlite::Result<()> {
    let id = record.id().as_str();
    if !created {
        conn.prepare_cached("DELETE FROM answers WHERE record_id = ?1")?.execute([id])?;
        conn.prepare_cached("DELETE FROM computed WHERE record_id = ?1")?.execute([id])?;
        conn.prepare_cached("DELETE FROM record_files WHERE record_id = ?1")?.execute([id])?;
        conn.prepare_cached("DELETE FROM rectifications WHERE record_id = ?1")?.execute([id])?;
        conn.prepare_cached("DELETE FROM task_progress WHERE record_id = ?1")?.execute([id])?;
        conn.prepare_cached("DELETE FROM ratings WHERE record_id = ?1")?.execute([id])?;
    }
    let template = record.template();
    let mut insert = conn.prepare_cached(
        "INSERT INTO answers (record_id, field, row_id, value, display, number, author, at, conflicts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut file = conn.prepare_cached("INSERT OR IGNORE INTO record_files (record_id, hash) VALUES (?1, ?2)")?;
    for a in &view.answers {
        let Some(f) = template.field(&a.field.field) else { continue };
        let value = serde_json::to_string(&a.answer).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let display = a.answer.as_ref().map(|v| v.display(f, "zh")).unwrap_or_default();
        let number = a.answer.as_ref().and_then(|v| match v {
            Answer::Integer(n) | Answer::Rating(n) | Answer::Duration(n) | Answer::Counter(n) => Some(*n as f64),
            Answer::Decimal(x) => Some(*x),
            Answer::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        });
        let row = a.field.row.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let (author, at) = match &a.by {
            Some(b) => (Some(b.user.as_str()), Some(b.at)),
            None => (None, None),
        };
        insert.execute(params![id, a.field.field, row, value, display, number, author, at, a.conflicts.len() as i64])?;
        for v in a.conflicts.iter().filter_map(|c| c.answer.as_ref()).chain(a.answer.iter()) {
            match v {
                Answer::Attachment(att) => {
                    file.execute(params![id, att.hash])?;
                }
                Answer::Signature(s) => {
                    if let Some(img) = &s.image {
                        file.execute(params![id, img])?;
                    }
                }
                _ => {}
            }
        }
    }
    let mut computed = conn.prepare_cached(
        "INSERT OR REPLACE INTO computed (record_id, name, row_id, number, text, band, display) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in &view.computed {
        let row = c.field.row.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let display = template.field(&c.field.field).map(|f| f.value_label(&c.text, "zh"));
        computed.execute(params![id, c.field.field, row, c.number, c.text, Option::<String>::None, display])?;
    }
    for s in &view.scores {
        let text = s.value.map(shidao_core::expr::fmt_num).unwrap_or_default();
        computed.execute(params![id, s.id, "", s.value, text, s.band.as_ref().map(|b| b.zh.clone()), text])?;
    }
    // The record's main score: a lesson's total where the form says which it is, else the
    // form's first score.
    let main_score = match template.meaning("lesson.total") {
        Some(total) => view
            .scores
            .iter()
            .find(|s| s.id == total)
            .and_then(|s| s.value)
            .or_else(|| view.computed.iter().find(|c| c.field.row.is_none() && c.field.field == total).and_then(|c| c.number)),
        None => view.scores.first().and_then(|s| s.value),
    };
    conn.prepare_cached(
        "UPDATE records SET score = ?2, author_role = (SELECT role FROM users WHERE users.id = records.created_by) WHERE id = ?1",
    )?
    .execute(params![id, main_score])?;
    let school = record.school().map(|s| s.to_string()).unwrap_or_default();
    project_rectifications(conn, id, &school, template, view)?;
    project_task_progress(conn, id, &school, template, view)?;
    project_ratings(conn, id, template, view)?;
    Ok(())
}

/// The fields of a form that give a rating row: each field a meaning names that has a scale,
/// with its meaning.
fn rated_fields(template: &Template) -> impl Iterator<Item = (&str, &CompiledField)> {
    template.def.meanings.iter().filter_map(|(meaning, field)| {
        let f = template.field(field)?;
        f.scale_range().is_some().then_some((meaning.as_str(), f))
    })
}

/// A record's ratings (see `ratings` in the schema): each answered top-level rating a meaning
/// names, as points through the form version's scale, with the record's status and date as the
/// records row holds them now (written just before).
fn project_ratings(conn: &Connection, id: &str, template: &Template, view: &RecordView) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO ratings (record_id, meaning, school_id, status, record_date, points)
         SELECT id, ?2, school_id, status, record_date, ?3 FROM records WHERE id = ?1",
    )?;
    for (meaning, f) in rated_fields(template) {
        let level = view.answers.iter().find(|a| a.field.row.is_none() && a.field.field == f.id()).and_then(|a| match &a.answer {
            Some(Answer::Rating(n)) | Some(Answer::Integer(n)) => Some(*n as f64),
            _ => None,
        });
        if let Some(share) = level.and_then(|l| f.level_share(l)) {
            insert.execute(params![id, meaning, share * 100.0])?;
        }
    }
    Ok(())
}

/// Fills the ratings of every stored record from its answers through each form version's scale
/// (after the upgrade that adds the table): the same rows [`project`] writes. Returns how many.
pub fn reproject_ratings(conn: &Connection) -> AppResult<usize> {
    conn.execute("DELETE FROM ratings", [])?;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT s.programme_id, r.template_id, r.template_version FROM records r JOIN schools s ON s.id = r.school_id",
    )?;
    let forms: Vec<(Option<String>, String, u32)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for (programme, form, version) in forms {
        let Some(t) = forms::template(conn, programme.as_deref().unwrap_or_default(), &form, version)? else { continue };
        for (meaning, f) in rated_fields(&t) {
            let Some((lo, hi)) = f.scale_range() else { continue };
            let points: Vec<String> =
                (lo..=hi).filter_map(|l| f.level_share(l as f64).map(|s| format!("WHEN {l} THEN {}", s * 100.0))).collect();
            if points.is_empty() {
                continue;
            }
            n += conn.execute(
                &format!(
                    "INSERT INTO ratings (record_id, meaning, school_id, status, record_date, points)
                     SELECT record_id, ?1, school_id, status, record_date, points FROM (
                       SELECT a.record_id, r.school_id, r.status, r.record_date, CASE CAST(a.number AS INTEGER) {} END AS points
                       FROM answers a JOIN records r ON r.id = a.record_id
                       WHERE r.template_id = ?2 AND r.template_version = ?3 AND a.field = ?4 AND a.row_id = '' AND a.number IS NOT NULL
                     ) WHERE points IS NOT NULL",
                    points.join(" ")
                ),
                params![meaning, form, version, f.id()],
            )?;
        }
    }
    Ok(n)
}

/// The value of a text-like answer as `json_extract(value, '$.value')` reads it from `answers`.
fn text_value(answer: Option<&Answer>) -> Option<String> {
    match answer? {
        Answer::Text(s) | Answer::LongText(s) | Answer::Choice(s) | Answer::Date(s) | Answer::Time(s) => Some(s.clone()),
        _ => None,
    }
}

/// One row of `rectifications`: every row of the form's rectification group (the one its
/// `rectification.group` meaning names) holding an answer (`upgrade_2_to_3.sql` backfilled the
/// built-in visit's rows from `answers`).
struct Rectification {
    /// The row's place among the group's rows with answers, in form order.
    index: usize,
    /// The item's display; `None` when the row has no item (the report lists items only).
    item: Option<String>,
    owner: String,
    deadline: Option<String>,
    status: String,
    closed: bool,
}

fn project_rectifications(conn: &Connection, id: &str, school: &str, template: &Template, view: &RecordView) -> rusqlite::Result<()> {
    let Some(group) = template.meaning("rectification.group").and_then(|g| template.field_index(g)) else { return Ok(()) };
    let role = |meaning: &str| template.meaning(meaning);
    let (item, owner, deadline, status) =
        (role("rectification.item"), role("rectification.owner"), role("rectification.deadline"), role("rectification.status"));
    let mut rows: BTreeMap<String, Rectification> = BTreeMap::new();
    for a in &view.answers {
        let Some(row) = &a.field.row else { continue };
        let Some(f) = template.field(&a.field.field) else { continue };
        if f.parent != Parent::Repeat(group) {
            continue;
        }
        let display = a.answer.as_ref().map(|v| v.display(f, "zh")).unwrap_or_default();
        let index = rows.len();
        let r = rows.entry(row.to_string()).or_insert_with(|| Rectification {
            index,
            item: None,
            owner: String::new(),
            deadline: None,
            status: String::new(),
            closed: false,
        });
        let is = |m: Option<&str>| m == Some(f.id());
        if is(item) {
            r.item = Some(display);
        } else if is(owner) {
            r.owner = display;
        } else if is(deadline) {
            r.deadline = text_value(a.answer.as_ref());
        } else if is(status) {
            r.status = display;
        }
    }
    // Closed: the form's `rectification.open` flag reads 0 for the row.
    let open_flag = role("rectification.open");
    for c in &view.computed {
        if let (Some(row), Some(flag)) = (&c.field.row, open_flag) {
            if c.field.field == flag {
                if let Some(r) = rows.get_mut(row.as_str()) {
                    r.closed = c.number == Some(0.0);
                }
            }
        }
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO rectifications (record_id, row_id, row_index, school_id, item, owner, deadline, status, closed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (row, r) in rows {
        insert.execute(params![id, row, r.index as i64, school, r.item, r.owner, r.deadline, r.status, r.closed])?;
    }
    Ok(())
}


/// The task a record reports on and its achieved amount, when the form has both meanings and the
/// record names a task.
fn project_task_progress(conn: &Connection, id: &str, school: &str, template: &Template, view: &RecordView) -> rusqlite::Result<()> {
    let (Some(task_field), Some(achieved_field)) = (template.meaning("task.ref"), template.meaning("task.achieved")) else {
        return Ok(());
    };
    let task = view
        .answers
        .iter()
        .find(|a| a.field.row.is_none() && a.field.field == task_field)
        .and_then(|a| text_value(a.answer.as_ref()));
    let achieved = view
        .computed
        .iter()
        .find(|c| c.field.row.is_none() && c.field.field == achieved_field)
        .map(|c| c.number)
        .or_else(|| view.scores.iter().find(|s| s.id == achieved_field).map(|s| s.value));
    if let (Some(task), Some(achieved)) = (task, achieved) {
        conn.prepare_cached("INSERT INTO task_progress (record_id, school_id, task_ref, achieved) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, school, task, achieved])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shidao_core::{builtin, Answer, Clock, DeviceId, Editor, FieldRef, NewRecord, Record, RecordId, SchoolId, UserId};

    use super::*;
    use shidao_core::template::Role;

    fn count(conn: &Connection, sql: &str, id: &str) -> i64 {
        conn.query_row(sql, [id], |r| r.get(0)).expect("count")
    }

    #[test]
    fn reprojecting_a_record_replaces_its_rectifications_and_task_progress() {
        let conn = crate::db::open_in_memory().expect("store");
        conn.pragma_update(None, "foreign_keys", "OFF").expect("pragma");
        let editor = |role| Editor { user: UserId::new("u").expect("id"), device: DeviceId::new("d").expect("id"), role };
        let new = |t: &str, role| {
            let new = NewRecord { id: RecordId::random(), school: SchoolId::new("s1").expect("id") };
            Record::create(builtin(t).expect("template"), new, editor(role), Clock::fixed(1_790_000_000)).expect("record")
        };
        let project_now = |r: &Record| project(&conn, r, &r.read(), false).expect("project");

        let mut visit = new("inspection-visit", Role::Inspector);
        let rows: Vec<_> = (0..2).map(|_| visit.add_row("rectifications", None).expect("row")).collect();
        for (i, row) in rows.iter().enumerate() {
            visit.set_answer(&FieldRef::in_row("rect_item", row), Answer::Text(format!("事项{i}"))).expect("item");
            visit.set_answer(&FieldRef::in_row("rect_deadline", row), Answer::Date("2026-10-01".into())).expect("deadline");
        }
        project_now(&visit);
        let id = visit.id().to_string();
        let open = "SELECT COUNT(*) FROM rectifications WHERE record_id = ?1 AND closed = 0";
        assert_eq!(count(&conn, open, &id), 2);
        // One item is closed, the other removed from the record: both leave the open items.
        visit.set_answer(&FieldRef::in_row("rect_status", &rows[0]), Answer::Choice("verified".into())).expect("status");
        visit.remove_row("rectifications", &rows[1]).expect("remove");
        project_now(&visit);
        assert_eq!(count(&conn, open, &id), 0);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM rectifications WHERE record_id = ?1", &id), 1);

        let mut task = new("task-progress", Role::Principal);
        task.set_answer(&FieldRef::top("task_ref"), Answer::Text("yufeng-03".into())).expect("task");
        let entry = task.add_row("entries", None).expect("row");
        task.set_answer(&FieldRef::in_row("entry_amount", &entry), Answer::Decimal(4.0)).expect("amount");
        project_now(&task);
        let id = task.id().to_string();
        assert_eq!(count(&conn, "SELECT CAST(achieved AS INTEGER) FROM task_progress WHERE record_id = ?1 AND task_ref = 'yufeng-03'", &id), 4);
        task.clear_answer(&FieldRef::top("task_ref")).expect("clear");
        project_now(&task);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM task_progress WHERE record_id = ?1", &id), 0);
    }
}
