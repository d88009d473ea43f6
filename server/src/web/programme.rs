//! The programme rules page `/admin/programme`: each rule of the programme's rule book with its
//! figure and the sentence of the programme document it comes from, the semesters, the expert
//! team of each school, and the history of every change.
//!
//! What must stay true:
//! - Supervisors and admins read; only admins change anything. Every POST of anyone else is
//!   refused before its fields are looked at, and every POST carries the session's CSRF token.
//! - A refused change stores nothing (the store checks the whole book before it writes) and shows
//!   its message, which names the rule and the field.
//! - Every text is escaped by the template (sources and names come from district files).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use shidao_core::template::Role;

use super::auth::WebUser;
use super::page::{render, url, Chrome, Lang};
use shidao_core::date::china_minute;
use crate::error::{AppError, AppResult};
use crate::programme::rules::{figures, Term, RULE_NAMES};
use crate::programme::store;
use crate::AppState;


/// What these pages show, for the admin pages' access rule (`WebUser::may_read_admin`).
const PAGES: (&str, &str) = ("项目规则", "the programme rules");

/// The programme the page is about: the user's own, or, for a user of no programme, the one
/// asked for (else the first).
pub(super) fn programme_for(
    conn: &Connection,
    user: &WebUser,
    asked: Option<&str>,
) -> AppResult<String> {
    let asked = asked.map(str::trim).filter(|p| !p.is_empty());
    match (&user.programme, asked) {
        (Some(mine), Some(p)) if p != mine => Err(AppError::Forbidden(format!("programme {p} is not yours"))),
        (Some(mine), _) => Ok(mine.clone()),
        (None, Some(p)) => {
            let known: Option<i64> = conn.query_row("SELECT 1 FROM programmes WHERE id = ?1", [p], |r| r.get(0)).optional()?;
            known.map(|_| p.to_string()).ok_or_else(|| AppError::NotFound(format!("programme {p} does not exist")))
        }
        (None, None) => conn
            .query_row("SELECT id FROM programmes ORDER BY id LIMIT 1", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| AppError::NotFound("no programme yet".into())),
    }
}

fn back(user: &WebUser, programme: &str, message: &str) -> String {
    let mut q = Vec::new();
    if user.programme.is_none() {
        q.push(format!("programme={}", url(programme)));
    }
    if !message.is_empty() {
        q.push(format!("done={}", url(message)));
    }
    if q.is_empty() { "/admin/programme".to_string() } else { format!("/admin/programme?{}", q.join("&")) }
}

pub struct FigureRow {
    pub rule: String,
    pub figure: String,
    pub sentence: String,
    pub document: String,
}

pub struct RuleEdit {
    pub name: &'static str,
    pub json: String,
}

pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub category: String,
    pub experts: String,
    pub count: usize,
    pub short: bool,
}

pub struct ChangeRow {
    pub at: String,
    pub by: String,
    pub rule: String,
    pub before: String,
    pub after: String,
}

#[derive(Template)]
#[template(path = "programme.html")]
struct ProgrammePage<'a> {
    chrome: Chrome<'a>,
    programme: String,
    programme_name: String,
    document: String,
    preset: String,
    admin: bool,
    csrf: String,
    done: Option<String>,
    figures: Vec<FigureRow>,
    edits: Vec<RuleEdit>,
    team_rule: String,
    teams: Vec<TeamRow>,
    history: Vec<ChangeRow>,
}

#[derive(Template)]
#[template(path = "programme_refused.html")]
struct RefusedPage<'a> {
    chrome: Chrome<'a>,
    message: String,
    back: String,
}

fn refusal(lang: Lang, user: &WebUser, programme: &str, e: &AppError) -> Response {
    let (status, _) = e.status_and_code();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(cause = %e, "programme page failed");
    }
    let message = match e {
        AppError::Internal(_) => "internal error".to_string(),
        e => e.to_string(),
    };
    let page = RefusedPage { chrome: Chrome::new(lang, lang.t("项目规则", "Programme rules"), Some(user)), message, back: back(user, programme, "") };
    match render(&page) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    programme: Option<String>,
    done: Option<String>,
}

