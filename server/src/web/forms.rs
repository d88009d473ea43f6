//! The forms admin page: the programme's published form versions with their record counts, an
//! upload that previews a form as a tablet draws it (with the check's messages and how it stands
//! against the published version), publish and retire.
//!
//! What must stay true:
//! - Only admins change anything; supervisors see the list read-only and every POST of theirs is
//!   refused before anything in it is looked at (an upload before its file is read). Every POST
//!   carries the session's CSRF token.
//! - A refused upload or publication stores nothing and shows its message (file, place, problem).
//! - The preview judges compatibility with the same code publishing uses (`forms::publish`, run
//!   in a transaction that is rolled back), and the publish step checks the definition it is sent
//!   again: nothing from the browser is stored unchecked.
//! - Every text of a form definition is escaped with `esc` (labels come from district files).

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::template::{Field, FieldKind, Label, Required, Role};

use super::auth::WebUser;
use super::page::{esc, layout, url, Lang};
use shidao_core::date::china_minute;
use crate::error::{AppError, AppResult};
use crate::forms::{self, Checked, Source, MAX_FORM_BYTES};
use crate::AppState;

/// Body limit of an upload: the largest form plus room for the multipart framing and the other
/// fields. A larger body is refused with the size cap's message.
pub const UPLOAD_LIMIT: usize = MAX_FORM_BYTES + 64 * 1024;

/// Body limit of the publish step, which carries the checked definition URL-encoded (up to three
/// bytes for each byte of the definition).
pub const PUBLISH_LIMIT: usize = 3 * MAX_FORM_BYTES + 64 * 1024;

fn may_view(user: &WebUser) -> AppResult<()> {
    if user.role.reviews() {
        Ok(())
    } else {
        Err(AppError::Forbidden("只有督导和管理员可以查看表单 / only supervisors and admins see the forms".into()))
    }
}

fn may_act(user: &WebUser) -> AppResult<()> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(AppError::Forbidden("只有管理员可以发布或停用表单 / only admins publish or retire forms".into()))
    }
}

/// The programme the page is about: the user's own, or, for a user of no programme, the one asked
/// for (else the first).
fn programme_for(conn: &Connection, user: &WebUser, asked: Option<&str>) -> AppResult<String> {
    let asked = asked.map(str::trim).filter(|p| !p.is_empty());
    match (&user.programme, asked) {
        (Some(mine), Some(p)) if p != mine => Err(AppError::Forbidden(format!("programme {p} is not yours"))),
        (Some(mine), _) => Ok(mine.clone()),
        (None, Some(p)) => Ok(p.to_string()),
        (None, None) => conn
            .query_row("SELECT id FROM programmes ORDER BY id LIMIT 1", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| AppError::NotFound("no programme yet".into())),
    }
}

/// A page that shows why something was refused, with a way back; the status is the error's.
fn refusal(lang: Lang, user: &WebUser, programme: &str, e: &AppError) -> Response {
    let (status, _) = e.status_and_code();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(cause = %e, "forms page failed");
    }
    let shown = match e {
        AppError::Internal(_) => "internal error".to_string(),
        e => e.to_string(),
    };
    let body = format!(
        r#"<h1>{}</h1><p class="flag" id="refusal">{}</p><p class="muted">{}</p><p><a href="{}">{}</a></p>"#,
        if status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND || status == StatusCode::INTERNAL_SERVER_ERROR {
            lang.t("未能完成", "Not done")
        } else {
            lang.t("表单未通过检查", "The form was refused")
        },
        esc(&shown),
        lang.t("未保存任何内容。", "Nothing was stored."),
        esc(&back(user, programme, "")),
        lang.t("返回表单管理", "Back to the forms"),
    );
    (status, layout(lang, lang.t("表单管理", "Forms"), Some(user), &body)).into_response()
}

/// `/admin/forms`, with the programme for users of none, and a result message.
fn back(user: &WebUser, programme: &str, message: &str) -> String {
    let mut q = Vec::new();
    if user.programme.is_none() {
        q.push(format!("programme={}", url(programme)));
    }
    if !message.is_empty() {
        q.push(message.to_string());
    }
    if q.is_empty() { "/admin/forms".to_string() } else { format!("/admin/forms?{}", q.join("&")) }
}

