//! Running a programme from the browser: its schools (`/admin/schools`), people
//! (`/admin/people`) and tasks (`/admin/tasks`): lists, add and edit forms, imports from CSV and
//! XLSX, and the schools as CSV.
//!
//! What must stay true:
//! - Supervisors and admins read; only admins change anything. Every POST of anyone else is
//!   refused before its fields (or its upload) are looked at, and every POST carries the
//!   session's CSRF token.
//! - Every change runs through the admin command that makes it at the console
//!   ([`crate::admin::run_as`]), so the same rules hold and the audit log records it the same
//!   way (who, before → after), under the signed-in user's name.
//! - Only the signed-in user's programme is shown or changed (an admin of no programme picks
//!   one); an id of another programme is never taken over.
//! - An import is all or nothing ([`crate::directory`]); a refused file lists every bad row.

use askama::Template;
use axum::Form;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::template::Role;

use super::auth::WebUser;
use super::export::csv_cell;
use super::page::{Chrome, Lang, render, url};
use super::people::{DeviceRow, devices_of};
use super::programme::programme_for;
use crate::AppState;
use crate::admin::{self, Actor, AdminCommand};
use crate::directory::{self, Mode, Problem, Table};
use crate::error::{AppError, AppResult};
use shidao_core::date::china_minute;

/// Body limit of an import upload: the largest workbook plus room for the multipart framing.
pub const UPLOAD_LIMIT: usize = shidao_xlsform::MAX_BYTES + 64 * 1024;


/// What these pages show, for the admin pages' access rule (`WebUser::may_read_admin`).
const PAGES: (&str, &str) = ("学校、人员和任务", "schools, people and tasks");

fn actor(user: &WebUser) -> Actor<'_> {
    Actor {
        id: &user.id,
        role: user.role.as_str(),
    }
}

/// A path of these pages with the programme (and a message) in its query.
fn link(path: &str, programme: &str, done: &str) -> String {
    let mut out = format!("{path}?programme={}", url(programme));
    if !done.is_empty() {
        out.push_str(&format!("&done={}", url(done)));
    }
    out
}

fn done_text(lang: Lang, done: Option<&str>) -> Option<String> {
    let d = done?;
    Some(match d {
        "saved" => lang.t("已保存。", "Saved.").to_string(),
        "team" => lang
            .t("专家团队已更新。", "The expert team was updated.")
            .to_string(),
        "enabled" => lang.t("已启用。", "Enabled.").to_string(),
        "disabled" => lang
            .t(
                "已停用：其平板和网页登录从现在起被拒绝。",
                "Disabled: their tablets and web sign-ins are refused from now on.",
            )
            .to_string(),
        d => match d.strip_prefix("imported-") {
            Some(n) => format!(
                "{} {n} {}",
                lang.t("已导入", "Imported"),
                lang.t("行。", "row(s).")
            ),
            None => return None,
        },
    })
}

#[derive(Template)]
#[template(path = "directory_refused.html")]
struct RefusedPage<'a> {
    chrome: Chrome<'a>,
    message: String,
    file: String,
    problems: Vec<Problem>,
    back: String,
}