/// `GET /admin/programme`: the rules with their figures and sources, terms, teams and history.
pub async fn page(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<PageQuery>) -> AppResult<Html<String>> {
    user.may_read_admin(PAGES)?;
    let u = user.clone();
    let data = state
        .blocking(move |c| {
            let programme = programme_for(c, &u, q.programme.as_deref())?;
            let name: String = c.query_row("SELECT name FROM programmes WHERE id = ?1", [&programme], |r| r.get(0))?;
            let book = store::load(c, &programme)?;
            let preset = store::preset_of(c, &programme)?.unwrap_or_default();
            let figures: Vec<FigureRow> = figures(&book)
                .into_iter()
                .map(|f| {
                    let (sentence, document) = f.source.map(|s| (s.sentence, s.document)).unwrap_or_default();
                    FigureRow { rule: f.rule, figure: f.figure, sentence, document }
                })
                .collect();
            let edits = RULE_NAMES
                .iter()
                .map(|n| {
                    let v = store::rule_value(&book, n);
                    RuleEdit { name: n, json: if v.is_null() { "null".into() } else { serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()) } }
                })
                .collect();
            let min = book.expert_team.as_ref().map(|t| t.min);
            let team_rule = match min {
                None => String::new(),
                Some(Some(m)) => format!("≥ {}", crate::web::page::num(Some(m))),
                Some(None) => "≥ 1".into(),
            };
            let mut teams = Vec::new();
            let mut stmt = c.prepare("SELECT id, name, category FROM schools WHERE programme_id = ?1 ORDER BY id")?;
            let schools: Vec<(String, String, String)> =
                stmt.query_map([&programme], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            for (id, name, category) in schools {
                let experts = store::expert_team(c, &id)?;
                let count = experts.len();
                let short = match min {
                    None => false,
                    Some(Some(m)) => (count as f64) < m,
                    Some(None) => count == 0,
                };
                teams.push(TeamRow { id, name, category, experts: experts.join("、"), count, short });
            }
            let history = store::history(c, &programme)?
                .into_iter()
                .take(200)
                .map(|h| ChangeRow {
                    at: china_minute(h.at),
                    by: h.by,
                    rule: h.rule,
                    before: h.before.unwrap_or_else(|| "—".into()),
                    after: h.after.unwrap_or_else(|| "—".into()),
                })
                .collect();
            Ok((programme, name, book.document, preset, figures, edits, team_rule, teams, history))
        })
        .await?;
    let (programme, programme_name, document, preset, figures, edits, team_rule, teams, history) = data;
    let done = q_done(lang, q.done.as_deref());
    let title = lang.t("项目规则", "Programme rules");
    render(&ProgrammePage {
        chrome: Chrome::new(lang, title, Some(&user)),
        programme,
        programme_name,
        document,
        preset,
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        done,
        figures,
        edits,
        team_rule,
        teams,
        history,
    })
}

fn q_done(lang: Lang, done: Option<&str>) -> Option<String> {
    done.map(|d| match d {
        "rule" => lang.t("规则已保存。", "The rule was saved.").to_string(),
        "unchanged" => lang.t("规则未改变。", "The rule is unchanged.").to_string(),
        "term" => lang.t("学期已保存。", "The term was saved.").to_string(),
        "team" => lang.t("专家团队已更新。", "The expert team was updated.").to_string(),
        _ => String::new(),
    })
    .filter(|s| !s.is_empty())
}

#[derive(Debug, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    value: String,
}

/// `POST /admin/programme/rule`: replaces one rule with the JSON given (checked with the book).
pub async fn set_rule(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<RuleForm>) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let u = user.clone();
    let asked = form.programme.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    let value: serde_json::Value = match serde_json::from_str(&form.value) {
        Ok(v) => v,
        Err(e) => return Ok(refusal(lang, &user, &programme, &AppError::BadRequest(format!("rule {}: the value is not JSON: {e}", form.rule)))),
    };
    let (p, by, rule, now) = (programme.clone(), user.id.clone(), form.rule.clone(), state.clock.now());
    let role = user.role;
    match state.blocking(move |c| audited(c, &by, role, "programme.rule.set", &rule, &p, now, |c| store::set_rule(c, &p, &rule, value, &by, now))).await {
        Ok(n) => {
            tracing::info!(programme = %programme, rule = %form.rule, by = %user.id, changed = n, "programme rule saved from the web");
            Ok(Redirect::to(&back(&user, &programme, if n == 0 { "unchanged" } else { "rule" })).into_response())
        }
        Err(e @ AppError::Internal(_)) | Err(e @ AppError::StorageFull(_)) => Err(e),
        Err(e) => Ok(refusal(lang, &user, &programme, &e)),
    }
}

