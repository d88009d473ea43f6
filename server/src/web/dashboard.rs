//! The programme dashboard (`GET /`): the programme's schools grouped by its own categories,
//! each school's figures for the term, and a column per rule of the programme's rule book with
//! each school's figure against the rule's own target (the rule's source sentence on the
//! heading and in the legend). A flag is a failed check (`programme::compliance`); a rule the
//! programme does not state has no column and raises no flag. District-wide targets are shown
//! against the district, never against one school. `GET /checks/{school}/{rule}` lists the
//! records behind one figure.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use rusqlite::Connection;
use serde::Deserialize;

use super::auth::WebUser;
use super::page::{num, render, url, Chrome, Lang};
use super::reports::{term, Term};
use crate::error::{AppError, AppResult};
use crate::forms;
use crate::programme::compliance::{self, Check, State as CheckState, COUNTED};
use crate::programme::rules::{Rules, Source};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    /// A term of the programme (its id); default the term containing today.
    #[serde(default)]
    pub term: Option<String>,
}

/// A column of the rules table: one rule of the programme.
pub struct Column {
    pub heading: String,
    /// The rule's source, for the heading's title attribute.
    pub source: String,
}

/// One figure in a cell (a per-person rule has one per person).
pub struct Part {
    pub text: String,
    pub link: String,
    pub class: &'static str,
    pub title: String,
}

pub struct SchoolRow {
    pub name: String,
    pub link: String,
    pub project: String,
    pub records: String,
    pub records_link: String,
    pub mean_score: String,
    pub interest: String,
    pub participation: String,
    pub cells: Vec<Vec<Part>>,
    pub overdue: String,
    pub overdue_class: &'static str,
    pub overdue_link: String,
    pub to_review: String,
    pub to_review_link: String,
    pub returned: String,
    pub returned_link: String,
}

pub struct Group {
    pub label: String,
    pub rows: Vec<SchoolRow>,
}

pub struct Legend {
    pub heading: String,
    pub document: String,
    pub sentence: String,
}

pub struct TaskView {
    pub title: String,
    pub source: String,
    pub target: String,
    pub achieved: String,
    pub link: String,
    pub completion: String,
    pub elapsed: String,
    /// `green` / `amber` / `red`, or empty when the programme states no time-line rule.
    pub status: &'static str,
    pub status_label: &'static str,
}

pub struct TermChoice {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    chrome: Chrome<'a>,
    heading: String,
    period: String,
    note: Option<String>,
    terms: Vec<TermChoice>,
    schools: usize,
    records: String,
    to_review: String,
    flagged: usize,
    overdue: String,
    columns: Vec<Column>,
    groups: Vec<Group>,
    legend: Vec<Legend>,
    tasks: Vec<TaskView>,
    task_rule: Option<String>,
}

fn source_text(s: &Source) -> String {
    format!("{}：“{}”", s.document, s.sentence)
}

/// The key of the column a check belongs to.
fn column_of(c: &Check) -> String {
    if c.rule.starts_with("school_targets.") { "school_targets".into() } else { c.rule.clone() }
}

/// Counts per school from one grouped query (arguments numbered `?1`…).
fn per_school(conn: &Connection, sql: &str, args: &[String]) -> AppResult<HashMap<String, f64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0))))?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

/// `GET /`.
pub async fn dashboard(State(state): State<AppState>, user: WebUser, lang: Lang, Query(q): Query<DashboardQuery>) -> AppResult<Html<String>> {
    let today = state.clock.today();
    let html = state.blocking(move |conn| dashboard_page(conn, &user, lang, &today, q.term.as_deref())).await?;
    Ok(Html(html))
}

/// The whole dashboard page for the term containing `today`.
pub fn dashboard_html(conn: &Connection, user: &WebUser, lang: Lang, today: &str) -> AppResult<String> {
    dashboard_page(conn, user, lang, today, None)
}

