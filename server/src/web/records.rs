//! Records in the browser: lists behind every figure, the merged record with who wrote what and
//! when, conflicts side by side with a way to pick one, a field's history, and review (approve or
//! return with a comment). A supervisor's pick or review is an Automerge change by the
//! supervisor, applied through the same rules and log as a tablet's push, so it reaches the
//! author's tablet on its next sync.

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::record::{Answer, Record};
use shidao_core::sync::protocol::Push;
use shidao_core::template::{FieldKind, Parent};
use shidao_core::date::china_minute;
use shidao_core::{Clock, DeviceId, Editor, FieldRef, RowId, UserId};

use super::auth::WebUser;
use super::page::{render, url, Chrome, Lang};
use crate::accounts::Device;
use crate::error::{AppError, AppResult};
use crate::{sync, AppState};

/// A form's title as its programme published the version (the id when it cannot be read).
fn template_title(conn: &Connection, lang: Lang, programme: &str, id: &str, version: u32) -> String {
    match crate::forms::template(conn, programme, id, version) {
        Ok(Some(t)) => t.def.title.get(lang.code()).to_string(),
        _ => id.to_string(),
    }
}

fn status_label(lang: Lang, s: &str) -> &'static str {
    match s {
        "draft" => lang.t("草稿", "draft"),
        "submitted" => lang.t("待审核", "submitted"),
        "returned" => lang.t("已退回", "returned"),
        "approved" => lang.t("已通过", "approved"),
        _ => lang.t("未知", "unknown"),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    school: Option<String>,
    template: Option<String>,
    status: Option<String>,
    role: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// One line of the records list.
struct ListRow {
    /// The record id, escaped for a URL.
    id: String,
    form: String,
    school: String,
    date: String,
    status: &'static str,
    author: String,
    synced: String,
}

#[derive(askama::Template)]
#[template(path = "records.html")]
struct ListPage<'a> {
    chrome: Chrome<'a>,
    rows: Vec<ListRow>,
}

/// `GET /records`: the records behind a figure.
pub async fn list(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<ListQuery>) -> AppResult<Html<String>> {
    let programme = user.programme.clone();
    let rows = state
        .blocking(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.id, r.template_id, s.name, r.record_date, r.status, COALESCE(u.name, r.created_by), r.updated_at,
                        s.programme_id, r.template_version
                 FROM records r JOIN schools s ON s.id = r.school_id LEFT JOIN users u ON u.id = r.created_by
                 WHERE (?1 IS NULL OR r.school_id = ?1) AND (?2 IS NULL OR r.template_id = ?2) AND (?3 IS NULL OR r.status = ?3)
                   AND (?4 IS NULL OR u.role = ?4) AND (?5 IS NULL OR r.record_date >= ?5) AND (?6 IS NULL OR r.record_date <= ?6)
                   AND (?7 IS NULL OR s.programme_id = ?7)
                 ORDER BY r.record_date DESC, r.id LIMIT 1000",
            )?;
            // Only the user's programme (`?7`), like every other page.
            type Row = (String, String, String, Option<String>, String, String, i64, String, u32);
            let rows: Vec<Row> = stmt
                .query_map(params![q.school, q.template, q.status, q.role, q.from, q.to, programme], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows
                .into_iter()
                .map(|(id, template, school, date, status, author, updated, programme, version)| ListRow {
                    id: url(&id),
                    form: template_title(conn, lang, &programme, &template, version),
                    school,
                    date: date.unwrap_or_default(),
                    status: status_label(lang, &status),
                    author,
                    synced: china_minute(updated),
                })
                .collect::<Vec<_>>())
        })
        .await?;
    render(&ListPage { chrome: Chrome::new(lang, lang.t("记录", "Records"), Some(&user)), rows })
}

