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
use shidao_core::{Clock, DeviceId, Editor, FieldRef, RowId, UserId};

use super::auth::WebUser;
use super::page::{esc, layout, url, Lang};
use crate::accounts::Device;
use crate::error::{AppError, AppResult};
use crate::{sync, AppState};

/// `YYYY-MM-DD HH:MM` in China time.
pub fn when(secs: i64) -> String {
    let local = secs + 8 * 3600;
    let day = shidao_core::expr::format_date(local.div_euclid(86_400));
    let rem = local.rem_euclid(86_400);
    format!("{day} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

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

/// `GET /records`: the records behind a figure.
pub async fn list(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<ListQuery>) -> AppResult<Html<String>> {
    let programme = user.programme.clone();
    let body = state
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
            let mut h = format!(
                "<h1>{} <span class=\"muted\">({})</span></h1><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                lang.t("记录", "Records"),
                rows.len(),
                lang.t("表单", "Form"),
                lang.t("学校", "School"),
                lang.t("日期", "Date"),
                lang.t("状态", "Status"),
                lang.t("填写人", "Author"),
                lang.t("最近同步", "Last synced")
            );
            for (id, template, school, date, status, author, updated, programme, version) in rows {
                h.push_str(&format!(
                    r#"<tr><td><a href="/records/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    url(&id),
                    esc(&template_title(conn, lang, &programme, &template, version)),
                    esc(&school),
                    esc(&date.unwrap_or_default()),
                    status_label(lang, &status),
                    esc(&author),
                    when(updated)
                ));
            }
            h.push_str("</table>");
            Ok(h)
        })
        .await?;
    Ok(layout(lang, lang.t("记录", "Records"), Some(&user), &body))
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
fn set_asides_html(conn: &Connection, lang: Lang, record: &Record, programme: &str, now: i64) -> AppResult<String> {
    type Row = (String, i64, String, String, String, String, Vec<u8>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT user_id, at, code, reason, fields, reapplied, changes FROM set_asides WHERE record_id = ?1 ORDER BY at, device_id",
        )?
        .query_map([record.id().as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    let t = record.template();
    let mut h = format!(
        r#"<h2 class="flag">{}</h2><p class="muted">{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"#,
        lang.t("被搁置的修改", "Changes set aside"),
        lang.t(
            "以下修改在平板上完成，但因不符合审核规则被退回，未进入本记录；已保存在填写人的平板上。",
            "These edits were made on a tablet but refused by the review rules; they are not part of this record and are kept on the author's tablet."
        ),
        lang.t("填写人 · 时间", "By · when"),
        lang.t("原因", "Why"),
        lang.t("项目", "Field"),
        lang.t("被搁置的内容", "Set-aside value"),
    );
    for (user, at, code, reason, fields, reapplied, changes) in rows {
        // The refused copy: this record plus the refused changes, when they still apply.
        let copy = (!changes.is_empty())
            .then(|| automerge::Automerge::load(&record.save()).ok())
            .flatten()
            .and_then(|mut doc| doc.load_incremental(&changes).ok().map(|_| doc))
            .and_then(|doc| Record::from_doc(doc, crate::forms::resolver(conn, programme), record.editor().clone(), Clock::fixed(now)).ok());
        let list = |s: &str| serde_json::from_str::<Vec<String>>(s).unwrap_or_default();
        let again = list(&reapplied);
        for (i, f) in list(&fields).iter().filter(|f| !again.contains(f)).enumerate() {
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
            let who = if i == 0 { format!("{} · {}", author_name(conn, &user), when(at)) } else { String::new() };
            let why = if i == 0 { format!("{code}: {reason}") } else { String::new() };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&who),
                esc(&why),
                esc(&label),
                esc(&value)
            ));
        }
    }
    h.push_str("</table>");
    Ok(h)
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
    let id = format!("web-{}", user.id);
    conn.execute(
        "INSERT OR IGNORE INTO devices (id, user_id, name, token_hash, created_at) VALUES (?1, ?2, '网页 / web', ?3, ?4)",
        // A token hash nobody can produce: the web device never syncs with a token.
        params![id, user.id, format!("web:{}", uuid::Uuid::new_v4()), now],
    )?;
    Ok(Device { id, user: user.id.clone(), name: "web".into(), role: user.role, programme: user.programme.clone() })
}

