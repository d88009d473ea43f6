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
//! - The pages are askama templates (`forms.html`, `form_preview.html`, `forms_refused.html`)
//!   that escape every value they insert: the view structs here hold plain text, never markup
//!   (labels come from district files). The hidden publish form carries the definition in an
//!   attribute value, which the browser posts back unchanged.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use askama::Template;
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::expr::fmt_num;
use shidao_core::template::{Field, FieldKind, Label, Required};

use super::auth::WebUser;
use super::page::{render, url, Chrome, Lang};
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


/// What these pages show, for the admin pages' access rule (`WebUser::may_read_admin`).
const PAGES: (&str, &str) = ("表单", "the forms");

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

#[derive(Template)]
#[template(path = "forms_refused.html")]
struct RefusedPage<'a> {
    chrome: Chrome<'a>,
    /// Refused for what the form is (a check, a conflict) rather than for who asks or a fault.
    checked: bool,
    message: String,
    back: String,
}

/// A page that shows why something was refused, with a way back; the status is the error's.
fn refusal(lang: Lang, user: &WebUser, programme: &str, e: &AppError) -> Response {
    let (status, _) = e.status_and_code();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(cause = %e, "forms page failed");
    }
    let message = match e {
        AppError::Internal(_) => "internal error".to_string(),
        e => e.to_string(),
    };
    let checked = !matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::INTERNAL_SERVER_ERROR);
    let page = RefusedPage { chrome: Chrome::new(lang, lang.t("表单管理", "Forms"), Some(user)), checked, message, back: back(user, programme, "") };
    match render(&page) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    }
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

/// A text of a form in both languages; `en` is empty when it adds nothing to `zh`.
pub struct Both {
    pub zh: String,
    pub en: String,
}