fn refused_page(
    lang: Lang,
    user: &WebUser,
    message: String,
    file: String,
    problems: Vec<Problem>,
    back: String,
    status: StatusCode,
) -> Response {
    let page = RefusedPage {
        chrome: Chrome::new(lang, lang.t("未能保存", "Not saved"), Some(user)),
        message,
        file,
        problems,
        back,
    };
    match render(&page) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A refused change as a page; a failure of the relay itself stays an error.
fn refusal(lang: Lang, user: &WebUser, e: AppError, back: String) -> AppResult<Response> {
    match e {
        e @ (AppError::Internal(_) | AppError::StorageFull(_)) => Err(e),
        e => {
            let (status, _) = e.status_and_code();
            Ok(refused_page(
                lang,
                user,
                e.to_string(),
                String::new(),
                Vec::new(),
                back,
                status,
            ))
        }
    }
}

fn programme_name(conn: &Connection, programme: &str) -> AppResult<String> {
    Ok(conn.query_row(
        "SELECT name FROM programmes WHERE id = ?1",
        [programme],
        |r| r.get(0),
    )?)
}

fn categories(conn: &Connection, programme: &str) -> AppResult<Vec<String>> {
    Ok(crate::programme::load(conn, programme)?
        .category_names()
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// `(id, name)` of the programme's schools.
fn school_names(conn: &Connection, programme: &str) -> AppResult<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare("SELECT id, name FROM schools WHERE programme_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([programme], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The school `id` when it is in `programme`.
fn school_in(conn: &Connection, programme: &str, id: &str) -> AppResult<SchoolRow> {
    let row: Option<(SchoolRow, String)> = conn
        .query_row(
            "SELECT s.id, s.name, s.category, s.key_project, s.programme_id,
                    (SELECT COUNT(*) FROM assignments a WHERE a.school_id = s.id),
                    (SELECT COUNT(*) FROM expert_team e WHERE e.school_id = s.id)
             FROM schools s WHERE s.id = ?1",
            [id],
            |r| Ok((school_row(r)?, r.get(4)?)),
        )
        .optional()?;
    match row {
        None => Err(AppError::NotFound(format!("school {id} does not exist"))),
        Some((_, p)) if p != programme => Err(AppError::Forbidden(format!(
            "school {id} is not in your programme"
        ))),
        Some((s, _)) => Ok(s),
    }
}

fn school_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SchoolRow> {
    Ok(SchoolRow {
        id: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        key_project: r.get(3)?,
        people: r.get(5)?,
        experts: r.get(6)?,
    })
}

pub struct SchoolRow {
    pub id: String,
    pub name: String,
    pub category: String,
    pub key_project: String,
    pub people: i64,
    pub experts: i64,
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    programme: Option<String>,
    done: Option<String>,
    edit: Option<String>,
}

#[derive(Template)]
#[template(path = "schools.html")]
struct SchoolsPage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    programme_name: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    categories: Vec<String>,
    schools: Vec<SchoolRow>,
}

/// `GET /admin/schools`: the programme's schools, with the forms to add and import.
pub async fn schools(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Query(q): Query<PageQuery>,
) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let (programme, name, categories, schools) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let mut stmt = c.prepare(
                "SELECT s.id, s.name, s.category, s.key_project, s.programme_id,
                        (SELECT COUNT(*) FROM assignments a WHERE a.school_id = s.id),
                        (SELECT COUNT(*) FROM expert_team e WHERE e.school_id = s.id)
                 FROM schools s WHERE s.programme_id = ?1 ORDER BY s.id",
            )?;
            let schools = stmt
                .query_map([&programme], school_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((
                programme.clone(),
                programme_name(c, &programme)?,
                categories(c, &programme)?,
                schools,
            ))
        })
        .await?;
    render(&SchoolsPage {
        chrome: Chrome::new(lang, lang.t("学校", "Schools"), Some(&user)),
        programme,
        programme_name: name,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done: done_text(lang, q.done.as_deref()),
        categories,
        schools,
    })
}

pub struct PersonBrief {
    pub id: String,
    pub name: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "school.html")]
struct SchoolPage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    categories: Vec<String>,
    school: SchoolRow,
    people: Vec<PersonBrief>,
    experts: Vec<PersonBrief>,
    team_rule: String,
}

