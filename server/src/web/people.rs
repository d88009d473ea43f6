//! Enrolment pages: a person's tablets with a one-time enrolment code as a QR code
//! (`/admin/people/{user}/enrol`), and a printable sheet of codes for a training day, one page
//! per school (`/admin/enrol-sheet`).
//!
//! What must stay true:
//! - Supervisors and admins see the pages; only admins issue codes or revoke devices. Every
//!   POST of anyone else is refused before its fields are looked at, and every POST carries the
//!   session's CSRF token. Codes are issued by POST only (a link or an image cannot make one).
//! - Only people, schools and devices of the signed-in user's programme are shown or changed
//!   (an admin of no programme sees every programme).
//! - The QR code is drawn from exactly the payload shown beside it as text
//!   ([`crate::enrolment::qr_svg`]); every other text is escaped by the template.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::template::Role;

use super::auth::WebUser;
use super::page::{render, url, Chrome, Lang};
use shidao_core::date::china_minute;
use crate::enrolment::{self, EnrolSettings};
use crate::error::{AppError, AppResult};
use crate::AppState;


/// What these pages show, for the admin pages' access rule (`WebUser::may_read_admin`).
const PAGES: (&str, &str) = ("登记码和设备", "enrolment codes and devices");

/// The person `id` when they are in the signed-in user's programme: `(name, role)`.
fn person_in_scope(conn: &Connection, user: &WebUser, id: &str) -> AppResult<(String, String)> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row("SELECT name, role, programme_id FROM users WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match row {
        None => Err(AppError::NotFound(format!("user {id} does not exist"))),
        Some((_, _, p)) if user.programme.is_some() && p != user.programme => {
            Err(AppError::Forbidden(format!("user {id} is not in your programme")))
        }
        Some((name, role, _)) => Ok((name, role)),
    }
}

pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub enrolled: String,
    pub last_sync: String,
    /// The app and version its last sync named ('' before its first sync).
    pub app: String,
    pub refusals: i64,
    pub revoked: Option<String>,
}