/// The whole dashboard page for a chosen term (its id) or the term containing `today`.
pub fn dashboard_page(conn: &Connection, user: &WebUser, lang: Lang, today: &str, chosen: Option<&str>) -> AppResult<String> {
    let term = term(conn, user, today, chosen)?;
    let rules = crate::programme::load(conn, &term.programme)?;
    let data = build(conn, &rules, &term, lang, today)?;
    let title = lang.t("总览", "Dashboard");
    let page = DashboardPage {
        chrome: Chrome::new(lang, title, Some(user)),
        heading: format!("{} · {}", term.name, title),
        period: match &term.term {
            Some(t) => format!("{} {} – {}", t.name, t.start, t.end),
            None => format!("{} – {}", term.start, term.end),
        },
        note: term.term.is_none().then(|| {
            lang.t(
                "本项目未设学期：按学期计的配额无法判定，下列数字为本年度。",
                "The programme lists no terms: quotas per term cannot be judged; the figures below cover this calendar year.",
            )
            .to_string()
        }),
        terms: rules
            .terms
            .iter()
            .map(|t| TermChoice { id: t.id.clone(), name: t.name.clone(), selected: term.term.as_ref().is_some_and(|c| c.id == t.id) })
            .collect(),
        task_rule: rules.task_timeline.as_ref().map(|r| source_text(&r.source)),
        ..data
    };
    let html = render(&page)?;
    Ok(html.0)
}

