//! The supervisors' pages: sign-in, the programme dashboard, school reports, records with review,
//! exports, and the admin pages (forms, programme rules, schools, people, tasks, enrolment,
//! audit). Server-rendered HTML in Chinese (English on request), no script but a print button;
//! they work on a laptop and on a tablet.

mod audit;
pub mod auth;
pub mod dashboard;
mod error_page;
mod directory;
mod export;
mod forms;
pub mod page;
mod people;
mod programme;
mod records;
pub mod report;
mod reports;
pub mod throttle;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use rusqlite::OptionalExtension;
use serde::Deserialize;

use self::auth::{cookie_header, SignIn, WebUser, SESSION_COOKIE};
pub use self::page::Lang;
use self::page::{render, Chrome};
use askama::Template;
use crate::error::{AppError, AppResult};
use crate::listen::ClientAddr;
use crate::AppState;

pub use export::export_xlsx;

pub use dashboard::{dashboard_html, dashboard_page};
pub use report::{report_html, ReportQuery};

const LOGIN_COOKIE: &str = "shidao_login";

/// The sign-in page (`templates/login.html`).
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    chrome: Chrome<'a>,
    token: &'a str,
    error: Option<&'a str>,
}

fn login_page(lang: Lang, token: &str, error: Option<&str>) -> AppResult<Html<String>> {
    render(&LoginPage { chrome: Chrome::new(lang, lang.t("登录", "Sign in"), None), token, error })
}

fn set_cookie(resp: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append("set-cookie", v);
    }
}