/// `GET /admin/schools/{id}`: one school: its fields to edit, its people and its expert team.
pub async fn school(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let (programme, categories, school, people, experts, team_rule) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let school = school_in(c, &programme, &id)?;
            let brief = |sql: &str| -> AppResult<Vec<PersonBrief>> {
                let mut stmt = c.prepare(sql)?;
                let rows = stmt.query_map([&id], |r| {
                    Ok(PersonBrief {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        role: role_label(&r.get::<_, String>(2)?),
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            };
            let people = brief(
                "SELECT u.id, u.name, u.role FROM assignments a JOIN users u ON u.id = a.user_id
                 WHERE a.school_id = ?1 ORDER BY u.role, u.id",
            )?;
            let experts = brief(
                "SELECT u.id, u.name, u.role FROM expert_team e JOIN users u ON u.id = e.user_id
                 WHERE e.school_id = ?1 ORDER BY u.id",
            )?;
            let book = crate::programme::load(c, &programme)?;
            let team_rule = match book.expert_team.as_ref().map(|t| t.min) {
                None => String::new(),
                Some(Some(m)) => format!("≥ {}", super::page::num(Some(m))),
                Some(None) => "≥ 1".into(),
            };
            Ok((
                programme.clone(),
                categories(c, &programme)?,
                school,
                people,
                experts,
                team_rule,
            ))
        })
        .await?;
    render(&SchoolPage {
        chrome: Chrome::new(lang, lang.t("学校", "School"), Some(&user)),
        programme,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done: done_text(lang, q.done.as_deref()),
        categories,
        school,
        people,
        experts,
        team_rule,
    })
}

/// A role as `中文 / english` (the stored name when unknown).
fn role_label(role: &str) -> String {
    match Role::parse(role) {
        Some(r) => format!("{} / {}", r.name_zh(), r.as_str()),
        None => role.to_string(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SchoolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    /// `add` (a new id only) or `edit`.
    #[serde(default)]
    mode: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    key_project: String,
}

fn mode_of(mode: &str) -> Mode {
    if mode == "edit" || mode == "update" {
        Mode::Update
    } else {
        Mode::Add
    }
}

/// `POST /admin/schools`: adds a school, or saves an existing one's fields (`add-school`).
pub async fn save_school(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Form(form): Form<SchoolForm>,
) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, now) = (user.clone(), state.clock.now());
    let id = form.id.trim().to_string();
    let outcome = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, form.programme.as_deref())?;
            let result = (|| {
                if form.name.trim().is_empty() {
                    return Err(AppError::BadRequest(format!(
                        "学校 {id}：名称不能为空 / school {id}: the name must not be empty"
                    )));
                }
                if let Some(p) =
                    directory::existing_problem(c, "schools", &programme, mode_of(&form.mode), &id)?
                {
                    return Err(AppError::BadRequest(p));
                }
                admin::run_as(
                    c,
                    AdminCommand::AddSchool {
                        programme: programme.clone(),
                        id: id.clone(),
                        name: form.name.trim().to_string(),
                        category: form.category.trim().to_string(),
                        key_project: form.key_project.trim().to_string(),
                    },
                    now,
                    actor(&u),
                )
            })();
            Ok((programme, id, result))
        })
        .await?;
    match outcome {
        (programme, id, Ok(_)) => Ok(Redirect::to(&link(
            &format!("/admin/schools/{}", url(&id)),
            &programme,
            "saved",
        ))
        .into_response()),
        (programme, _, Err(e)) => refusal(lang, &user, e, link("/admin/schools", &programme, "")),
    }
}