fn build<'a>(conn: &Connection, rules: &Rules, term: &Term, lang: Lang, today: &str) -> AppResult<DashboardPage<'a>> {
    let programme = term.programme.as_str();
    let (ts, te) = (term.start.clone(), term.end.clone());
    let mut stmt = conn.prepare_cached("SELECT id, name, category, key_project FROM schools WHERE programme_id = ?1 ORDER BY id")?;
    let schools: Vec<(String, String, String, String)> =
        stmt.query_map([programme], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<_>>()?;
    let scope = "school_id IN (SELECT id FROM schools WHERE programme_id = ?1)";
    let base = vec![programme.to_string(), ts.clone(), te.clone()];
    // INDEXED BY: with ANALYZE statistics the planner prefers records_school_date and reads every
    // record of the term for its status; these covering indexes answer from the index alone
    // (13× less time over 200,000 records, docs/benchmarks.md).
    let records = per_school(
        conn,
        &format!("SELECT school_id, COUNT(*) FROM records INDEXED BY records_status_school
                  WHERE {scope} AND status IN {COUNTED} AND record_date BETWEEN ?2 AND ?3 GROUP BY school_id"),
        &base,
    )?;
    let lessons = forms::carriers(conn, programme, "lesson.total")?;
    let mut args = base.clone();
    let lesson_forms = lessons.form_condition("template_id", &mut args);
    let mean_score = per_school(
        conn,
        &format!(
            "SELECT school_id, AVG(score) FROM records INDEXED BY records_counted
             WHERE {scope} AND {lesson_forms} AND status IN {COUNTED} AND record_date BETWEEN ?2 AND ?3 GROUP BY school_id"
        ),
        &args,
    )?;
    let mut points = compliance::rating_points(conn, programme, &["lesson.interest", "lesson.participation"], &ts, &te)?.into_iter();
    let (interest, participation) = (points.next().unwrap_or_default(), points.next().unwrap_or_default());
    let overdue = per_school(
        conn,
        &format!("SELECT school_id, COUNT(*) FROM rectifications WHERE {scope} AND closed = 0 AND deadline < ?2 GROUP BY school_id"),
        &[programme.to_string(), today.to_string()],
    )?;
    let to_review = per_school(conn, &format!("SELECT school_id, COUNT(*) FROM records WHERE {scope} AND status = 'submitted' GROUP BY school_id"), &base[..1])?;
    let returned = per_school(conn, &format!("SELECT school_id, COUNT(*) FROM records WHERE {scope} AND status = 'returned' GROUP BY school_id"), &base[..1])?;

    // Every school's checks, and the columns: the rules in the rule book's order.
    let mut checks: Vec<Vec<Check>> = Vec::new();
    for (id, ..) in &schools {
        checks.push(compliance::compliance(conn, rules, id, term.term.as_ref(), today)?);
    }
    let mut keys: Vec<String> = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    let mut legend: Vec<Legend> = Vec::new();
    let heading = |c: &Check| -> String {
        if c.rule.starts_with("school_targets.") {
            return lang.t("本校目标（滞后项）", "School targets (behind)").to_string();
        }
        format!("{}（{}）", if lang.en { &c.label_en } else { &c.label_zh }, c.target_text())
    };
    for c in checks.iter().flatten() {
        let key = column_of(c);
        if !keys.contains(&key) {
            keys.push(key);
            let source = if c.rule.starts_with("school_targets.") { rules.task_timeline.as_ref().map(|r| r.source.clone()).unwrap_or(c.source.clone()) } else { c.source.clone() };
            columns.push(Column { heading: heading(c), source: source_text(&source) });
            legend.push(Legend { heading: heading(c), document: source.document.clone(), sentence: source.sentence.clone() });
        }
    }
    let mut flagged = 0;
    let mut rows: Vec<(String, SchoolRow)> = Vec::new();
    for ((id, name, cat, project), school_checks) in schools.iter().zip(&checks) {
        if school_checks.iter().any(Check::failed) {
            flagged += 1;
        }
        let cells = keys
            .iter()
            .map(|key| {
                let mine: Vec<&Check> = school_checks.iter().filter(|c| column_of(c) == *key).collect();
                if key == "school_targets" {
                    let behind = mine.iter().filter(|c| c.failed()).count();
                    return vec![Part {
                        text: format!("{behind} / {}", mine.len()),
                        link: format!("/schools/{}", url(id)),
                        class: if behind > 0 { "flag" } else { "ok" },
                        title: String::new(),
                    }];
                }
                mine.iter()
                    .map(|c| {
                        let figure = match c.figure {
                            Some(f) => format!("{}{}", num(Some(f)), c.unit),
                            None => "—".to_string(),
                        };
                        let text = match &c.person {
                            Some((_, who)) if mine.len() > 1 || who.starts_with('（') => format!("{who} {figure}"),
                            _ => figure,
                        };
                        Part {
                            text,
                            link: c.link.clone(),
                            class: match c.state {
                                CheckState::Met => "ok",
                                CheckState::Failed => "flag",
                                CheckState::NoData => "muted",
                            },
                            title: match (&c.period, c.state) {
                                (_, CheckState::NoData) => lang.t("无数据", "no data").to_string(),
                                (Some(p), _) => format!("{} {} – {}", p.name, p.start, p.end),
                                _ => String::new(),
                            },
                        }
                    })
                    .collect()
            })
            .collect();
        let sid = url(id);
        let o = overdue.get(id).copied().unwrap_or(0.0);
        let points = |m: &HashMap<String, (f64, i64)>| m.get(id).map(|(v, _)| num(Some(*v))).unwrap_or_else(|| "—".into());
        rows.push((
            cat.clone(),
            SchoolRow {
                name: name.clone(),
                link: format!("/schools/{sid}"),
                project: project.clone(),
                records: num(Some(records.get(id).copied().unwrap_or(0.0))),
                records_link: format!("/records?school={sid}&from={}&to={}", url(&ts), url(&te)),
                mean_score: num(mean_score.get(id).copied()),
                interest: points(&interest),
                participation: points(&participation),
                cells,
                overdue: num(Some(o)),
                overdue_class: if o > 0.0 { "flag" } else { "ok" },
                overdue_link: format!("/records?school={sid}&template=inspection-visit"),
                to_review: num(Some(to_review.get(id).copied().unwrap_or(0.0))),
                to_review_link: format!("/records?school={sid}&status=submitted"),
                returned: num(Some(returned.get(id).copied().unwrap_or(0.0))),
                returned_link: format!("/records?school={sid}&status=returned"),
            },
        ));
    }
    // Groups: the programme's categories in its order, then schools of no listed category.
    let mut groups: Vec<Group> = Vec::new();
    let names = rules.category_names();
    for c in &names {
        let mine: Vec<SchoolRow> = take(&mut rows, |cat| cat == *c);
        if !mine.is_empty() {
            groups.push(Group { label: (*c).to_string(), rows: mine });
        }
    }
    if !rows.is_empty() {
        let label = if names.is_empty() { lang.t("学校", "Schools") } else { lang.t("未分类", "No category") };
        groups.push(Group { label: label.to_string(), rows: rows.into_iter().map(|(_, r)| r).collect() });
    }

    let in_programme = |m: &HashMap<String, f64>| m.values().fold(0.0, |a, n| a + n);
    let tasks = compliance::tasks(conn, programme, rules, None, today)?
        .into_iter()
        .map(|t| TaskView {
            link: "/records?template=task-progress".to_string(),
            target: format!("{} {}", num(Some(t.target)), t.unit),
            achieved: num(Some(t.achieved)),
            completion: num(Some(t.completion)),
            elapsed: num(Some(t.elapsed)),
            status: t.status.unwrap_or(""),
            status_label: match t.status {
                Some("green") => lang.t("正常", "on track"),
                Some("amber") => lang.t("预警", "at risk"),
                Some(_) => lang.t("滞后", "behind"),
                None => "",
            },
            source: if t.source.is_empty() { String::new() } else { format!("{}：“{}”", rules.document, t.source) },
            title: t.title,
        })
        .collect();
    Ok(DashboardPage {
        chrome: Chrome::new(lang, "", None),
        heading: String::new(),
        period: String::new(),
        note: None,
        terms: Vec::new(),
        schools: schools.len(),
        records: num(Some(in_programme(&records))),
        to_review: num(Some(in_programme(&to_review))),
        flagged,
        overdue: num(Some(in_programme(&overdue))),
        columns,
        groups,
        legend,
        tasks,
        task_rule: None,
    })
}

fn take(rows: &mut Vec<(String, SchoolRow)>, keep: impl Fn(&str) -> bool) -> Vec<SchoolRow> {
    let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(rows).into_iter().partition(|(c, _)| keep(c));
    *rows = rest;
    mine.into_iter().map(|(_, r)| r).collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct ChecksQuery {
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub term: Option<String>,
}

pub struct BehindRow {
    pub link: String,
    pub form: String,
    pub date: String,
    pub author: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "checks.html")]
struct ChecksPage<'a> {
    chrome: Chrome<'a>,
    heading: String,
    figure: String,
    source: String,
    counted: String,
    rows: Vec<BehindRow>,
    team: bool,
}

/// `GET /checks/{school}/{rule}`: the records behind one check's figure (for the expert team,
/// its members).
pub async fn checks(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path((school, rule)): Path<(String, String)>,
    Query(q): Query<ChecksQuery>,
) -> AppResult<Html<String>> {
    let today = state.clock.today();
    state
        .blocking(move |conn| {
            let programme = forms::programme_of_school(conn, &school)?
                .filter(|p| user.programme.as_ref().is_none_or(|u| u == p))
                .ok_or_else(|| AppError::NotFound(format!("school {school} does not exist")))?;
            let rules = crate::programme::load(conn, &programme)?;
            let t = match &q.term {
                Some(id) => Some(rules.terms.iter().find(|t| t.id == *id).ok_or_else(|| AppError::NotFound(format!("term {id} does not exist")))?),
                None => compliance::current_term(&rules, &today),
            };
            let all = compliance::compliance(conn, &rules, &school, t, &today)?;
            let check = all
                .iter()
                .find(|c| c.rule == rule && c.person.as_ref().map(|p| p.0.as_str()) == q.person.as_deref().or(c.person.as_ref().map(|p| p.0.as_str())))
                .ok_or_else(|| AppError::NotFound(format!("rule {rule} is not a rule of programme {programme}")))?;
            let behind = compliance::behind(conn, &rules, &school, &rule, q.person.as_deref(), t)?;
            let title = lang.t("计数依据", "Records behind a figure");
            let who = check.person.as_ref().map(|(_, n)| format!(" · {n}")).unwrap_or_default();
            let page = ChecksPage {
                chrome: Chrome::new(lang, title, Some(&user)),
                heading: format!("{}{who}", if lang.en { &check.label_en } else { &check.label_zh }),
                figure: format!(
                    "{} {} {}",
                    check.figure.map(|f| format!("{}{}", num(Some(f)), check.unit)).unwrap_or_else(|| "—".into()),
                    lang.t("要求", "required"),
                    check.target_text()
                ),
                source: source_text(&check.source),
                counted: match &check.period {
                    Some(p) => format!(
                        "{} {} – {} · {}",
                        p.name,
                        p.start,
                        p.end,
                        lang.t("只计已提交和已审核的记录", "submitted and approved records only")
                    ),
                    None => lang.t("只计已提交和已审核的记录", "submitted and approved records only").to_string(),
                },
                team: rule == "expert_team",
                rows: behind
                    .into_iter()
                    .map(|b| BehindRow {
                        link: if b.id.is_empty() { String::new() } else { format!("/records/{}", url(&b.id)) },
                        form: b.template,
                        date: b.date,
                        author: b.author,
                        status: b.status,
                    })
                    .collect(),
            };
            render(&page)
        })
        .await
}