/// The record as stored on the server, readable only within the user's programme.
fn load(conn: &Connection, user: &WebUser, id: &str, now: i64) -> AppResult<(Record, String, String)> {
    let row: Option<(Vec<u8>, String, String)> = conn
        .query_row(
            "SELECT d.doc, s.name, s.programme_id FROM records r JOIN documents d ON d.record_id = r.id JOIN schools s ON s.id = r.school_id WHERE r.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((doc, school_name, programme)) = row else {
        return Err(AppError::NotFound(format!("record {id} does not exist")));
    };
    if user.programme.as_deref().is_some_and(|p| p != programme) {
        return Err(AppError::Forbidden(format!("record {id} is not in your programme")));
    }
    let doc = automerge::Automerge::load(&doc).map_err(|e| AppError::Internal(format!("record {id}: {e}")))?;
    let editor = web_editor(user)?;
    let record = Record::from_doc(doc, crate::forms::resolver(conn, &programme), editor, Clock::fixed(now))
        .map_err(|e| AppError::Internal(format!("record {id}: {e}")))?;
    Ok((record, school_name, programme))
}

/// What tablets set aside of this record after the relay refused it (an edit made beside an
/// approval, say): who, when, why, and each answer as the refused copy had it. None of it is part
/// of the record.
fn set_asides(conn: &Connection, lang: Lang, record: &Record, programme: &str, now: i64) -> AppResult<Vec<(String, String, String, String)>> {
    type Row = (String, i64, String, String, String, String, Vec<u8>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT user_id, at, code, reason, fields, reapplied, changes FROM set_asides WHERE record_id = ?1 ORDER BY at, device_id",
        )?
        .query_map([record.id().as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let t = record.template();
    let mut out = Vec::new();
    for (user, at, code, reason, fields, reapplied, changes) in rows {
        // The refused copy: this record plus the refused changes, when they still apply.
        let copy = (!changes.is_empty())
            .then(|| automerge::Automerge::load(&record.save()).ok())
            .flatten()
            .and_then(|mut doc| doc.load_incremental(&changes).ok().map(|_| doc))
            .and_then(|doc| Record::from_doc(doc, crate::forms::resolver(conn, programme), record.editor().clone(), Clock::fixed(now)).ok());
        let list = |s: &str| serde_json::from_str::<Vec<String>>(s).map_err(|e| AppError::Internal(format!("set-aside fields of {}: {e}", record.id())));
        let again = list(&reapplied)?;
        for (i, f) in list(&fields)?.iter().filter(|f| !again.contains(f)).enumerate() {
            let (field, row) = f.split_once('@').map_or((f.as_str(), None), |(a, b)| (a, Some(b)));
            let label = t.field(field).map(|c| c.def.label.get(lang.code()).to_string()).unwrap_or_else(|| f.clone());
            let at_ref = match row.and_then(|r| shidao_core::RowId::new(r).ok()) {
                Some(r) => shidao_core::FieldRef::in_row(field, &r),
                None => shidao_core::FieldRef::top(field),
            };
            let value = copy
                .as_ref()
                .and_then(|c| c.answer(&at_ref).ok())
                .and_then(|a| a.answer)
                .and_then(|a| t.field(field).map(|cf| a.display(cf, lang.code())))
                .unwrap_or_default();
            let who = if i == 0 { format!("{} · {}", author_name(conn, &user), china_minute(at)) } else { String::new() };
            let why = if i == 0 { format!("{code}: {reason}") } else { String::new() };
            out.push((who, why, label, value));
        }
    }
    Ok(out)
}

fn web_editor(user: &WebUser) -> AppResult<Editor> {
    Ok(Editor {
        user: UserId::new(&user.id).map_err(|e| AppError::Internal(e.to_string()))?,
        device: DeviceId::new(format!("web-{}", user.id)).map_err(|e| AppError::Internal(e.to_string()))?,
        role: user.role,
    })
}

/// The server-side "device" a signed-in user's web edits come from.
fn web_device(conn: &Connection, user: &WebUser, now: i64) -> AppResult<Device> {
    let editor = web_editor(user)?;
    conn.execute(
        "INSERT OR IGNORE INTO devices (id, user_id, name, token_hash, created_at) VALUES (?1, ?2, '网页 / web', ?3, ?4)",
        // A token hash nobody can produce: the web device never syncs with a token.
        params![editor.device, editor.user, format!("web:{}", uuid::Uuid::new_v4()), now],
    )?;
    Ok(Device { id: editor.device, user: editor.user, name: "web".into(), role: user.role, programme: user.programme.clone() })
}

/// Applies an edit made in the browser through the same rules and log as a tablet's push.
/// The change is recorded in the audit log as `action` with `detail`.
fn edit(conn: &mut Connection, user: &WebUser, id: &str, now: i64, action: &str, detail: &str, f: impl FnOnce(&mut Record) -> AppResult<()>) -> AppResult<()> {
    let (mut record, _, _) = load(conn, user, id, now)?;
    let before = record.heads();
    f(&mut record)?;
    if record.heads() == before {
        return Ok(());
    }
    let push = Push { record: id.to_string(), changes: record.save_after(&before), heads: record.heads().iter().map(|h| h.to_string()).collect() };
    let device = web_device(conn, user, now)?;
    sync::apply_one(conn, &device, &push, now, Some((action, Some(detail).filter(|d| !d.is_empty()))))
}

fn author_name(conn: &Connection, user: &str) -> String {
    conn.query_row("SELECT name FROM users WHERE id = ?1", [user], |r| r.get(0)).unwrap_or_else(|_| user.to_string())
}

/// One answer of the record view: its label (and the section it opens, if any), the value,
/// who wrote it when, and the concurrent values when it has several.
struct AnswerLine {
    section: Option<String>,
    label: String,
    shown: String,
    by: String,
    at: String,
    history: String,
    field: String,
    row: String,
    /// Index, value, who and when.
    conflicts: Vec<(usize, String, String)>,
}

#[derive(askama::Template)]
#[template(path = "record.html")]
struct RecordPage<'a> {
    chrome: Chrome<'a>,
    /// The record id, escaped for a URL.
    id: String,
    csrf: &'a str,
    status: &'static str,
    created_by: String,
    date: String,
    status_conflicts: String,
    set_asides: Vec<(String, String, String, String)>,
    review: Vec<(String, String, String, Option<String>)>,
    can_review: bool,
    validation: Vec<String>,
    scores: Vec<(String, String, String)>,
    computed: Vec<(String, String, String)>,
    answers: Vec<AnswerLine>,
    sealed: bool,
}

/// What the record view shows, before the page frame.
struct RecordView {
    title: String,
    status: &'static str,
    created_by: String,
    date: String,
    status_conflicts: String,
    set_asides: Vec<(String, String, String, String)>,
    review: Vec<(String, String, String, Option<String>)>,
    can_review: bool,
    validation: Vec<String>,
    scores: Vec<(String, String, String)>,
    computed: Vec<(String, String, String)>,
    answers: Vec<AnswerLine>,
    sealed: bool,
}

/// `GET /records/{id}`: the merged record.
pub async fn view(State(state): State<AppState>, user: WebUser, lang: Lang, Path(id): Path<String>) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let u = user.clone();
    let rid = url(&id);
    let page = state
        .blocking(move |conn| {
            let (record, school, programme) = load(conn, &u, &id, now)?;
            let v = record.read();
            let t = record.template().clone();
            let title = format!("{} · {}", t.def.title.get(lang.code()), school);
            let review = v
                .review
                .iter()
                .map(|e| {
                    let action = match e.action.as_str() {
                        "submit" => lang.t("提交", "submitted").to_string(),
                        "return" => lang.t("退回修改", "returned").to_string(),
                        "approve" => lang.t("审核通过", "approved").to_string(),
                        other => other.to_string(),
                    };
                    (e.at.map(china_minute).unwrap_or_default(), author_name(conn, &e.user), action, e.comment.clone())
                })
                .collect();
            let validation = v.validation.blocking().map(|i| if lang.en { i.message.en.clone() } else { i.message.zh.clone() }).collect();
            let scores = v
                .scores
                .iter()
                .map(|s| {
                    (
                        s.label.get(lang.code()).to_string(),
                        super::page::num(s.value),
                        s.band.as_ref().map(|b| b.get(lang.code()).to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            // Computed values (ratios, 达标 flags, completion), as the form labels them.
            let label_of = |f: &shidao_core::template::CompiledField, row: Option<&RowId>| match (row, f.parent) {
                (Some(row), Parent::Repeat(gi)) => format!(
                    "{} [{}] · {}",
                    t.fields[gi].def.label.get(lang.code()),
                    &row.as_str()[..4.min(row.as_str().len())],
                    f.def.label.get(lang.code())
                ),
                _ => f.def.label.get(lang.code()).to_string(),
            };
            let mut computed = Vec::new();
            for c in &v.computed {
                let Some(f) = t.field(&c.field.field) else { continue };
                let unit = f.def.unit.as_ref().filter(|_| f.option(&c.text).is_none()).map(|u| u.get(lang.code()).to_string()).unwrap_or_default();
                computed.push((label_of(f, c.field.row.as_ref()), f.value_label(&c.text, lang.code()), unit));
            }
            // Answers, section by section, with author, time and conflicts.
            let mut answers = Vec::new();
            let mut section = String::new();
            for a in &v.answers {
                let Some(f) = t.field(&a.field.field) else { continue };
                let mut opens = None;
                if f.section != section {
                    section = f.section.clone();
                    opens = t.def.sections.iter().find(|s| s.id == section).map(|s| s.label.get(lang.code()).to_string());
                }
                let conflicts = a
                    .conflicts
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        let value = c.answer.as_ref().map(|x| x.display(f, lang.code())).unwrap_or_else(|| lang.t("（清空）", "(cleared)").into());
                        let who = c.by.as_ref().map(|b| format!("{} · {}", author_name(conn, &b.user), china_minute(b.at))).unwrap_or_default();
                        (k, value, who)
                    })
                    .collect();
                answers.push(AnswerLine {
                    section: opens,
                    label: label_of(f, a.field.row.as_ref()),
                    shown: a.answer.as_ref().map(|x| x.display(f, lang.code())).unwrap_or_default(),
                    by: a.by.as_ref().map(|b| author_name(conn, &b.user)).unwrap_or_default(),
                    at: a.by.as_ref().map(|b| china_minute(b.at)).unwrap_or_default(),
                    history: format!(
                        "/records/{}/history?field={}{}",
                        url(&id),
                        url(&a.field.field),
                        a.field.row.as_ref().map(|r| format!("&row={}", url(r.as_str()))).unwrap_or_default()
                    ),
                    field: a.field.field.clone(),
                    row: a.field.row.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default(),
                    conflicts,
                });
            }
            Ok(RecordView {
                title,
                status: status_label(lang, v.status.as_str()),
                created_by: author_name(conn, &v.created_by),
                date: record.date().unwrap_or_default(),
                status_conflicts: v.status_conflicts.join(" / "),
                set_asides: set_asides(conn, lang, &record, &programme, now)?,
                review,
                can_review: v.status == shidao_core::Status::Submitted && u.role.reviews(),
                validation,
                scores,
                computed,
                answers,
                // An approved record is sealed: its values are shown, nothing can be picked.
                sealed: v.status == shidao_core::Status::Approved,
            })
        })
        .await?;
    render(&RecordPage {
        chrome: Chrome::new(lang, &page.title, Some(&user)),
        id: rid,
        csrf: &user.csrf,
        status: page.status,
        created_by: page.created_by,
        date: page.date,
        status_conflicts: page.status_conflicts,
        set_asides: page.set_asides,
        review: page.review,
        can_review: page.can_review,
        validation: page.validation,
        scores: page.scores,
        computed: page.computed,
        answers: page.answers,
        sealed: page.sealed,
    })
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    field: String,
    #[serde(default)]
    row: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    chrome: Chrome<'a>,
    label: String,
    /// The record id, escaped for a URL.
    id: String,
    /// When, by whom, the value.
    rows: Vec<(String, String, String)>,
}

/// `GET /records/{id}/history`: every edit of one field.
pub async fn history(State(state): State<AppState>, user: WebUser, lang: Lang, Path(id): Path<String>, Query(q): Query<HistoryQuery>) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let u = user.clone();
    let rid = url(&id);
    let (label, rows) = state
        .blocking(move |conn| {
            let (record, _, _) = load(conn, &u, &id, now)?;
            let at = FieldRef { field: q.field.clone(), row: q.row.as_deref().filter(|r| !r.is_empty()).and_then(|r| RowId::new(r).ok()) };
            let f = record.template().field(&q.field).cloned().ok_or_else(|| AppError::NotFound(format!("field {}", q.field)))?;
            let entries = record.history(&at)?;
            let rows = entries
                .into_iter()
                .map(|e| {
                    let value = e.answer.map(|a| a.display(&f, lang.code())).unwrap_or_else(|| lang.t("（清空）", "(cleared)").into());
                    (china_minute(e.by.at), author_name(conn, &e.by.user), value)
                })
                .collect();
            Ok((f.def.label.get(lang.code()).to_string(), rows))
        })
        .await?;
    render(&HistoryPage { chrome: Chrome::new(lang, lang.t("修改历史", "History"), Some(&user)), label, id: rid, rows })
}

#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    csrf: String,
    field: String,
    #[serde(default)]
    row: String,
    pick: usize,
}