/// `GET /admin/schools.csv`: the programme's schools with the header the import reads back.
pub async fn schools_csv(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<PageQuery>,
) -> AppResult<Response> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let (programme, rows) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let mut stmt = c.prepare(
                "SELECT id, name, category, key_project FROM schools WHERE programme_id = ?1 ORDER BY id",
            )?;
            let rows = stmt
                .query_map([&programme], |r| {
                    Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
                })?
                .collect::<rusqlite::Result<Vec<[String; 4]>>>()?;
            Ok((programme, rows))
        })
        .await?;
    // A byte-order mark, so that spreadsheet programs read the Chinese as UTF-8.
    let mut out = String::from("\u{feff}学校编号,学校名称,类别,重点项目\r\n");
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    let disposition = format!(
        "attachment; filename=\"schools-{}.csv\"",
        programme.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

/// The fields of an import upload.
struct Upload {
    csrf: String,
    programme: Option<String>,
    mode: String,
    file: Option<(String, Vec<u8>)>,
    too_large: bool,
}

async fn read_upload(upload: Result<Multipart, MultipartRejection>) -> AppResult<Upload> {
    let mut multipart =
        upload.map_err(|e| AppError::BadRequest(format!("not a file upload: {e}")))?;
    let mut out = Upload {
        csrf: String::new(),
        programme: None,
        mode: String::new(),
        file: None,
        too_large: false,
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                out.too_large = true;
                break;
            }
            Err(e) => {
                return Err(AppError::BadRequest(format!(
                    "could not read the upload: {e}"
                )));
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                out.too_large = true;
                break;
            }
            Err(e) => {
                return Err(AppError::BadRequest(format!(
                    "could not read the upload: {e}"
                )));
            }
        };
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "csrf" => out.csrf = text(),
            "programme" => out.programme = Some(text()),
            "mode" => out.mode = text(),
            "file" => out.file = Some((file_name.unwrap_or_default(), bytes.to_vec())),
            _ => {}
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum ImportKind {
    Schools,
    People,
}

async fn import(
    state: AppState,
    user: WebUser,
    lang: Lang,
    upload: Result<Multipart, MultipartRejection>,
    kind: ImportKind,
) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    let upload = read_upload(upload).await?;
    let page = match kind {
        ImportKind::Schools => "/admin/schools",
        ImportKind::People => "/admin/people",
    };
    if upload.too_large {
        let mib = shidao_xlsform::MAX_BYTES / (1024 * 1024);
        return Ok(refused_page(
            lang,
            &user,
            format!("上传的文件超过 {mib} MiB 上限 / the upload is over the limit of {mib} MiB"),
            String::new(),
            Vec::new(),
            page.to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    user.check_csrf(&upload.csrf)?;
    let (u, now) = (user.clone(), state.clock.now());
    let asked = upload.programme.clone();
    let programme = state
        .blocking(move |c| programme_for(c, &u, asked.as_deref()))
        .await?;
    let back = link(page, &programme, "");
    let Some((file, bytes)) = upload.file.filter(|(n, b)| !n.is_empty() || !b.is_empty()) else {
        return refusal(
            lang,
            &user,
            AppError::BadRequest("请选择要导入的文件 / choose a file to import".into()),
            back,
        );
    };
    let table = match Table::read(&bytes) {
        Ok(t) => t,
        Err(why) => return refusal(lang, &user, AppError::BadRequest(why), back),
    };
    let mode = mode_of(&upload.mode);
    let (u, p, f) = (user.clone(), programme.clone(), file.clone());
    let outcome = state
        .blocking_mut(move |c| {
            // One transaction: every row and the import's own entry, or nothing.
            let tx = c.transaction()?;
            let by = actor(&u);
            let (imported, action) = match kind {
                ImportKind::Schools => (
                    directory::import_schools(&tx, &p, &table, mode, now, by),
                    "school.import",
                ),
                ImportKind::People => (
                    directory::import_people(&tx, &p, &table, mode, now, by),
                    "user.import",
                ),
            };
            match imported {
                Ok(n) => {
                    let detail = format!("{n} row(s) from {f}");
                    crate::audit::append(
                        &tx,
                        now,
                        &crate::audit::Entry {
                            actor: &u.id,
                            actor_role: Some(u.role.as_str()),
                            action,
                            target: Some(&p),
                            programme: Some(&p),
                            detail: Some(&detail),
                            ..Default::default()
                        },
                    )?;
                    tx.commit()?;
                    Ok(Ok(n))
                }
                Err(refused) => Ok(Err(refused)),
            }
        })
        .await?;
    match outcome {
        Ok(n) => {
            tracing::info!(%programme, file = %file, rows = n, by = %user.id, "import from the web");
            Ok(Redirect::to(&link(page, &programme, &format!("imported-{n}"))).into_response())
        }
        Err(refused) => Ok(refused_page(
            lang,
            &user,
            lang.t(
                "文件有误，未导入任何内容。请改正下列各行后重新上传。",
                "The file has problems; nothing was imported. Correct the rows below and upload it again.",
            )
            .to_string(),
            file,
            refused.problems,
            back,
            StatusCode::BAD_REQUEST,
        )),
    }
}

/// `POST /admin/schools/import`: schools from a CSV or XLSX file, all or nothing.
pub async fn import_schools(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    upload: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    import(state, user, lang, upload, ImportKind::Schools).await
}

/// `POST /admin/people/import`: people from a CSV or XLSX file, all or nothing.
pub async fn import_people(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    upload: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    import(state, user, lang, upload, ImportKind::People).await
}

pub struct PersonRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub schools: String,
    pub active: bool,
    pub devices: i64,
    pub last_sync: String,
}

fn person_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PersonRow> {
    Ok(PersonRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_label(&r.get::<_, String>(2)?),
        active: r.get(3)?,
        schools: r
            .get::<_, Option<String>>(4)?
            .unwrap_or_default()
            .replace(',', "、"),
        devices: r.get(5)?,
        last_sync: r
            .get::<_, Option<i64>>(6)?
            .map(china_minute)
            .unwrap_or_else(|| "—".into()),
    })
}

const PERSON_SQL: &str = "SELECT u.id, u.name, u.role, u.active,
        (SELECT group_concat(school_id, ',') FROM (SELECT school_id FROM assignments WHERE user_id = u.id ORDER BY school_id)),
        (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL),
        (SELECT MAX(d.last_seen) FROM devices d WHERE d.user_id = u.id)
     FROM users u";

/// Every role, `(stored name, label)`.
fn roles() -> Vec<(&'static str, String)> {
    [
        Role::Inspector,
        Role::Expert,
        Role::Principal,
        Role::Supervisor,
        Role::Admin,
    ]
    .into_iter()
    .map(|r| (r.as_str(), role_label(r.as_str())))
    .collect()
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    programme_name: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    roles: Vec<(&'static str, String)>,
    people: Vec<PersonRow>,
}

/// `GET /admin/people`: the programme's people with their roles, schools and tablets.
pub async fn people(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Query(q): Query<PageQuery>,
) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let (programme, name, people) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let mut stmt = c.prepare(&format!(
                "{PERSON_SQL} WHERE u.programme_id = ?1 ORDER BY u.role, u.id"
            ))?;
            let people = stmt
                .query_map([&programme], person_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((programme.clone(), programme_name(c, &programme)?, people))
        })
        .await?;
    render(&PeoplePage {
        chrome: Chrome::new(lang, lang.t("人员", "People"), Some(&user)),
        programme,
        programme_name: name,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done: done_text(lang, q.done.as_deref()),
        roles: roles(),
        people,
    })
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    person: PersonRow,
    role: String,
    roles: Vec<(&'static str, String)>,
    schools: Vec<(String, String)>,
    devices: Vec<DeviceRow>,
}

/// `GET /admin/people/{user}`: one person: the fields to edit, their schools and tablets.
pub async fn person(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let (programme, person, role, schools, devices) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let row = person_with_programme(c, &id)?;
            let Some((person, role, of)) = row else {
                return Err(AppError::NotFound(format!("user {id} does not exist")));
            };
            if of.as_deref() != Some(programme.as_str()) {
                return Err(AppError::Forbidden(format!(
                    "user {id} is not in your programme"
                )));
            }
            Ok((
                programme.clone(),
                person,
                role,
                school_names(c, &programme)?,
                devices_of(c, &id)?,
            ))
        })
        .await?;
    render(&PersonPage {
        chrome: Chrome::new(lang, lang.t("人员", "Person"), Some(&user)),
        programme,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done: done_text(lang, q.done.as_deref()),
        person,
        role,
        roles: roles(),
        schools,
        devices,
    })
}