/// Applies an edit made in the browser through the same rules and log as a tablet's push.
fn edit(conn: &mut Connection, user: &WebUser, id: &str, now: i64, f: impl FnOnce(&mut Record) -> AppResult<()>) -> AppResult<()> {
    let (mut record, _, _) = load(conn, user, id, now)?;
    let before = record.heads();
    f(&mut record)?;
    if record.heads() == before {
        return Ok(());
    }
    let push = Push { record: id.to_string(), changes: record.save_after(&before), heads: record.heads().iter().map(|h| h.to_string()).collect() };
    let device = web_device(conn, user, now)?;
    sync::apply_one(conn, &device, &push, now)
}

fn author_name(conn: &Connection, user: &str) -> String {
    conn.query_row("SELECT name FROM users WHERE id = ?1", [user], |r| r.get(0)).unwrap_or_else(|_| user.to_string())
}

/// `GET /records/{id}`: the merged record.
pub async fn view(State(state): State<AppState>, user: WebUser, lang: Lang, Path(id): Path<String>) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let u = user.clone();
    let (title, body) = state
        .blocking(move |conn| {
            let (record, school, programme) = load(conn, &u, &id, now)?;
            let v = record.read();
            let t = record.template().clone();
            let title = format!("{} · {}", t.def.title.get(lang.code()), school);
            let mut h = format!(
                r#"<h1>{}</h1><p>{} <b>{}</b> · {} {} · {} {}</p>"#,
                esc(&title),
                lang.t("状态", "Status"),
                status_label(lang, v.status.as_str()),
                lang.t("创建人", "Created by"),
                esc(&author_name(conn, &v.created_by)),
                lang.t("日期", "Date"),
                esc(&record.date().unwrap_or_default())
            );
            if !v.status_conflicts.is_empty() {
                h.push_str(&format!("<p class=\"flag\">{}: {}</p>", lang.t("状态有并存的值", "Concurrent status values"), esc(&v.status_conflicts.join(" / "))));
            }
            h.push_str(&set_asides_html(conn, lang, &record, &programme, now)?);
            // Review: log, and the forms while it awaits review.
            if !v.review.is_empty() {
                h.push_str(&format!("<h2>{}</h2><ul>", lang.t("审核记录", "Review")));
                for e in &v.review {
                    h.push_str(&format!(
                        "<li>{} · {} · {}{}</li>",
                        e.at.map(when).unwrap_or_default(),
                        esc(&author_name(conn, &e.user)),
                        esc(match e.action.as_str() {
                            "submit" => lang.t("提交", "submitted"),
                            "return" => lang.t("退回修改", "returned"),
                            "approve" => lang.t("审核通过", "approved"),
                            other => other,
                        }),
                        e.comment.as_ref().map(|c| format!("：<b>{}</b>", esc(c))).unwrap_or_default()
                    ));
                }
                h.push_str("</ul>");
            }
            if v.status == shidao_core::Status::Submitted && u.role.reviews() {
                h.push_str(&format!(
                    r#"<div class="noprint"><form method="post" action="/records/{id}/review"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="action" value="approve"><button type="submit" id="approve">{}</button></form>
<form method="post" action="/records/{id}/review"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="action" value="return"><p><textarea name="comment" id="return-comment" rows="3" placeholder="{}"></textarea></p><button type="submit" id="return">{}</button></form></div>"#,
                    lang.t("审核通过（封存）", "Approve (seal)"),
                    lang.t("需要修改的内容", "What must be corrected"),
                    lang.t("退回修改", "Return for correction"),
                    id = url(&id),
                    csrf = esc(&u.csrf),
                ));
            }
            let blocking: Vec<_> = v.validation.blocking().collect();
            if !blocking.is_empty() {
                h.push_str(&format!("<h2>{}</h2><ul>", lang.t("校验问题", "Validation")));
                for i in blocking {
                    h.push_str(&format!("<li>{}</li>", esc(if lang.en { &i.message.en } else { &i.message.zh })));
                }
                h.push_str("</ul>");
            }
            if !v.scores.is_empty() {
                h.push_str(&format!("<h2>{}</h2><table>", lang.t("得分", "Scores")));
                for s in &v.scores {
                    h.push_str(&format!(
                        "<tr><th>{}</th><td class=\"n\">{}</td><td>{}</td></tr>",
                        esc(s.label.get(lang.code())),
                        super::page::num(s.value),
                        esc(s.band.as_ref().map(|b| b.get(lang.code())).unwrap_or(""))
                    ));
                }
                h.push_str("</table>");
            }
            // Computed values (ratios, 达标 flags, completion), as the form labels them.
            if !v.computed.is_empty() {
                h.push_str(&format!("<h2>{}</h2><table>", lang.t("计算结果", "Computed values")));
                for c in &v.computed {
                    let Some(f) = t.field(&c.field.field) else { continue };
                    let label = match (&c.field.row, f.parent) {
                        (Some(row), Parent::Repeat(gi)) => format!("{} [{}] · {}", t.fields[gi].def.label.get(lang.code()), &row.as_str()[..4.min(row.as_str().len())], f.def.label.get(lang.code())),
                        _ => f.def.label.get(lang.code()).to_string(),
                    };
                    let unit = f.def.unit.as_ref().filter(|_| f.option(&c.text).is_none()).map(|u| u.get(lang.code()).to_string()).unwrap_or_default();
                    h.push_str(&format!(
                        "<tr><th>{}</th><td class=\"n\">{} {}</td></tr>",
                        esc(&label),
                        esc(&f.value_label(&c.text, lang.code())),
                        esc(&unit)
                    ));
                }
                h.push_str("</table>");
            }
            // Answers, section by section, with author, time and conflicts.
            h.push_str(&format!(
                "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                lang.t("填写内容", "Answers"),
                lang.t("项目", "Field"),
                lang.t("内容", "Answer"),
                lang.t("填写人", "By"),
                lang.t("时间", "When")
            ));
            let mut section = String::new();
            for a in &v.answers {
                let Some(f) = t.field(&a.field.field) else { continue };
                if f.section != section {
                    section = f.section.clone();
                    if let Some(s) = t.def.sections.iter().find(|s| s.id == section) {
                        h.push_str(&format!("<tr><th colspan=\"4\">{}</th></tr>", esc(s.label.get(lang.code()))));
                    }
                }
                let label = match (&a.field.row, f.parent) {
                    (Some(row), Parent::Repeat(gi)) => format!("{} [{}] · {}", t.fields[gi].def.label.get(lang.code()), &row.as_str()[..4.min(row.as_str().len())], f.def.label.get(lang.code())),
                    _ => f.def.label.get(lang.code()).to_string(),
                };
                let shown = a.answer.as_ref().map(|x| x.display(f, lang.code())).unwrap_or_default();
                let history = format!("/records/{}/history?field={}{}", url(&id), url(&a.field.field), a.field.row.as_ref().map(|r| format!("&row={}", url(r.as_str()))).unwrap_or_default());
                let by = a.by.as_ref().map(|b| author_name(conn, &b.user)).unwrap_or_default();
                let at = a.by.as_ref().map(|b| when(b.at)).unwrap_or_default();
                if a.conflicts.is_empty() {
                    h.push_str(&format!(
                        r#"<tr><td>{}</td><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>"#,
                        esc(&label),
                        esc(&shown),
                        esc(&by),
                        esc(&history),
                        esc(&at)
                    ));
                } else {
                    h.push_str(&format!(r#"<tr class="conflict"><td>{} <span class="flag">{}</span></td><td colspan="3">"#, esc(&label), lang.t("冲突", "conflict")));
                    for (k, c) in a.conflicts.iter().enumerate() {
                        let value = c.answer.as_ref().map(|x| x.display(f, lang.code())).unwrap_or_else(|| lang.t("（清空）", "(cleared)").into());
                        let who = c.by.as_ref().map(|b| format!("{} · {}", author_name(conn, &b.user), when(b.at))).unwrap_or_default();
                        // An approved record is sealed: its values are shown, nothing can be picked.
                        if v.status == shidao_core::Status::Approved {
                            h.push_str(&format!(r#"<div><b>{}</b> <span class="muted">{}</span></div>"#, esc(&value), esc(&who)));
                            continue;
                        }
                        h.push_str(&format!(
                            r#"<div><b>{}</b> <span class="muted">{}</span> <form class="inline noprint" method="post" action="/records/{}/resolve"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="field" value="{}"><input type="hidden" name="row" value="{}"><input type="hidden" name="pick" value="{k}"><button class="secondary pick" type="submit">{}</button></form></div>"#,
                            esc(&value),
                            esc(&who),
                            url(&id),
                            esc(&u.csrf),
                            esc(&a.field.field),
                            esc(a.field.row.as_ref().map(|r| r.as_str()).unwrap_or("")),
                            lang.t("采用此值", "Use this value")
                        ));
                    }
                    h.push_str("</td></tr>");
                }
            }
            h.push_str("</table>");
            Ok((title, h))
        })
        .await?;
    Ok(layout(lang, &title, Some(&user), &body))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    field: String,
    #[serde(default)]
    row: Option<String>,
}

/// `GET /records/{id}/history`: every edit of one field.
pub async fn history(State(state): State<AppState>, user: WebUser, lang: Lang, Path(id): Path<String>, Query(q): Query<HistoryQuery>) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let u = user.clone();
    let body = state
        .blocking(move |conn| {
            let (record, _, _) = load(conn, &u, &id, now)?;
            let at = FieldRef { field: q.field.clone(), row: q.row.as_deref().filter(|r| !r.is_empty()).and_then(|r| RowId::new(r).ok()) };
            let f = record.template().field(&q.field).cloned().ok_or_else(|| AppError::NotFound(format!("field {}", q.field)))?;
            let entries = record.history(&at).map_err(|e| AppError::BadRequest(e.to_string()))?;
            let mut h = format!(
                r#"<h1>{} · {}</h1><p><a href="/records/{}">{}</a></p><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>"#,
                esc(f.def.label.get(lang.code())),
                lang.t("修改历史", "History"),
                url(&id),
                lang.t("返回记录", "Back to the record"),
                lang.t("时间", "When"),
                lang.t("填写人", "By"),
                lang.t("内容", "Value")
            );
            for e in entries {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    when(e.by.at),
                    esc(&author_name(conn, &e.by.user)),
                    esc(&e.answer.map(|a| a.display(&f, lang.code())).unwrap_or_else(|| lang.t("（清空）", "(cleared)").into()))
                ));
            }
            h.push_str("</table>");
            Ok(h)
        })
        .await?;
    Ok(layout(lang, lang.t("修改历史", "History"), Some(&user), &body))
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
            edit(conn, &user, &id, now, |r| {
                let row = if form.row.is_empty() { None } else { Some(RowId::new(form.row.clone()).map_err(|e| AppError::BadRequest(e.to_string()))?) };
                let at = FieldRef { field: form.field.clone(), row };
                let view = r.answer(&at).map_err(|e| AppError::BadRequest(e.to_string()))?;
                let chosen = view.conflicts.get(form.pick).ok_or_else(|| AppError::Conflict("that value is no longer in conflict; reload the page".into()))?;
                let result = match &chosen.answer {
                    Some(Answer::Signature(_)) => return Err(AppError::BadRequest("a signature cannot be picked for someone else".into())),
                    Some(a) => r.set_answer(&at, a.clone()),
                    None => r.clear_answer(&at),
                };
                result.map_err(|e| AppError::BadRequest(e.to_string()))
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
            edit(conn, &user, &id, now, |r| {
                let result = match form.action.as_str() {
                    "approve" => r.approve(None),
                    "return" => r.return_for_correction(form.comment.trim()),
                    other => return Err(AppError::BadRequest(format!("unknown review action `{other}`"))),
                };
                result.map_err(|e| AppError::BadRequest(e.to_string()))
            })
        })
        .await?;
    Ok(Redirect::to(&back).into_response())
}

/// Whether a field is shown in exports as its own column.
pub fn exported(kind: FieldKind) -> bool {
    kind.holds_answer() && kind != FieldKind::Repeat
}