/// `GET /login`: the form, with a token in a cookie and the form (login CSRF, double submit).
async fn login_form(State(state): State<AppState>, lang: Lang) -> Response {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut resp = match login_page(lang, &token, None) {
        Ok(page) => page.into_response(),
        Err(e) => return e.into_response(),
    };
    set_cookie(&mut resp, cookie_header(LOGIN_COOKIE, &token, 600, state.secure_cookies));
    resp
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    csrf: String,
    user: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    lang: Lang,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> AppResult<Response> {
    let expected = auth::cookie_from(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || expected != form.csrf {
        return Err(AppError::Forbidden("登录表单已过期，请刷新 / the sign-in form expired; reload it (CSRF)".into()));
    }
    let now = state.clock.now();
    let LoginForm { user, password, .. } = form;
    // A new form token with every refusal, so the page can be submitted again.
    let refuse = |status: StatusCode, reason: String| {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut resp = match login_page(lang, &token, Some(&reason)) {
            Ok(page) => (status, page).into_response(),
            Err(e) => return e.into_response(),
        };
        set_cookie(&mut resp, cookie_header(LOGIN_COOKIE, &token, 600, state.secure_cookies));
        resp
    };
    let locked = |secs: i64| {
        let minutes = (secs + 59) / 60;
        let reason = format!("密码错误次数过多，请 {minutes} 分钟后再试 / too many wrong passwords; try again in {minutes} min");
        tracing::warn!(user = ?user.trim(), %from, secs, "sign-in refused: name locked after wrong passwords");
        refuse(StatusCode::TOO_MANY_REQUESTS, reason)
    };
    // The throttle is asked and told inside the store's one connection, so that sign-ins run
    // one at a time: a burst of guesses sent at once cannot all pass the check before the first
    // of them is counted.
    let (throttle, name) = (state.sign_in_throttle.clone(), user.clone());
    let from = crate::listen::address_key(from);
    let outcome = state
        .blocking(move |c| {
            if let Err(secs) = throttle.check(from, &name, now) {
                let entry = crate::audit::Entry {
                    actor: auth::tried(&name),
                    action: "sign_in.failed",
                    detail: Some("locked after wrong passwords; not checked"),
                    source: Some(&from.to_string()),
                    ..Default::default()
                };
                crate::audit::append(c, now, &entry)?;
                return Ok(Err(secs));
            }
            let outcome = auth::sign_in(c, &name, &password, &from.to_string(), now)?;
            match &outcome {
                SignIn::WrongPassword => match throttle.failed(from, &name, now) {
                    0 => {}
                    secs => return Ok(Err(secs)),
                },
                SignIn::Session(_) | SignIn::NotReviewer => throttle.succeeded(from, &name),
            }
            Ok(Ok(outcome))
        })
        .await?;
    match outcome {
        Err(secs) => Ok(locked(secs)),
        Ok(SignIn::Session(session)) => {
            let mut resp = Redirect::to("/").into_response();
            set_cookie(&mut resp, cookie_header(SESSION_COOKIE, &session, 12 * 3600, state.secure_cookies));
            set_cookie(&mut resp, cookie_header(LOGIN_COOKIE, "", 0, state.secure_cookies));
            Ok(resp)
        }
        Ok(SignIn::WrongPassword) => Ok(refuse(StatusCode::FORBIDDEN, "用户名或密码错误 / wrong user name or password".into())),
        Ok(SignIn::NotReviewer) => {
            Ok(refuse(StatusCode::FORBIDDEN, "只有督导和管理员可以登录网页 / only supervisors and admins sign in here".into()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(state): State<AppState>, user: WebUser, headers: HeaderMap, Form(form): Form<CsrfForm>) -> AppResult<Response> {
    user.check_csrf(&form.csrf)?;
    if let Some(session) = auth::cookie_from(&headers, SESSION_COOKIE) {
        state.blocking(move |c| auth::sign_out(c, &session)).await?;
    }
    let mut resp = Redirect::to("/login").into_response();
    set_cookie(&mut resp, cookie_header(SESSION_COOKIE, "", 0, state.secure_cookies));
    Ok(resp)
}

/// `GET /lang/{zh|en}`: switches the interface language and goes back.
async fn set_lang(Path(code): Path<String>, headers: HeaderMap) -> Response {
    let back = headers
        .get("referer")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_string())))
        // A path of this site only: `//host` and `/\host` are read by browsers as another host.
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/".into());
    let mut resp = Redirect::to(&back).into_response();
    let value = if code == "en" { "en" } else { "zh" };
    set_cookie(&mut resp, format!("shidao_lang={value}; Path=/; Max-Age=31536000; SameSite=Lax"));
    resp
}

/// `GET /schools/{id}`: the school report, for a school of the user's programme only.
async fn school_report(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(school): Path<String>,
    query: Query<ReportQuery>,
) -> AppResult<Response> {
    let id = school.clone();
    let programme: Option<String> = state
        .blocking(move |c| Ok(c.query_row("SELECT programme_id FROM schools WHERE id = ?1", [&id], |r| r.get(0)).optional()?))
        .await?;
    match (programme, &user.programme) {
        (None, _) => Err(AppError::NotFound(format!("school {school} does not exist"))),
        (Some(p), Some(mine)) if p != *mine => Err(AppError::Forbidden(format!("school {school} is not in your programme"))),
        _ => report::school_report(State(state), user, lang, Path(school), query).await,
    }
}

/// Every page route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/checks/{school}/{rule}", get(dashboard::checks))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .route("/schools/{id}", get(school_report))
        .route("/records", get(records::list))
        .route("/records/{id}", get(records::view))
        .route("/records/{id}/history", get(records::history))
        .route("/records/{id}/resolve", post(records::resolve))
        .route("/records/{id}/review", post(records::review))
        .route("/exports", get(export::index))
        .route("/export/{file}", get(export::download))
        .route("/api/records", get(export::api))
        .route("/admin/forms", get(forms::list))
        .route("/admin/forms/preview", post(forms::preview).layer(DefaultBodyLimit::max(forms::UPLOAD_LIMIT)))
        .route("/admin/forms/publish", post(forms::publish).layer(DefaultBodyLimit::max(forms::PUBLISH_LIMIT)))
        .route("/admin/forms/retire", post(forms::retire))
        .route("/admin/audit", get(audit::page))
        .route("/admin/audit.csv", get(audit::csv))
        .route("/admin/programme", get(programme::page))
        .route("/admin/programme/rule", post(programme::set_rule))
        .route("/admin/programme/term", post(programme::add_term))
        .route("/admin/programme/team", post(programme::team))
        .route(
            "/admin/schools",
            get(directory::schools).post(directory::save_school),
        )
        .route("/admin/schools.csv", get(directory::schools_csv))
        .route(
            "/admin/schools/import",
            post(directory::import_schools).layer(DefaultBodyLimit::max(directory::UPLOAD_LIMIT)),
        )
        .route("/admin/schools/{id}", get(directory::school))
        .route(
            "/admin/people",
            get(directory::people).post(directory::save_person),
        )
        .route(
            "/admin/people/import",
            post(directory::import_people).layer(DefaultBodyLimit::max(directory::UPLOAD_LIMIT)),
        )
        .route("/admin/people/{user}", get(directory::person))
        .route("/admin/people/{user}/active", post(directory::set_active))
        .route(
            "/admin/tasks",
            get(directory::tasks).post(directory::save_task),
        )
        .route(
            "/admin/people/{user}/enrol",
            get(people::page).post(people::issue_code),
        )
        .route("/admin/devices/{id}/revoke", post(people::revoke))
        .route("/admin/enrol-sheet", get(people::sheet_form).post(people::sheet))
        // A browser gets an error as a page in its language; an API client, the JSON body.
        .layer(axum::middleware::from_fn(error_page::html_errors))
}