/// A person's row, their stored role and their programme.
fn person_with_programme(
    c: &Connection,
    id: &str,
) -> AppResult<Option<(PersonRow, String, Option<String>)>> {
    let sql = PERSON_SQL.replace(
        "(SELECT MAX(d.last_seen) FROM devices d WHERE d.user_id = u.id)",
        "(SELECT MAX(d.last_seen) FROM devices d WHERE d.user_id = u.id), u.programme_id",
    );
    Ok(c.query_row(&format!("{sql} WHERE u.id = ?1"), [id], |r| {
        Ok((person_row(r)?, r.get(2)?, r.get(7)?))
    })
    .optional()?)
}

#[derive(Debug, Deserialize)]
pub struct PersonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    /// `add` (a new id only) or `edit`.
    #[serde(default)]
    mode: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// School ids separated by 、 , or ;.
    #[serde(default)]
    schools: String,
}

/// `POST /admin/people`: adds a person or saves one's name, role and schools (`add-user`). A
/// new person has no password: they enrol their tablet by QR code.
pub async fn save_person(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Form(form): Form<PersonForm>,
) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, now) = (user.clone(), state.clock.now());
    let id = form.id.trim().to_string();
    let outcome = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, form.programme.as_deref())?;
            let result = (|| {
                if form.name.trim().is_empty() {
                    return Err(AppError::BadRequest(format!(
                        "{id}：姓名不能为空 / {id}: the name must not be empty"
                    )));
                }
                let role = directory::parse_role(&form.role).ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "未知角色 `{}` / unknown role `{}`",
                        form.role, form.role
                    ))
                })?;
                if let Some(p) =
                    directory::existing_problem(c, "users", &programme, mode_of(&form.mode), &id)?
                {
                    return Err(AppError::BadRequest(p));
                }
                let schools = directory::split_schools(&form.schools);
                for s in &schools {
                    if let Some(p) = directory::school_problem(c, &programme, s)? {
                        return Err(AppError::BadRequest(p));
                    }
                }
                admin::run_as(
                    c,
                    AdminCommand::AddUser {
                        id: id.clone(),
                        name: form.name.trim().to_string(),
                        role: role.as_str().to_string(),
                        programme: Some(programme.clone()),
                        schools,
                    },
                    now,
                    actor(&u),
                )
            })();
            Ok((programme, id, result))
        })
        .await?;
    match outcome {
        (programme, id, Ok(_)) => Ok(Redirect::to(&link(
            &format!("/admin/people/{}", url(&id)),
            &programme,
            "saved",
        ))
        .into_response()),
        (programme, _, Err(e)) => refusal(lang, &user, e, link("/admin/people", &programme, "")),
    }
}