impl Both {
    fn of(l: &Label) -> Both {
        let en = if l.en == l.zh { String::new() } else { l.en.clone() };
        Both { zh: l.zh.clone(), en }
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

/// A programme to switch to, for users of no programme.
pub struct ProgrammeLink {
    pub href: String,
    pub name: String,
}

/// One published version, as its row of the list shows it.
pub struct VersionRow {
    pub id: String,
    pub version: u32,
    pub title: Both,
    pub records: i64,
    pub badge: &'static str,
    pub state: &'static str,
    pub source: String,
    pub at: String,
    pub by: String,
    pub hash: String,
    pub retired: bool,
}

#[derive(Template)]
#[template(path = "forms.html")]
struct ListPage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    name: String,
    /// The programmes to pick from, for a user of none (else empty).
    programmes: Vec<ProgrammeLink>,
    /// What was just done: the message, the form and its version.
    result: Option<(&'static str, String, u32)>,
    admin: bool,
    csrf: &'a str,
    versions: Vec<VersionRow>,
    limit_mib: usize,
}

/// The first 16 characters of a hash, enough to tell versions apart.
fn short(hash: &str) -> String {
    hash.chars().take(16).collect()
}

/// `GET /admin/forms`: the versions, the upload form and retire buttons (admins only).
pub async fn list(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<ListQuery>) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let (u, asked) = (user.clone(), q.programme.clone());
    let (programme, name, programmes, versions) = state
        .blocking(move |conn| {
            let programme = programme_for(conn, &u, asked.as_deref())?;
            let name: String = conn
                .query_row("SELECT name FROM programmes WHERE id = ?1", [&programme], |r| r.get(0))
                .optional()?
                .ok_or_else(|| AppError::NotFound(format!("programme {programme} does not exist")))?;
            let programmes = if u.programme.is_none() {
                conn.prepare("SELECT id, name FROM programmes ORDER BY id")?
                    .query_map([], |r| Ok(ProgrammeLink { href: format!("/admin/forms?programme={}", url(&r.get::<_, String>(0)?)), name: r.get(1)? }))?
                    .collect::<rusqlite::Result<_>>()?
            } else {
                Vec::new()
            };
            let versions = forms::list(conn, &programme)?;
            Ok((programme, name, programmes, versions))
        })
        .await?;
    let result = match (&q.done, &q.form, q.version) {
        (Some(done), Some(form), Some(version)) => match done.as_str() {
            "published" => Some(lang.t("已发布", "Published")),
            "already" => Some(lang.t("此版本已发布过，未作改动", "This version was already published; nothing changed")),
            "retired" => Some(lang.t("已停用", "Retired")),
            _ => None,
        }
        .map(|what| (what, form.clone(), version)),
        _ => None,
    };
    let versions = versions
        .into_iter()
        .map(|f| {
            let (badge, state) = if f.retired_at.is_some() {
                ("badge red", lang.t("已停用", "retired"))
            } else if f.current {
                ("badge green", lang.t("当前版本", "current"))
            } else {
                ("badge", lang.t("旧版本", "older"))
            };
            VersionRow {
                title: Both::of(&Label { zh: f.title_zh, en: f.title_en }),
                hash: short(&f.hash),
                at: china_minute(f.published_at),
                by: if f.published_by == "shidao" { lang.t("内置", "built-in").to_string() } else { f.published_by },
                id: f.id,
                version: f.version,
                records: f.records,
                badge,
                state,
                source: f.source,
                retired: f.retired_at.is_some(),
            }
        })
        .collect();
    render(&ListPage {
        chrome: Chrome::new(lang, lang.t("表单管理", "Forms"), Some(&user)),
        programme,
        name,
        programmes,
        result,
        admin: user.may_change_admin(PAGES).is_ok(),
        csrf: &user.csrf,
        versions,
        limit_mib: MAX_FORM_BYTES / (1024 * 1024),
    })
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
    user.may_change_admin(PAGES)?;
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
    Ok(preview_page(lang, &user, &programme, &name, &checked, &standing)?.into_response())
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

/// A choice of a choice field: its label and the value stored.
pub struct OptionView {
    pub label: Both,
    pub value: String,
}

/// A level of a rating scale.
pub struct LevelView {
    pub value: i64,
    pub label: Both,
    pub points: Option<String>,
    pub description: Option<Both>,
}

/// A field with its rules and contents, as the preview lists it.
pub struct FieldView {
    pub id: String,
    pub label: Both,
    /// The kind's name in the page's language.
    pub kind: &'static str,
    pub hint: Option<Both>,
    pub required: bool,
    pub required_when: Option<String>,
    pub shown_when: Option<String>,
    /// The constraint and its message.
    pub constraint: Option<(String, Option<Both>)>,
    /// The lowest and highest value allowed, `…` for no bound.
    pub range: Option<(String, String)>,
    pub unit: Option<Both>,
    pub compute: Option<String>,
    pub links_to: Option<String>,
    pub options: Vec<OptionView>,
    pub levels: Vec<LevelView>,
    /// The fewest and most rows of a repeat group that bounds them.
    pub rows: Option<(String, String)>,
    /// The sub-fields of a repeat group (a group holds no other group).
    pub fields: Vec<FieldView>,
}

impl FieldView {
    fn of(lang: Lang, f: &Field) -> FieldView {
        let bound = |v: Option<f64>| v.map_or_else(|| "…".to_string(), fmt_num);
        FieldView {
            id: f.id.clone(),
            label: Both::of(&f.label),
            kind: kind_name(lang, f.kind),
            hint: f.hint.as_ref().map(Both::of),
            required: matches!(f.required, Required::Always(true)),
            required_when: match &f.required {
                Required::When(e) => Some(e.clone()),
                Required::Always(_) => None,
            },
            shown_when: f.relevant.clone(),
            constraint: f.constraint.as_ref().map(|e| (e.clone(), f.constraint_message.as_ref().map(Both::of))),
            range: (f.min.is_some() || f.max.is_some()).then(|| (bound(f.min), bound(f.max))),
            unit: f.unit.as_ref().map(Both::of),
            compute: f.compute.clone(),
            links_to: f.links_to.clone(),
            options: f.options.iter().map(|o| OptionView { label: Both::of(&o.label), value: o.value.clone() }).collect(),
            levels: f
                .scale
                .iter()
                .map(|s| LevelView { value: s.value, label: Both::of(&s.label), points: s.points.map(fmt_num), description: s.description.as_ref().map(Both::of) })
                .collect(),
            rows: (f.kind == FieldKind::Repeat && (f.min_rows.is_some() || f.max_rows.is_some()))
                .then(|| (f.min_rows.map_or("0".to_string(), |v| v.to_string()), f.max_rows.map_or("…".to_string(), |v| v.to_string()))),
            fields: if f.kind == FieldKind::Repeat { f.fields.iter().map(|s| FieldView::of(lang, s)).collect() } else { Vec::new() },
        }
    }

    /// Whether the field has anything to list under "rules and contents".
    pub fn has_details(&self) -> bool {
        self.hint.is_some()
            || self.required
            || self.required_when.is_some()
            || self.shown_when.is_some()
            || self.constraint.is_some()
            || self.range.is_some()
            || self.unit.is_some()
            || self.compute.is_some()
            || self.links_to.is_some()
            || !self.options.is_empty()
            || !self.levels.is_empty()
            || self.rows.is_some()
            || !self.fields.is_empty()
    }
}

/// A section of the form, with the condition it is shown on.
pub struct SectionView {
    pub id: String,
    pub label: Both,
    pub shown_when: Option<String>,
    pub fields: Vec<FieldView>,
}

/// One part of how a score is computed.
pub enum How {
    OutOf(String),
    /// A weighted field: its label (when the field exists), id and weight.
    Weight { label: Option<Both>, field: String, weight: String },
    Expr(String),
}

/// A band of a score: from its lowest value up.
pub struct BandView {
    pub min: String,
    pub label: Both,
}

/// A score of the form: how it is computed and its bands.
pub struct ScoreView {
    pub id: String,
    pub label: Both,
    pub how: Vec<How>,
    /// Highest band first.
    pub bands: Vec<BandView>,
}

/// The hidden fields the publish button sends back.
pub struct PublishFields<'a> {
    pub csrf: &'a str,
    pub programme: &'a str,
    pub file: &'a str,
    pub hash: &'a str,
    /// The checked definition, posted back as it is; publishing checks it again.
    pub definition: &'a str,
}

#[derive(Template)]
#[template(path = "form_preview.html")]
struct PreviewPage<'a> {
    chrome: Chrome<'a>,
    title: Both,
    file: &'a str,
    id: &'a str,
    version: u32,
    hash: String,
    /// The class of the verdict (`ok`, `amber`, `flag`) and its text.
    standing: (&'static str, String),
    warnings: &'a [String],
    /// Present when the form can be published.
    publish: Option<PublishFields<'a>>,
    back: String,
    description: Option<Both>,
    filled_by: String,
    date_field: Option<&'a str>,
    sections: Vec<SectionView>,
    scores: Vec<ScoreView>,
}

fn preview_page(lang: Lang, user: &WebUser, programme: &str, file: &str, form: &Checked, standing: &Standing) -> AppResult<Html<String>> {
    let t = &form.template;
    let d = &t.def;
    let verdict = match standing {
        Standing::New => ("ok", lang.t("新表单：可以发布。", "A new form: it can be published.").to_string()),
        Standing::NewVersion { newest } => (
            "ok",
            format!("{} v{newest}{}", lang.t("新版本，与已发布的", "A new version, compatible with the published"), lang.t("兼容：可以发布。", ": it can be published.")),
        ),
        Standing::AlreadyPublished => ("amber", lang.t("此版本已发布，内容相同：无需再发布。", "This version is already published with the same content.").to_string()),
        Standing::Refused(why) => ("flag", format!("{} {why}", lang.t("不能发布：", "Cannot be published:"))),
    };
    let publish = matches!(standing, Standing::New | Standing::NewVersion { .. })
        .then(|| PublishFields { csrf: &user.csrf, programme, file, hash: &form.hash, definition: &form.definition });
    let scores = d
        .scores
        .iter()
        .map(|s| {
            let mut how: Vec<How> = s.out_of.map(|o| How::OutOf(fmt_num(o))).into_iter().collect();
            how.extend(s.weights.iter().map(|w| How::Weight { label: t.field(&w.field).map(|f| Both::of(&f.def.label)), field: w.field.clone(), weight: fmt_num(w.weight) }));
            how.extend(s.expr.clone().map(How::Expr));
            let mut bands = s.bands.clone();
            bands.sort_by(|a, b| b.min.total_cmp(&a.min));
            ScoreView { id: s.id.clone(), label: Both::of(&s.label), how, bands: bands.iter().map(|b| BandView { min: fmt_num(b.min), label: Both::of(&b.label) }).collect() }
        })
        .collect();
    render(&PreviewPage {
        chrome: Chrome::new(lang, lang.t("表单预览", "Form preview"), Some(user)),
        title: Both::of(&d.title),
        file,
        id: t.id(),
        version: t.version(),
        hash: short(&form.hash),
        standing: verdict,
        warnings: &form.warnings,
        publish,
        back: back(user, programme, ""),
        description: d.description.as_ref().map(Both::of),
        filled_by: d.filled_by.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
        date_field: d.date_field.as_deref(),
        sections: d
            .sections
            .iter()
            .map(|s| SectionView { id: s.id.clone(), label: Both::of(&s.label), shown_when: s.relevant.clone(), fields: s.fields.iter().map(|f| FieldView::of(lang, f)).collect() })
            .collect(),
        scores,
    })
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
    user.may_change_admin(PAGES)?;
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
    user.may_change_admin(PAGES)?;
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