pub(super) fn devices_of(conn: &Connection, user: &str) -> AppResult<Vec<DeviceRow>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.name, d.created_at, d.last_seen, d.revoked_at,
                (SELECT COUNT(*) FROM set_asides s WHERE s.device_id = d.id), COALESCE(d.app, '')
         FROM devices d WHERE d.user_id = ?1 ORDER BY d.created_at, d.id",
    )?;
    let rows = stmt.query_map([user], |r| {
        Ok(DeviceRow {
            id: r.get(0)?,
            name: r.get(1)?,
            enrolled: china_minute(r.get(2)?),
            last_sync: r.get::<_, Option<i64>>(3)?.map(china_minute).unwrap_or_else(|| "—".into()),
            revoked: r.get::<_, Option<i64>>(4)?.map(china_minute),
            refusals: r.get(5)?,
            app: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A code just issued, as the page shows it.
pub struct CodeView {
    pub user: String,
    pub name: String,
    pub code: String,
    pub expires: String,
    /// The payload text and its QR code (inline SVG), when the relay has a public address.
    pub payload: Option<(String, String)>,
}

fn issue(conn: &Connection, settings: &EnrolSettings, by: &WebUser, user: &str, name: &str, now: i64) -> AppResult<CodeView> {
    let issued = enrolment::issue(conn, settings, user, now, (&by.id, Some(by.role.as_str())))?;
    let payload = match issued.payload {
        Some(p) => {
            let text = p.to_string();
            let svg = enrolment::qr_svg(&text)?;
            Some((text, svg))
        }
        None => None,
    };
    Ok(CodeView { user: user.to_string(), name: name.to_string(), code: issued.code, expires: china_minute(issued.expires_at), payload })
}

#[derive(Template)]
#[template(path = "people_enrol.html")]
struct EnrolPage<'a> {
    chrome: Chrome<'a>,
    person: String,
    person_name: String,
    role: String,
    admin: bool,
    csrf: String,
    public_url: bool,
    done: Option<String>,
    issued: Option<CodeView>,
    devices: Vec<DeviceRow>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

async fn enrol_page(state: AppState, user: WebUser, lang: Lang, person: String, issue_code: bool, done: Option<String>) -> AppResult<Html<String>> {
    let (u, p, settings, now) = (user.clone(), person.clone(), state.enrolment.clone(), state.clock.now());
    let (name, role, issued, devices) = state
        .blocking(move |c| {
            let (name, role) = person_in_scope(c, &u, &p)?;
            let issued = if issue_code { Some(issue(c, &settings, &u, &p, &name, now)?) } else { None };
            Ok((name, role, issued, devices_of(c, &p)?))
        })
        .await?;
    if let Some(i) = &issued {
        tracing::info!(user = %person, by = %user.id, qr = i.payload.is_some(), "enrolment code issued from the web");
    }
    let done = done.filter(|d| d == "revoked").map(|_| lang.t("设备已停用。", "The device was revoked.").to_string());
    let title = lang.t("设备登记", "Enrol a tablet");
    render(&EnrolPage {
        chrome: Chrome::new(lang, title, Some(&user)),
        person,
        person_name: name,
        role,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        public_url: state.enrolment.public_url.is_some(),
        done,
        issued,
        devices,
    })
}

/// `GET /admin/people/{user}/enrol`: the person's tablets, and (admins) the button that issues
/// a code.
pub async fn page(State(state): State<AppState>, user: WebUser, lang: Lang, Path(person): Path<String>, Query(q): Query<DoneQuery>) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    enrol_page(state, user, lang, person, false, q.done).await
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/people/{user}/enrol`: issues a one-time code and shows it once, as a QR code
/// and as text, with its expiry.
pub async fn issue_code(State(state): State<AppState>, user: WebUser, lang: Lang, Path(person): Path<String>, Form(form): Form<CsrfForm>) -> AppResult<Html<String>> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    enrol_page(state, user, lang, person, true, None).await
}

/// `POST /admin/devices/{id}/revoke`: the device's token is refused from now on.
pub async fn revoke(State(state): State<AppState>, user: WebUser, Path(device): Path<String>, Form(form): Form<CsrfForm>) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, d, now) = (user.clone(), device.clone(), state.clock.now());
    let owner = state
        .blocking(move |c| {
            let owner: Option<String> = c.query_row("SELECT user_id FROM devices WHERE id = ?1", [&d], |r| r.get(0)).optional()?;
            let owner = owner.ok_or_else(|| AppError::NotFound(format!("device {d} does not exist")))?;
            person_in_scope(c, &u, &owner)?;
            let entry = crate::audit::Entry {
                actor: &u.id,
                actor_role: Some(u.role.as_str()),
                action: "device.revoke",
                target: Some(&d),
                programme: u.programme.as_deref(),
                detail: Some(&owner),
                ..Default::default()
            };
            crate::audit::recorded(c, now, entry, |_| Ok(None), |c| crate::accounts::revoke_device(c, &d, now))?;
            Ok(owner)
        })
        .await?;
    tracing::info!(%device, user = %owner, by = %user.id, "device revoked from the web");
    Ok(Redirect::to(&format!("/admin/people/{}/enrol?done=revoked", url(&owner))).into_response())
}

pub struct SchoolSheet {
    pub id: String,
    pub name: String,
    pub codes: Vec<CodeView>,
}

#[derive(Template)]
#[template(path = "enrol_sheet.html")]
struct SheetPage<'a> {
    chrome: Chrome<'a>,
    admin: bool,
    csrf: String,
    public_url: bool,
    /// The school asked for (empty: every school of the programme).
    school: String,
    schools: Vec<(String, String)>,
    sheets: Vec<SchoolSheet>,
}

#[derive(Debug, Deserialize, Default)]
pub struct SheetQuery {
    #[serde(default)]
    school: String,
}

/// The schools of the user's programme, `(id, name)`; only `only` when it is not empty (and
/// then it must be one of them).
fn schools_in_scope(conn: &Connection, user: &WebUser, only: &str) -> AppResult<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT id, name, programme_id FROM schools ORDER BY id")?;
    let all: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let mine: Vec<(String, String)> = all
        .into_iter()
        .filter(|(_, _, p)| user.programme.as_ref().is_none_or(|m| m == p))
        .map(|(id, name, _)| (id, name))
        .collect();
    if only.is_empty() {
        return Ok(mine);
    }
    let one: Vec<(String, String)> = mine.into_iter().filter(|(id, _)| id == only).collect();
    if one.is_empty() {
        return Err(AppError::NotFound(format!("school {only} does not exist in your programme")));
    }
    Ok(one)
}

/// `GET /admin/enrol-sheet?school=S`: the form that prints a sheet (nothing is issued yet).
pub async fn sheet_form(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<SheetQuery>) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let school = q.school.trim().to_string();
    let s = school.clone();
    let schools = state.blocking(move |c| schools_in_scope(c, &u, &s)).await?;
    let title = lang.t("登记码打印", "Enrolment sheet");
    render(&SheetPage {
        chrome: Chrome::new(lang, title, Some(&user)),
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        public_url: state.enrolment.public_url.is_some(),
        school,
        schools,
        sheets: Vec::new(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SheetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    school: String,
}

/// `POST /admin/enrol-sheet`: one new code for every active person assigned to the school (or
/// to each school of the programme), one printed page per school.
pub async fn sheet(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<SheetForm>) -> AppResult<Html<String>> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let (u, settings, now) = (user.clone(), state.enrolment.clone(), state.clock.now());
    let school = form.school.trim().to_string();
    let s = school.clone();
    let (schools, sheets) = state
        .blocking_mut(move |c| {
            let schools = schools_in_scope(c, &u, &s)?;
            // All the codes or none: a sheet that stopped half way would hand out codes nobody
            // can see.
            let tx = c.transaction()?;
            let mut sheets = Vec::new();
            for (id, name) in &schools {
                let mut stmt = tx.prepare(
                    "SELECT u.id, u.name FROM assignments a JOIN users u ON u.id = a.user_id
                     WHERE a.school_id = ?1 AND u.active = 1 ORDER BY u.id",
                )?;
                let people: Vec<(String, String)> =
                    stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
                drop(stmt);
                let mut codes = Vec::new();
                for (person, person_name) in people {
                    codes.push(issue(&tx, &settings, &u, &person, &person_name, now)?);
                }
                sheets.push(SchoolSheet { id: id.clone(), name: name.clone(), codes });
            }
            tx.commit()?;
            Ok((schools, sheets))
        })
        .await?;
    let n: usize = sheets.iter().map(|s| s.codes.len()).sum();
    tracing::info!(school = %school, codes = n, by = %user.id, "enrolment sheet issued from the web");
    let title = lang.t("登记码打印", "Enrolment sheet");
    render(&SheetPage {
        chrome: Chrome::new(lang, title, Some(&user)),
        admin: true,
        csrf: user.csrf.clone(),
        public_url: state.enrolment.public_url.is_some(),
        school,
        schools,
        sheets,
    })
}