#[derive(Debug, Deserialize)]
pub struct ActiveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    /// `1` enables, anything else disables.
    #[serde(default)]
    active: String,
}

/// `POST /admin/people/{user}/active`: disables or enables a person (`set-active`).
pub async fn set_active(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(id): Path<String>,
    Form(form): Form<ActiveForm>,
) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, now) = (user.clone(), state.clock.now());
    let enable = form.active == "1";
    let outcome = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, form.programme.as_deref())?;
            let result = (|| {
                let of = person_with_programme(c, &id)?
                    .ok_or_else(|| AppError::NotFound(format!("user {id} does not exist")))?
                    .2;
                if of.as_deref() != Some(programme.as_str()) {
                    return Err(AppError::Forbidden(format!(
                        "user {id} is not in your programme"
                    )));
                }
                if id == u.id && !enable {
                    return Err(AppError::BadRequest(
                        "不能停用自己的账号 / you cannot disable your own account".into(),
                    ));
                }
                admin::run_as(
                    c,
                    AdminCommand::SetActive {
                        user: id.clone(),
                        enable,
                    },
                    now,
                    actor(&u),
                )
            })();
            Ok((programme, id, result))
        })
        .await?;
    match outcome {
        (programme, id, Ok(_)) => Ok(Redirect::to(&link(
            &format!("/admin/people/{}", url(&id)),
            &programme,
            if enable { "enabled" } else { "disabled" },
        ))
        .into_response()),
        (programme, _, Err(e)) => refusal(lang, &user, e, link("/admin/people", &programme, "")),
    }
}

pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub target: String,
    pub unit: String,
    pub start: String,
    pub due: String,
    pub school: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    programme_name: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    schools: Vec<(String, String)>,
    tasks: Vec<TaskRow>,
    /// The task being edited (its fields fill the form), or an empty one to add.
    edit: TaskRow,
    editing: bool,
}

