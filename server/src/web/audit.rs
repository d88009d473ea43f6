//! `/admin/audit`: the audit log for admins and supervisors, filtered and paged (newest first),
//! and `/admin/audit.csv`, the same rows as CSV. A supervisor of a programme sees that
//! programme's rows and those of no programme.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::WebUser;
use super::export::csv_cell;
use super::page::{render, url, Chrome, Lang};
use shidao_core::date::china_minute;
use crate::audit::{self, Filter, Row};
use crate::error::{AppError, AppResult};
use crate::AppState;

const PAGE: i64 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: i64,
}

impl AuditQuery {
    fn filter(&self, user: &WebUser) -> AppResult<Filter> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let day = |what: &str, s: &str| opt(s).map(|d| audit::day_start(what, &d)).transpose();
        Ok(Filter {
            action: opt(&self.action),
            actor: opt(&self.actor),
            target: opt(&self.target),
            programme: user.programme.clone(),
            from: day("from", &self.from)?,
            // The last day is included.
            to: day("to", &self.to)?.map(|t| t + 86_400),
        })
    }
    fn query_string(&self) -> String {
        format!("action={}&actor={}&target={}&from={}&to={}", url(&self.action), url(&self.actor), url(&self.target), url(&self.from), url(&self.to))
    }
}

fn may_read(user: &WebUser) -> AppResult<()> {
    if user.role.reviews() {
        Ok(())
    } else {
        Err(AppError::Forbidden("只有督导和管理员可以查看审计日志 / only supervisors and admins read the audit log".into()))
    }
}

/// A row as shown: seq, when, actor (role), action, target, before, after, detail, address.
type Line = (i64, String, String, String, String, String, String, String, String);

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    chrome: Chrome<'a>,
    q: &'a AuditQuery,
    query: String,
    rows: Vec<Line>,
    page: i64,
    more: bool,
}

fn actor_of(r: &Row) -> String {
    match &r.actor_role {
        Some(role) => format!("{} ({role})", r.actor),
        None => r.actor.clone(),
    }
}

/// `GET /admin/audit`.
pub async fn page(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<AuditQuery>) -> AppResult<Html<String>> {
    may_read(&user)?;
    let filter = q.filter(&user)?;
    let page = q.page.max(0);
    let mut rows = state.blocking(move |c| audit::query(c, &filter, PAGE + 1, page * PAGE)).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows = rows
        .iter()
        .map(|r| (r.seq, china_minute(r.at), actor_of(r), r.action.clone(), o(&r.target), o(&r.before), o(&r.after), o(&r.detail), o(&r.source)))
        .collect();
    render(&AuditPage { chrome: Chrome::new(lang, lang.t("审计日志", "Audit log"), Some(&user)), q: &q, query: q.query_string(), rows, page, more })
}

/// `GET /admin/audit.csv`: every row the filter matches, newest first, cells neutralised as in
/// the record exports.
pub async fn csv(State(state): State<AppState>, user: WebUser, Query(q): Query<AuditQuery>) -> AppResult<Response> {
    may_read(&user)?;
    let filter = q.filter(&user)?;
    let rows = state.blocking(move |c| audit::query(c, &filter, i64::MAX, 0)).await?;
    let mut out = String::from("\u{feff}seq,at,actor,actor_role,action,target,programme,before,after,detail,source\r\n");
    for r in &rows {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let cells = [r.seq.to_string(), china_minute(r.at), r.actor.clone(), o(&r.actor_role), r.action.clone(), o(&r.target), o(&r.programme), o(&r.before), o(&r.after), o(&r.detail), o(&r.source)];
        out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"audit.csv\"")],
        out,
    )
        .into_response())
}
