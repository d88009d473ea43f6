//! The school report (一校一报告): `queries` reads the projection into the `model`, the template
//! `templates/report.html` (with `report.css`, an A4 print stylesheet) renders it, and `pdf`
//! prints the same page with the server's headless Chromium for `?format=pdf`.

pub mod model;
mod pdf;
pub mod queries;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
use serde::Deserialize;

use super::auth::WebUser;
use super::page::{render, Chrome, Lang};
use crate::error::{AppError, AppResult};
use crate::AppState;

/// The period of a report (`YYYY-MM-DD`; the programme's term when absent or unreadable) and
/// its format (`pdf`, else the page).
#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    chrome: Chrome<'a>,
    r: &'a model::Report,
}

/// The report page's title and whole HTML.
pub fn report_html(conn: &Connection, user: &WebUser, lang: Lang, school: &str, q: &ReportQuery, today: &str) -> AppResult<(String, String)> {
    report_page(conn, user, lang, school, q, today, 0)
}

fn report_page(conn: &Connection, user: &WebUser, lang: Lang, school: &str, q: &ReportQuery, today: &str, now: i64) -> AppResult<(String, String)> {
    let report = queries::report(conn, user, lang, school, q.from.as_deref(), q.to.as_deref(), today, now)?;
    let title = format!("{} · {}", report.school_name, lang.t("一校一报告", "School report"));
    let html = render(&ReportPage { chrome: Chrome::new(lang, &title, Some(user)), r: &report })?.0;
    Ok((title, html))
}

/// `GET /schools/{id}`: the report (the caller has checked the school is the user's).
pub async fn school_report(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(school): Path<String>,
    Query(q): Query<ReportQuery>,
) -> AppResult<Response> {
    let today = state.clock.today();
    let now = state.clock.now();
    let pdf = q.format.as_deref() == Some("pdf");
    if let Some(f) = q.format.as_deref().filter(|f| *f != "pdf" && *f != "html") {
        return Err(AppError::BadRequest(format!("format `{f}` is not known; use `pdf` or leave it out")));
    }
    let u = user.clone();
    let id = school.clone();
    let (_, html) = state.blocking(move |conn| report_page(conn, &u, lang, &id, &q, &today, now)).await?;
    if !pdf {
        return Ok(axum::response::Html(html).into_response());
    }
    let bytes = tokio::task::spawn_blocking(move || pdf::print(&html))
        .await
        .map_err(|e| AppError::Internal(format!("printing: {e}")))??;
    let name = format!("attachment; filename=\"report-{}.pdf\"", school.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
    Ok(([(header::CONTENT_TYPE, "application/pdf".to_string()), (header::CONTENT_DISPOSITION, name)], bytes).into_response())
}