/// `GET /admin/tasks?edit=ID`: the programme's tasks, with the form to add one (or to edit
/// the one named).
pub async fn tasks(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Query(q): Query<PageQuery>,
) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let edit = q.edit.clone().filter(|e| !e.is_empty());
    let (programme, name, schools, tasks) = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let mut stmt = c.prepare(
                "SELECT id, title, target, unit, start_date, due_date, school_id, source
                 FROM tasks WHERE programme_id = ?1 ORDER BY school_id IS NOT NULL, school_id, id",
            )?;
            let tasks = stmt
                .query_map([&programme], |r| {
                    Ok(TaskRow {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        target: shidao_core::expr::fmt_num(r.get(2)?),
                        unit: r.get(3)?,
                        start: r.get(4)?,
                        due: r.get(5)?,
                        school: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        source: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((
                programme.clone(),
                programme_name(c, &programme)?,
                school_names(c, &programme)?,
                tasks,
            ))
        })
        .await?;
    let found = edit
        .as_ref()
        .and_then(|e| tasks.iter().find(|t| &t.id == e));
    if let (Some(e), None) = (&edit, found) {
        return Err(AppError::NotFound(format!(
            "task {e} is not a task of programme {programme}"
        )));
    }
    let editing = found.is_some();
    let edit = match found {
        Some(t) => TaskRow {
            id: t.id.clone(),
            title: t.title.clone(),
            target: t.target.clone(),
            unit: t.unit.clone(),
            start: t.start.clone(),
            due: t.due.clone(),
            school: t.school.clone(),
            source: t.source.clone(),
        },
        None => TaskRow {
            id: String::new(),
            title: String::new(),
            target: String::new(),
            unit: String::new(),
            start: String::new(),
            due: String::new(),
            school: String::new(),
            source: String::new(),
        },
    };
    render(&TasksPage {
        chrome: Chrome::new(lang, lang.t("任务", "Tasks"), Some(&user)),
        programme,
        programme_name: name,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done: done_text(lang, q.done.as_deref()),
        schools,
        tasks,
        edit,
        editing,
    })
}

#[derive(Debug, Deserialize)]
pub struct TaskForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    due: String,
    /// Empty: the whole district (a programme task).
    #[serde(default)]
    school: String,
    #[serde(default)]
    source: String,
}

/// `POST /admin/tasks`: adds a task or saves an existing one (`add-task`).
pub async fn save_task(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Form(form): Form<TaskForm>,
) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, now) = (user.clone(), state.clock.now());
    let id = form.id.trim().to_string();
    let outcome = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, form.programme.as_deref())?;
            let result = (|| {
                if id.is_empty() || form.title.trim().is_empty() || form.unit.trim().is_empty() {
                    return Err(AppError::BadRequest(
                        "任务编号、名称和单位不能为空 / the task's id, title and unit must not be empty"
                            .into(),
                    ));
                }
                let target: f64 = form.target.trim().parse().map_err(|_| {
                    AppError::BadRequest(format!(
                        "任务 {id}：目标 `{}` 不是数字 / task {id}: the target `{}` is not a number",
                        form.target, form.target
                    ))
                })?;
                if let Some(p) =
                    directory::existing_problem(c, "tasks", &programme, mode_of(&form.mode), &id)?
                {
                    return Err(AppError::BadRequest(p));
                }
                let school = Some(form.school.trim().to_string()).filter(|s| !s.is_empty());
                if let Some(s) = &school
                    && let Some(p) = directory::school_problem(c, &programme, s)?
                {
                    return Err(AppError::BadRequest(p));
                }
                admin::run_as(
                    c,
                    AdminCommand::AddTask {
                        programme: programme.clone(),
                        school,
                        id: id.clone(),
                        title: form.title.trim().to_string(),
                        target,
                        unit: form.unit.trim().to_string(),
                        start: form.start.trim().to_string(),
                        due: form.due.trim().to_string(),
                        source: form.source.trim().to_string(),
                    },
                    now,
                    actor(&u),
                )
            })();
            Ok((programme, result))
        })
        .await?;
    match outcome {
        (programme, Ok(_)) => {
            Ok(Redirect::to(&link("/admin/tasks", &programme, "saved")).into_response())
        }
        (programme, Err(e)) => refusal(lang, &user, e, link("/admin/tasks", &programme, "")),
    }
}