/// Runs a change of the rules recorded in the audit log, with pointers into the rules' own
/// history before and after.
#[allow(clippy::too_many_arguments)]
fn audited<T>(c: &Connection, by: &str, role: Role, action: &str, target: &str, programme: &str, now: i64, f: impl FnOnce(&Connection) -> AppResult<T>) -> AppResult<T> {
    let entry = crate::audit::Entry {
        actor: by,
        actor_role: Some(role.as_str()),
        action,
        target: Some(target),
        programme: Some(programme),
        before: crate::audit::rule_history_mark(c)?,
        ..Default::default()
    };
    crate::audit::recorded(c, now, entry, crate::audit::rule_history_mark, f)
}

#[derive(Debug, Deserialize)]
pub struct TermForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

/// `POST /admin/programme/term`: adds (or replaces by id) a semester.
pub async fn add_term(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<TermForm>) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let u = user.clone();
    let asked = form.programme.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    let id = if form.id.trim().is_empty() { format!("term-{}", form.start.trim()) } else { form.id.trim().to_string() };
    let term = Term { id, name: form.name.trim().into(), start: form.start.trim().into(), end: form.end.trim().into() };
    let (p, by, now) = (programme.clone(), user.id.clone(), state.clock.now());
    let role = user.role;
    match state.blocking(move |c| {
        let id = term.id.clone();
        audited(c, &by, role, "programme.term", &id, &p, now, |c| store::add_term(c, &p, term, &by, now))
    })
    .await
    {
        Ok(()) => Ok(Redirect::to(&back(&user, &programme, "term")).into_response()),
        Err(e @ AppError::Internal(_)) | Err(e @ AppError::StorageFull(_)) => Err(e),
        Err(e) => Ok(refusal(lang, &user, &programme, &e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    programme: Option<String>,
    #[serde(default)]
    school: String,
    #[serde(default)]
    user: String,
    /// `assign` or `unassign`.
    #[serde(default)]
    action: String,
    /// `school`: back to the school's page (`/admin/schools/{school}`) instead of this one.
    #[serde(default)]
    back: String,
}

/// `POST /admin/programme/team`: puts an expert on a school's team, or takes one off.
pub async fn team(State(state): State<AppState>, user: WebUser, lang: Lang, Form(form): Form<TeamForm>) -> AppResult<Response> {
    user.may_change_admin(PAGES)?;
    user.check_csrf(&form.csrf)?;
    let u = user.clone();
    let asked = form.programme.clone();
    let programme = state.blocking(move |c| programme_for(c, &u, asked.as_deref())).await?;
    let (p, by, now) = (programme.clone(), user.id.clone(), state.clock.now());
    let (school, expert, action) = (
        form.school.trim().to_string(),
        form.user.trim().to_string(),
        form.action.clone(),
    );
    let to_school = (form.back == "school").then(|| {
        format!(
            "/admin/schools/{}?programme={}&done=team",
            url(&school),
            url(&programme)
        )
    });
    let role = user.role;
    let outcome = state
        .blocking(move |c| {
            let of: Option<String> = c.query_row("SELECT programme_id FROM schools WHERE id = ?1", [&school], |r| r.get(0)).optional()?;
            if of.as_deref() != Some(p.as_str()) {
                return Err(AppError::NotFound(format!("school {school} is not in programme {p}")));
            }
            match action.as_str() {
                "assign" => audited(c, &by, role, "expert.assign", &school, &p, now, |c| store::assign_expert(c, &school, &expert, &by, now).map(|_| ())),
                "unassign" => audited(c, &by, role, "expert.unassign", &school, &p, now, |c| store::unassign_expert(c, &school, &expert, &by, now)),
                other => Err(AppError::BadRequest(format!("unknown action `{other}` (assign or unassign)"))),
            }
        })
        .await;
    match outcome {
        Ok(()) => Ok(
            Redirect::to(&to_school.unwrap_or_else(|| back(&user, &programme, "team")))
                .into_response(),
        ),
        Err(e @ AppError::Internal(_)) | Err(e @ AppError::StorageFull(_)) => Err(e),
        Err(e) => Ok(refusal(lang, &user, &programme, &e)),
    }
}