fn both(l: &Label) -> String {
    if l.en.is_empty() || l.en == l.zh {
        esc(&l.zh)
    } else {
        format!("{} <span class=\"muted\" lang=\"en\">{}</span>", esc(&l.zh), esc(&l.en))
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    programme: Option<String>,
    /// `published`, `already` or `retired`, with `form` and `version`.
    done: Option<String>,
    form: Option<String>,
    version: Option<u32>,
}

/// `GET /admin/forms`: the versions, the upload form and retire buttons (admins only).
pub async fn list(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<ListQuery>) -> AppResult<Html<String>> {
    may_view(&user)?;
    let u = user.clone();
    let body = state
        .blocking(move |conn| {
            let programme = programme_for(conn, &u, q.programme.as_deref())?;
            let name: String = conn
                .query_row("SELECT name FROM programmes WHERE id = ?1", [&programme], |r| r.get(0))
                .optional()?
                .ok_or_else(|| AppError::NotFound(format!("programme {programme} does not exist")))?;
            let versions = forms::list(conn, &programme)?;
            let admin = may_act(&u).is_ok();
            let mut h = format!("<h1>{} · {}</h1>", lang.t("表单管理", "Forms"), esc(&name));
            if u.programme.is_none() {
                let all: Vec<(String, String)> = conn
                    .prepare("SELECT id, name FROM programmes ORDER BY id")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                h.push_str(&format!("<p>{}: ", lang.t("项目", "Programme")));
                for (id, n) in all {
                    h.push_str(&format!(r#"<a href="/admin/forms?programme={}">{}</a> "#, url(&id), esc(&n)));
                }
                h.push_str("</p>");
            }
            if let (Some(done), Some(form), Some(version)) = (&q.done, &q.form, q.version) {
                let what = match done.as_str() {
                    "published" => Some(lang.t("已发布", "Published")),
                    "already" => Some(lang.t("此版本已发布过，未作改动", "This version was already published; nothing changed")),
                    "retired" => Some(lang.t("已停用", "Retired")),
                    _ => None,
                };
                if let Some(what) = what {
                    h.push_str(&format!(r#"<p class="ok" id="result">{what}：{} v{version}</p>"#, esc(form)));
                }
            }
            h.push_str(&format!(
                "<table id=\"versions\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>{}</tr>",
                lang.t("表单", "Form"),
                lang.t("版本", "Version"),
                lang.t("标题", "Title"),
                lang.t("记录数", "Records"),
                lang.t("状态", "State"),
                lang.t("来源", "Source"),
                lang.t("发布时间", "Published"),
                lang.t("发布人", "By"),
                lang.t("哈希", "Hash"),
                if admin { format!("<th>{}</th>", lang.t("操作", "Action")) } else { String::new() },
            ));
            for f in &versions {
                let (state_class, state_text) = if f.retired_at.is_some() {
                    ("badge red", lang.t("已停用", "retired"))
                } else if f.current {
                    ("badge green", lang.t("当前版本", "current"))
                } else {
                    ("badge", lang.t("旧版本", "older"))
                };
                let action = if !admin {
                    String::new()
                } else if f.retired_at.is_some() {
                    "<td></td>".to_string()
                } else {
                    format!(
                        r#"<td class="nw"><form class="inline" method="post" action="/admin/forms/retire"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="programme" value="{}"><input type="hidden" name="form" value="{}"><input type="hidden" name="version" value="{}"><button class="secondary retire" type="submit">{}</button></form></td>"#,
                        esc(&u.csrf),
                        esc(&programme),
                        esc(&f.id),
                        f.version,
                        lang.t("停用", "Retire"),
                    )
                };
                let by = if f.published_by == "shidao" { lang.t("内置", "built-in").to_string() } else { f.published_by.clone() };
                h.push_str(&format!(
                    r#"<tr data-form="{id}" data-version="{v}"><td><code>{id}</code></td><td class="n">v{v}</td><td>{title}</td><td class="n">{records}</td><td class="nw"><span class="{state_class}">{state_text}</span></td><td>{source}</td><td class="nw">{at}</td><td>{by}</td><td><code>{hash}</code></td>{action}</tr>"#,
                    id = esc(&f.id),
                    v = f.version,
                    title = both(&Label { zh: f.title_zh.clone(), en: f.title_en.clone() }),
                    records = f.records,
                    source = esc(&f.source),
                    at = china_minute(f.published_at),
                    by = esc(&by),
                    hash = esc(&f.hash[..16.min(f.hash.len())]),
                ));
            }
            h.push_str("</table>");
            if admin {
                h.push_str(&format!(
                    r#"<h2>{}</h2><form method="post" action="/admin/forms/preview" enctype="multipart/form-data"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="programme" value="{}">
<p><label>{}<br><input type="file" name="file" id="form-file" accept=".json,.xlsx,.xls"></label></p>
<p><label><input type="checkbox" name="skip_unsupported" value="1" id="skip-unsupported"> {}</label></p>
<p><button type="submit" id="preview">{}</button></p></form><p class="muted">{}</p>"#,
                    lang.t("上传新表单或新版本", "Upload a form or a new version"),
                    esc(&u.csrf),
                    esc(&programme),
                    lang.t("表单文件（模板 JSON 或 XLSForm 工作簿 .xlsx/.xls）", "Form file (template JSON, or an XLSForm workbook .xlsx/.xls)"),
                    lang.t("跳过不支持的题目（逐一列为警告）", "Skip unsupported questions (each listed as a warning)"),
                    lang.t("检查并预览", "Check and preview"),
                    esc(&format!(
                        "{} {} MiB",
                        lang.t("先预览，确认后再发布。文件上限", "Preview first, then publish. Size limit"),
                        MAX_FORM_BYTES / (1024 * 1024)
                    )),
                ));
            } else {
                h.push_str(&format!(
                    "<p class=\"muted\" id=\"read-only\">{}</p>",
                    lang.t("只读：只有管理员可以发布或停用表单。", "Read only: only admins publish or retire forms.")
                ));
            }
            Ok(h)
        })
        .await?;
    Ok(layout(lang, lang.t("表单管理", "Forms"), Some(&user), &body))
}

/// How an uploaded form stands against what the programme has published.
enum Standing {
    /// No version of this form yet.
    New,
    /// A new version of a published form, compatible with `newest`.
    NewVersion { newest: u32 },
    /// This very definition is published already.
    AlreadyPublished,
    /// Publishing would be refused, for this reason.
    Refused(String),
}

/// Runs the publication in a transaction that is rolled back: the same checks as publishing,
/// nothing kept.
fn standing(conn: &mut Connection, programme: &str, form: &Checked, by: &str, now: i64) -> AppResult<Standing> {
    let newest = forms::newest_version(conn, programme, form.template.id())?;
    let tx = conn.transaction()?;
    let outcome = forms::publish(&tx, programme, form, "preview", by, now);
    tx.rollback()?;
    Ok(match outcome {
        Ok(true) => newest.map_or(Standing::New, |newest| Standing::NewVersion { newest }),
        Ok(false) => Standing::AlreadyPublished,
        Err(e @ (AppError::BadRequest(_) | AppError::Conflict(_))) => Standing::Refused(e.to_string()),
        Err(e) => return Err(e),
    })
}

/// `POST /admin/forms/preview`: checks an uploaded file and shows the form as a tablet draws it.
pub async fn preview(State(state): State<AppState>, user: WebUser, lang: Lang, upload: Result<Multipart, MultipartRejection>) -> AppResult<Response> {
    may_act(&user)?;
    let mut multipart = upload.map_err(|e| AppError::BadRequest(format!("not a form upload: {e}")))?;
    let (mut csrf, mut asked, mut skip, mut file) = (String::new(), None, false, None);
    let mut too_large = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                too_large = true;
                break;
            }
            Err(e) => return Err(AppError::BadRequest(format!("could not read the upload: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let read = field.bytes().await;
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                too_large = true;
                break;
            }
            Err(e) => return Err(AppError::BadRequest(format!("could not read the upload: {e}"))),
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "programme" => asked = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "skip_unsupported" => skip = !bytes.is_empty(),
            "file" => file = Some((file_name.unwrap_or_default(), bytes)),
            _ => {}
        }
    }
    let u = user.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    // A body cut at the cap may end before the token was read; the refusal changes nothing, so
    // it does not wait for it.
    if too_large {
        let e = AppError::BadRequest(format!(
            "上传的文件超过 {} MiB 上限 / the upload is over the limit of {} MiB ({MAX_FORM_BYTES} bytes)",
            MAX_FORM_BYTES / (1024 * 1024),
            MAX_FORM_BYTES / (1024 * 1024)
        ));
        let mut resp = refusal(lang, &user, &programme, &e);
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return Ok(resp);
    }
    user.check_csrf(&csrf)?;
    let Some((name, bytes)) = file.filter(|(n, _)| !n.is_empty()) else {
        return Ok(refusal(lang, &user, &programme, &AppError::BadRequest("请选择一个表单文件 / choose a form file to upload".into())));
    };
    let checked = match forms::check_file(&name, &bytes, skip) {
        Ok(c) => c,
        Err(e) => return Ok(refusal(lang, &user, &programme, &e)),
    };
    let now = state.clock.now();
    let (p, c, by) = (programme.clone(), checked.clone(), user.id.clone());
    let standing = state.blocking_mut(move |conn| standing(conn, &p, &c, &by, now)).await?;
    let body = preview_page(lang, &user, &programme, &name, &checked, &standing);
    Ok(layout(lang, lang.t("表单预览", "Form preview"), Some(&user), &body).into_response())
}

fn kind_name(lang: Lang, k: FieldKind) -> &'static str {
    match k {
        FieldKind::Text => lang.t("单行文本", "text"),
        FieldKind::LongText => lang.t("多行文本（可共同编辑）", "long text (co-written)"),
        FieldKind::Integer => lang.t("整数", "integer"),
        FieldKind::Decimal => lang.t("小数", "decimal"),
        FieldKind::SingleChoice => lang.t("单选", "single choice"),
        FieldKind::MultipleChoice => lang.t("多选", "multiple choice"),
        FieldKind::Rating => lang.t("等级评分", "rating"),
        FieldKind::YesNo => lang.t("是/否", "yes/no"),
        FieldKind::Date => lang.t("日期", "date"),
        FieldKind::Time => lang.t("时间", "time"),
        FieldKind::Duration => lang.t("时长（分钟）", "duration (minutes)"),
        FieldKind::Counter => lang.t("计数", "counter"),
        FieldKind::Attachment => lang.t("附件", "attachment"),
        FieldKind::Signature => lang.t("签名", "signature"),
        FieldKind::Repeat => lang.t("重复组", "repeat group"),
        FieldKind::Computed => lang.t("计算值", "computed"),
        FieldKind::Note => lang.t("说明", "note"),
    }
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", esc(s))
}

/// The rules and contents of one field, as list items.
fn field_details(lang: Lang, f: &Field) -> String {
    let mut d: Vec<String> = Vec::new();
    if let Some(hint) = &f.hint {
        d.push(format!("{}：{}", lang.t("提示", "Hint"), both(hint)));
    }
    match &f.required {
        Required::Always(true) => d.push(format!("<b>{}</b>", lang.t("必填", "Required"))),
        Required::Always(false) => {}
        Required::When(e) => d.push(format!("{}：{}", lang.t("条件必填", "Required when"), code(e))),
    }
    if let Some(e) = &f.relevant {
        d.push(format!("{}：{}", lang.t("显示条件", "Shown when"), code(e)));
    }
    if let Some(e) = &f.constraint {
        let message = f.constraint_message.as_ref().map(|m| format!("（{}）", both(m))).unwrap_or_default();
        d.push(format!("{}：{}{message}", lang.t("约束", "Constraint"), code(e)));
    }
    if f.min.is_some() || f.max.is_some() {
        let b = |v: Option<f64>| v.map(shidao_core::expr::fmt_num).unwrap_or_else(|| "…".into());
        d.push(format!("{}：{} – {}", lang.t("范围", "Range"), b(f.min), b(f.max)));
    }
    if let Some(unit) = &f.unit {
        d.push(format!("{}：{}", lang.t("单位", "Unit"), both(unit)));
    }
    if let Some(e) = &f.compute {
        d.push(format!("{}：{}", lang.t("计算", "Computed as"), code(e)));
    }
    if let Some(l) = &f.links_to {
        d.push(format!("{}：{}", lang.t("关联表单", "Links to"), code(l)));
    }
    if !f.options.is_empty() {
        let items: Vec<String> = f.options.iter().map(|o| format!("<li>{} {}</li>", both(&o.label), code(&o.value))).collect();
        d.push(format!("{}：<ul class=\"options\">{}</ul>", lang.t("选项", "Options"), items.concat()));
    }
    if !f.scale.is_empty() {
        let items: Vec<String> = f
            .scale
            .iter()
            .map(|s| {
                let desc = s.description.as_ref().map(|x| format!("：{}", both(x))).unwrap_or_default();
                let points = s.points.map(|p| format!(" <span class=\"points\">（{} {}）</span>", shidao_core::expr::fmt_num(p), lang.t("分", "points"))).unwrap_or_default();
                format!("<li><b>{}</b> {}{points}{desc}</li>", s.value, both(&s.label))
            })
            .collect();
        d.push(format!("{}：<ol class=\"scale\">{}</ol>", lang.t("等级", "Levels"), items.concat()));
    }
    if f.kind == FieldKind::Repeat {
        let rows = match (f.min_rows, f.max_rows) {
            (None, None) => String::new(),
            (a, b) => format!(
                "{}：{} – {}",
                lang.t("行数", "Rows"),
                a.map_or("0".to_string(), |v| v.to_string()),
                b.map_or("…".to_string(), |v| v.to_string())
            ),
        };
        if !rows.is_empty() {
            d.push(rows);
        }
        d.push(fields_table(lang, &f.fields));
    }
    if d.is_empty() {
        String::new()
    } else {
        format!("<ul>{}</ul>", d.into_iter().map(|x| format!("<li>{x}</li>")).collect::<String>())
    }
}

fn fields_table(lang: Lang, fields: &[Field]) -> String {
    let mut h = format!(
        "<table class=\"fields\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("题目", "Question"),
        lang.t("类型", "Kind"),
        lang.t("规则与内容", "Rules and contents")
    );
    for f in fields {
        h.push_str(&format!(
            r#"<tr data-field="{id}"><td>{label}<br><code>{id}</code></td><td>{kind}</td><td>{details}</td></tr>"#,
            id = esc(&f.id),
            label = both(&f.label),
            kind = kind_name(lang, f.kind),
            details = field_details(lang, f),
        ));
    }
    h.push_str("</table>");
    h
}

fn preview_page(lang: Lang, user: &WebUser, programme: &str, file: &str, form: &Checked, standing: &Standing) -> String {
    let t = &form.template;
    let d = &t.def;
    let mut h = format!(
        r#"<h1>{} · {}</h1><p>{} <code>{}</code> · <code>{}</code> v{} · {} <code>{}</code></p>"#,
        lang.t("表单预览", "Form preview"),
        both(&d.title),
        lang.t("文件", "File"),
        esc(file),
        esc(t.id()),
        t.version(),
        lang.t("哈希", "Hash"),
        esc(&form.hash[..16.min(form.hash.len())]),
    );
    let (class, verdict) = match standing {
        Standing::New => ("ok", lang.t("新表单：可以发布。", "A new form: it can be published.").to_string()),
        Standing::NewVersion { newest } => (
            "ok",
            format!("{} v{newest}{}", lang.t("新版本，与已发布的", "A new version, compatible with the published"), lang.t("兼容：可以发布。", ": it can be published.")),
        ),
        Standing::AlreadyPublished => ("amber", lang.t("此版本已发布，内容相同：无需再发布。", "This version is already published with the same content.").to_string()),
        Standing::Refused(why) => (
            "flag",
            format!("{} {why}", lang.t("不能发布：", "Cannot be published:")),
        ),
    };
    h.push_str(&format!(r#"<p class="{class}" id="standing">{}</p>"#, esc(&verdict)));
    if !form.warnings.is_empty() {
        h.push_str(&format!("<h2>{}</h2><ul id=\"warnings\">", lang.t("导入警告", "Import warnings")));
        for w in &form.warnings {
            h.push_str(&format!("<li class=\"amber\">{}</li>", esc(w)));
        }
        h.push_str("</ul>");
    }
    if matches!(standing, Standing::New | Standing::NewVersion { .. }) {
        h.push_str(&format!(
            r#"<form method="post" action="/admin/forms/publish"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="programme" value="{}"><input type="hidden" name="file" value="{}"><input type="hidden" name="hash" value="{}"><input type="hidden" name="definition" value="{}"><p><button type="submit" id="publish">{}</button></p></form>"#,
            esc(&user.csrf),
            esc(programme),
            esc(file),
            esc(&form.hash),
            esc(&form.definition),
            lang.t("发布此表单", "Publish this form"),
        ));
    }
    h.push_str(&format!(r#"<p><a href="{}">{}</a></p>"#, esc(&back(user, programme, "")), lang.t("返回表单管理（不发布）", "Back to the forms (without publishing)")));
    if let Some(desc) = &d.description {
        h.push_str(&format!("<p>{}</p>", both(desc)));
    }
    let roles: Vec<&str> = d.filled_by.iter().map(|r| r.as_str()).collect();
    h.push_str(&format!("<p class=\"muted\">{}：{}", lang.t("填写角色", "Filled by"), esc(&roles.join(", "))));
    if let Some(df) = &d.date_field {
        h.push_str(&format!(" · {}：{}", lang.t("日期字段", "Date field"), code(df)));
    }
    h.push_str("</p>");
    for (i, s) in d.sections.iter().enumerate() {
        h.push_str(&format!(r#"<h2 data-section="{}">{}. {}</h2>"#, esc(&s.id), i + 1, both(&s.label)));
        if let Some(e) = &s.relevant {
            h.push_str(&format!("<p>{}：{}</p>", lang.t("本部分显示条件", "Section shown when"), code(e)));
        }
        h.push_str(&fields_table(lang, &s.fields));
    }
    if !d.scores.is_empty() {
        h.push_str(&format!("<h2>{}</h2><table id=\"scores\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>", lang.t("得分", "Scores"), lang.t("得分", "Score"), lang.t("计算", "How"), lang.t("等级", "Bands")));
        for s in &d.scores {
            let mut how: Vec<String> = Vec::new();
            if let Some(out_of) = s.out_of {
                how.push(format!("{}：{}", lang.t("满分", "Out of"), shidao_core::expr::fmt_num(out_of)));
            }
            for w in &s.weights {
                let label = t.field(&w.field).map(|f| both(&f.def.label)).unwrap_or_default();
                how.push(format!("{label} {} × {}", code(&w.field), shidao_core::expr::fmt_num(w.weight)));
            }
            if let Some(e) = &s.expr {
                how.push(code(e));
            }
            let mut bands = s.bands.clone();
            bands.sort_by(|a, b| b.min.total_cmp(&a.min));
            let bands: Vec<String> = bands.iter().map(|b| format!("<li>≥ {}：{}</li>", shidao_core::expr::fmt_num(b.min), both(&b.label))).collect();
            h.push_str(&format!(
                "<tr><td>{} <code>{}</code></td><td>{}</td><td><ul>{}</ul></td></tr>",
                both(&s.label),
                esc(&s.id),
                how.join("<br>"),
                bands.concat()
            ));
        }
        h.push_str("</table>");
    }
    h
}

#[derive(Debug, Deserialize)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    file: String,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    definition: String,
}

/// `POST /admin/forms/publish`: checks the previewed definition again and publishes it.
pub async fn publish(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<PublishForm>) -> AppResult<Response> {
    may_act(&user)?;
    user.check_csrf(&form.csrf)?;
    let u = user.clone();
    let asked = form.programme.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    let file = if form.file.trim().is_empty() { "upload.json".to_string() } else { form.file.clone() };
    let checked = match forms::check(&Source::Json { file: &file, text: &form.definition }) {
        Ok(c) => c,
        Err(e) => return Ok(refusal(lang, &user, &programme, &e)),
    };
    if checked.hash != form.hash {
        let e = AppError::BadRequest("表单内容与预览不一致，请重新上传 / the form is not the one previewed; upload it again".into());
        return Ok(refusal(lang, &user, &programme, &e));
    }
    let now = state.clock.now();
    let (p, c, by, source, role) = (programme.clone(), checked.clone(), user.id.clone(), format!("file {file}"), user.role);
    let outcome = state
        .blocking_mut(move |conn| {
            let tx = conn.transaction()?;
            let new = forms::publish(&tx, &p, &c, &source, &by, now)?;
            if new {
                let target = format!("{}@{}", c.template.id(), c.template.version());
                let after = serde_json::json!({ "hash": c.hash, "source": source });
                let entry = crate::audit::Entry {
                    actor: &by,
                    actor_role: Some(role.as_str()),
                    action: "form.publish",
                    target: Some(&target),
                    programme: Some(&p),
                    after: Some(after),
                    ..Default::default()
                };
                crate::audit::append(&tx, now, &entry)?;
            }
            tx.commit()?;
            Ok(new)
        })
        .await;
    match outcome {
        Ok(new) => {
            let t = &checked.template;
            tracing::info!(programme = %programme, form = t.id(), version = t.version(), by = %user.id, new, "form published from the web");
            let done = format!("done={}&form={}&version={}", if new { "published" } else { "already" }, url(t.id()), t.version());
            Ok(Redirect::to(&back(&user, &programme, &done)).into_response())
        }
        Err(e @ AppError::Internal(_)) | Err(e @ AppError::StorageFull(_)) => Err(e),
        Err(e) => Ok(refusal(lang, &user, &programme, &e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct RetireForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    form: String,
    #[serde(default)]
    version: String,
}

/// `POST /admin/forms/retire`: no new records of that version; its records stay readable.
pub async fn retire(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<RetireForm>) -> AppResult<Response> {
    may_act(&user)?;
    user.check_csrf(&form.csrf)?;
    let u = user.clone();
    let asked = form.programme.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    let Ok(version) = form.version.trim().parse::<u32>() else {
        let e = AppError::BadRequest(format!("`{}` is not a version number", form.version));
        return Ok(refusal(lang, &user, &programme, &e));
    };
    let now = state.clock.now();
    let (p, id, by, role) = (programme.clone(), form.form.clone(), user.id.clone(), user.role);
    let retired = move |conn: &Connection| {
        let target = format!("{id}@{version}");
        let entry = crate::audit::Entry { actor: &by, actor_role: Some(role.as_str()), action: "form.retire", target: Some(&target), programme: Some(&p), ..Default::default() };
        crate::audit::recorded(conn, now, entry, |c| Ok(Some(serde_json::json!({ "retired_at": forms::retired_at(c, &p, &id, version)? }))), |conn| forms::retire(conn, &p, &id, version, now))
    };
    match state.blocking(retired).await {
        Ok(()) => {
            tracing::info!(programme = %programme, form = %form.form, version, by = %user.id, "form version retired from the web");
            let done = format!("done=retired&form={}&version={version}", url(&form.form));
            Ok(Redirect::to(&back(&user, &programme, &done)).into_response())
        }
        Err(e @ AppError::Internal(_)) | Err(e @ AppError::StorageFull(_)) => Err(e),
        Err(e) => Ok(refusal(lang, &user, &programme, &e)),
    }
}