/// `POST /records/{id}/resolve`: keeps one of a field's concurrent values (the supervisor's edit).
pub async fn resolve(State(state): State<AppState>, user: WebUser, Path(id): Path<String>, Form(form): Form<ResolveForm>) -> AppResult<Response> {
    user.check_csrf(&form.csrf)?;
    let now = state.clock.now();
    let back = format!("/records/{}", url(&id));
    state
        .blocking_mut(move |conn| {
            let detail = format!("field {}{} value #{}", form.field, if form.row.is_empty() { String::new() } else { format!(" row {}", form.row) }, form.pick);
            edit(conn, &user, &id, now, "record.resolve", &detail, |r| {
                let row = if form.row.is_empty() { None } else { Some(RowId::new(form.row.clone())?) };
                let at = FieldRef { field: form.field.clone(), row };
                let view = r.answer(&at)?;
                let chosen = view.conflicts.get(form.pick).ok_or_else(|| AppError::Conflict("that value is no longer in conflict; reload the page".into()))?;
                let result = match &chosen.answer {
                    Some(Answer::Signature(_)) => return Err(AppError::BadRequest("a signature cannot be picked for someone else".into())),
                    Some(a) => r.set_answer(&at, a.clone()),
                    None => r.clear_answer(&at),
                };
                Ok(result?)
            })
        })
        .await?;
    Ok(Redirect::to(&back).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    csrf: String,
    action: String,
    #[serde(default)]
    comment: String,
}

/// `POST /records/{id}/review`: approve, or return with a comment.
pub async fn review(State(state): State<AppState>, user: WebUser, Path(id): Path<String>, Form(form): Form<ReviewForm>) -> AppResult<Response> {
    user.check_csrf(&form.csrf)?;
    let now = state.clock.now();
    let back = format!("/records/{}", url(&id));
    state
        .blocking_mut(move |conn| {
            let action = match form.action.as_str() {
                "approve" => "record.approve",
                "return" => "record.return",
                other => return Err(AppError::BadRequest(format!("unknown review action `{other}`"))),
            };
            let comment = form.comment.trim().to_string();
            edit(conn, &user, &id, now, action, &comment, |r| {
                let result = match form.action.as_str() {
                    "approve" => r.approve(None),
                    "return" => r.return_for_correction(form.comment.trim()),
                    other => return Err(AppError::BadRequest(format!("unknown review action `{other}`"))),
                };
                Ok(result?)
            })
        })
        .await?;
    Ok(Redirect::to(&back).into_response())
}

/// Whether a field is shown in exports as its own column.
pub fn exported(kind: FieldKind) -> bool {
    kind.holds_answer() && kind != FieldKind::Repeat
}
