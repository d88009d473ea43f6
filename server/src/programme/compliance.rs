//! Counting a supervisor can defend: each rule of a programme's rule book checked against the
//! projection for one school over one period, with the figure, the target, the sentence of the
//! programme document the rule comes from, and a link to exactly the records behind the figure.
//!
//! What is counted, everywhere (the dashboard, the school report, the records behind a check):
//! - only submitted and approved records (drafts and records returned for correction do not);
//! - lessons per observer as a person (each account of the quota's role at the school on its
//!   own, never summed over accounts), by the lesson's purpose when the rule names one, at the
//!   observer's own school when the rule says so, over the programme's term (or school year);
//! - the expert team as assigned (the `expert_team` table), and the experts' activity apart,
//!   only where the programme states an activity rule;
//! - staffing from the latest counted record of the form the rule names;
//! - a school's own targets against the time line only where the programme states a band.
//!
//! A rule the programme does not state gives no check and no flag.

use std::collections::HashMap;

use rusqlite::{params_from_iter, Connection, OptionalExtension};
use shidao_core::template::Role;

use super::rules::{Per, Rules, Source, Term};
use crate::error::AppResult;
use crate::forms;

/// The statuses that count: a record a person has handed in (submitted) or a supervisor has
/// approved.
pub const COUNTED: &str = "('submitted', 'approved')";

/// The period a count covers: a term of the programme, or the school year it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub name: String,
    pub start: String,
    pub end: String,
}

impl Period {
    fn of_term(t: &Term) -> Period {
        Period { name: t.name.clone(), start: t.start.clone(), end: t.end.clone() }
    }
}

/// The term of the programme a date falls in; else the latest term that has begun; else the
/// first. None when the programme lists no terms.
pub fn current_term<'a>(rules: &'a Rules, today: &str) -> Option<&'a Term> {
    if let Some(t) = rules.term_of(today) {
        return Some(t);
    }
    let mut sorted: Vec<&Term> = rules.terms.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    sorted.iter().rev().find(|t| t.start.as_str() <= today).or(sorted.first()).copied()
}

/// The school year of a term: the term and its partner, taking the programme's terms in date
/// order two by two (first and second term of a year, as the admin enters them).
pub fn school_year(rules: &Rules, term: &Term) -> Period {
    let mut sorted: Vec<&Term> = rules.terms.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    let Some(i) = sorted.iter().position(|t| t.id == term.id) else { return Period::of_term(term) };
    let pair = &sorted[i - i % 2..(i - i % 2 + 2).min(sorted.len())];
    Period {
        name: pair.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(" + "),
        start: pair[0].start.clone(),
        end: pair[pair.len() - 1].end.clone(),
    }
}

fn period_for(rules: &Rules, term: &Term, per: Per) -> Period {
    match per {
        Per::Term => Period::of_term(term),
        Per::Year => school_year(rules, term),
    }
}

/// Whether a check is met, failed, or cannot be judged (no figure recorded, no term set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Met,
    Failed,
    NoData,
}

/// One rule checked for one school (or one person of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Which rule: `lesson_quotas.{id}`, `expert_team`, `expert_activity`, `staffing.{id}`,
    /// `school_targets.{task id}`.
    pub rule: String,
    pub label_zh: String,
    pub label_en: String,
    /// The person a per-person rule is counted for: id and name.
    pub person: Option<(String, String)>,
    /// The figure; None when nothing records it.
    pub figure: Option<f64>,
    /// The target (None: the rule names no number, e.g. 鱼峰 "配备指导专家": met when not zero).
    pub target: Option<f64>,
    /// `%` for a share; empty for a count.
    pub unit: &'static str,
    pub state: State,
    pub met: bool,
    /// What the period was, for a counted figure.
    pub period: Option<Period>,
    pub source: Source,
    /// The page listing the records (or the team) behind the figure.
    pub link: String,
}

impl Check {
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// The target as the column heading reads it: `≥30`, `≥25%`, `≥1`.
    pub fn target_text(&self) -> String {
        match self.target {
            Some(t) => format!("≥{}{}", shidao_core::expr::fmt_num(t), self.unit),
            None => "≥1".to_string(),
        }
    }
}

fn judged(figure: Option<f64>, target: Option<f64>) -> State {
    match figure {
        None => State::NoData,
        Some(f) if f + 1e-9 >= target.unwrap_or(1.0) => State::Met,
        Some(_) => State::Failed,
    }
}

/// The link to the records (or the team) behind one check.
pub fn link(school: &str, rule: &str, person: Option<&str>, term: Option<&Term>) -> String {
    let u = crate::web::page::url;
    let mut l = format!("/checks/{}/{}", u(school), u(rule));
    let mut sep = '?';
    if let Some(p) = person {
        l.push_str(&format!("{sep}person={}", u(p)));
        sep = '&';
    }
    if let Some(t) = term {
        l.push_str(&format!("{sep}term={}", u(&t.id)));
    }
    l
}

/// The SQL condition and arguments selecting the records a check counts. `args` holds the
/// school at `?1`; the condition is over `records r`.
pub struct Counted {
    pub sql: String,
    pub args: Vec<String>,
}

/// The lessons a quota counts for one person, over `period`.
fn quota_condition(conn: &Connection, programme: &str, q: &super::rules::LessonQuota, school: &str, person: &str, period: &Period) -> AppResult<Counted> {
    let lessons = forms::carriers(conn, programme, "lesson.total")?;
    let mut args = vec![school.to_string(), person.to_string(), period.start.clone(), period.end.clone()];
    let forms_cond = lessons.form_condition("r.template_id", &mut args);
    let mut sql = format!("r.created_by = ?2 AND {forms_cond} AND r.status IN {COUNTED} AND r.record_date BETWEEN ?3 AND ?4");
    if q.own_school {
        // `+`: the person's own index (records_author) answers this, not the school's.
        sql.push_str(" AND +r.school_id = ?1");
    } else {
        sql.push_str(&format!(" AND +r.school_id IN (SELECT id FROM schools WHERE programme_id = ?{})", {
            args.push(programme.to_string());
            args.len()
        }));
    }
    if let Some(purpose) = &q.purpose {
        let carriers = forms::carriers(conn, programme, "lesson.purpose")?;
        let cond = carriers.condition("r.template_id", "a.field", &mut args);
        args.push(purpose.clone());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM answers a WHERE a.record_id = r.id AND a.row_id = '' AND {cond} AND json_extract(a.value, '$.value') = ?{})",
            args.len()
        ));
    }
    Ok(Counted { sql, args })
}

/// The guidance logs an activity rule counts at a school over `period`.
fn activity_condition(conn: &Connection, programme: &str, school: &str, period: &Period) -> AppResult<Counted> {
    let guidance = forms::carriers(conn, programme, "guidance.hours")?;
    let mut args = vec![school.to_string(), period.start.clone(), period.end.clone()];
    let cond = guidance.form_condition("r.template_id", &mut args);
    Ok(Counted {
        sql: format!(
            "r.created_by IN (SELECT user_id FROM expert_team WHERE school_id = ?1) AND {cond} AND r.status IN {COUNTED}
             AND r.record_date BETWEEN ?2 AND ?3 AND +r.school_id = ?1"
        ),
        args,
    })
}

/// The record a staffing rule reads: the school's latest counted record of the rule's form.
fn staffing_condition(school: &str, form: &str) -> Counted {
    Counted { sql: format!("r.school_id = ?1 AND r.template_id = ?2 AND r.status IN {COUNTED}"), args: vec![school.to_string(), form.to_string()] }
}

fn count(conn: &Connection, c: &Counted) -> AppResult<f64> {
    let n: i64 = conn.prepare_cached(&format!("SELECT COUNT(*) FROM records r WHERE {}", c.sql))?.query_row(params_from_iter(&c.args), |r| r.get(0))?;
    Ok(n as f64)
}

/// The people of `role` at a school (assigned to it, active), by id: id and name.
fn people(conn: &Connection, school: &str, role: &str) -> AppResult<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.name FROM users u JOIN assignments a ON a.user_id = u.id
         WHERE a.school_id = ?1 AND u.role = ?2 AND u.active = 1 ORDER BY u.id",
    )?;
    let rows = stmt.query_map([school, role], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A role's names in Chinese and English (the stored name when it is no role).
fn role_label(role: &str) -> (&str, &str) {
    match Role::parse(role) {
        Some(r) => (r.name_zh(), r.name_en()),
        None => (role, role),
    }
}

/// Which value of `lesson.purpose` a quota names, as the lesson form labels it (校长听评课).
fn purpose_label(conn: &Connection, programme: &str, purpose: &str) -> AppResult<String> {
    let carriers = forms::carriers(conn, programme, "lesson.purpose")?;
    for (form, field) in &carriers.0 {
        let Some(v) = forms::newest_version(conn, programme, form)? else { continue };
        if let Some(t) = forms::template(conn, programme, form, v)?
            && let Some(o) = t.field(field).and_then(|f| f.option(purpose))
        {
            return Ok(o.label.zh.clone());
        }
    }
    Ok(purpose.to_string())
}

/// The figure a staffing rule reads from the school's latest counted record of its form: the
/// field's answer or computed value. None when no such record holds it.
fn staffing_figure(conn: &Connection, school: &str, form: &str, field: &str) -> AppResult<Option<f64>> {
    let c = staffing_condition(school, form);
    let latest: Option<String> = conn
        .prepare_cached(&format!("SELECT r.id FROM records r WHERE {} ORDER BY r.record_date DESC, r.updated_at DESC LIMIT 1", c.sql))?
        .query_row(params_from_iter(&c.args), |r| r.get(0))
        .optional()?;
    let Some(id) = latest else { return Ok(None) };
    let answered: Option<Option<f64>> = conn
        .prepare_cached("SELECT number FROM answers WHERE record_id = ?1 AND field = ?2 AND row_id = ''")?
        .query_row([&id, field], |r| r.get(0))
        .optional()?;
    if let Some(Some(n)) = answered {
        return Ok(Some(n));
    }
    Ok(conn
        .prepare_cached("SELECT number FROM computed WHERE record_id = ?1 AND name = ?2 AND row_id = ''")?
        .query_row([&id, field], |r| r.get::<_, Option<f64>>(0))
        .optional()?
        .flatten())
}

/// Every rule of the programme checked for one school over `term` (the term the quotas count
/// in; None when the programme lists no terms: the quotas then cannot be judged).
pub fn compliance(conn: &Connection, rules: &Rules, school: &str, term: Option<&Term>, today: &str) -> AppResult<Vec<Check>> {
    let programme = forms::programme_of_school(conn, school)?.unwrap_or_default();
    let mut out = Vec::new();
    for q in &rules.lesson_quotas {
        let (role_zh, role_en) = role_label(&q.role);
        let purpose = match &q.purpose {
            Some(p) => Some(purpose_label(conn, &programme, p)?),
            None => None,
        };
        let per = match q.per {
            Per::Term => ("每学期", "a term"),
            Per::Year => ("每学年", "a year"),
        };
        let (label_zh, label_en) = match &purpose {
            Some(p) => (format!("{role_zh}{p}（{}）", per.0), format!("{role_en}: lessons observed as {p} ({})", per.1)),
            None => (format!("{role_zh}听评课（{}）", per.0), format!("{role_en}: lessons observed ({})", per.1)),
        };
        let rule = format!("lesson_quotas.{}", q.id);
        let mut persons = people(conn, school, &q.role)?;
        if persons.is_empty() {
            // No account of the role at the school: nobody can be counted; the supervisor sees it.
            persons.push((String::new(), format!("（无{role_zh}账号）")));
        }
        for (id, name) in persons {
            let (figure, period) = match term {
                Some(t) => {
                    let period = period_for(rules, t, q.per);
                    let figure = if id.is_empty() { 0.0 } else { count(conn, &quota_condition(conn, &programme, q, school, &id, &period)?)? };
                    (Some(figure), Some(period))
                }
                None => (None, None),
            };
            let state = judged(figure, Some(q.min));
            out.push(Check {
                link: link(school, &rule, Some(&id).filter(|i| !i.is_empty()).map(|s| s.as_str()), term),
                rule: rule.clone(),
                label_zh: label_zh.clone(),
                label_en: label_en.clone(),
                person: Some((id, name)),
                figure,
                target: Some(q.min),
                unit: "",
                state,
                met: state == State::Met,
                period,
                source: q.source.clone(),
            });
        }
    }
    if let Some(team) = &rules.expert_team {
        let n = super::store::expert_team(conn, school)?.len() as f64;
        let state = judged(Some(n), team.min);
        out.push(Check {
            rule: "expert_team".into(),
            label_zh: "配备指导专家".into(),
            label_en: "Experts assigned".into(),
            person: None,
            figure: Some(n),
            target: team.min,
            unit: "",
            state,
            met: state == State::Met,
            period: None,
            source: team.source.clone(),
            link: link(school, "expert_team", None, None),
        });
    }
    if let Some(a) = &rules.expert_activity {
        let (figure, period) = match term {
            Some(t) => {
                let period = period_for(rules, t, a.per);
                (Some(count(conn, &activity_condition(conn, &programme, school, &period)?)?), Some(period))
            }
            None => (None, None),
        };
        let state = judged(figure, Some(a.min));
        out.push(Check {
            rule: "expert_activity".into(),
            label_zh: "专家指导次数".into(),
            label_en: "Expert guidance visits".into(),
            person: None,
            figure,
            target: Some(a.min),
            unit: "",
            state,
            met: state == State::Met,
            period,
            source: a.source.clone(),
            link: link(school, "expert_activity", None, term),
        });
    }
    for s in &rules.staffing {
        let figure = match (&s.form, &s.field) {
            (Some(form), Some(field)) => staffing_figure(conn, school, form, field)?,
            _ => None,
        };
        let (target, unit) = match (s.min_count, s.min_share) {
            (_, Some(p)) => (Some(p), "%"),
            (n, None) => (n, ""),
        };
        let state = judged(figure, target);
        let rule = format!("staffing.{}", s.id);
        out.push(Check {
            label_zh: s.title.clone(),
            label_en: s.title.clone(),
            person: None,
            figure,
            target,
            unit,
            state,
            met: state == State::Met,
            period: None,
            source: s.source.clone(),
            link: link(school, &rule, None, None),
            rule,
        });
    }
    // The school's own targets against their time line, only where the programme states a band.
    if let Some(timeline) = &rules.task_timeline {
        for t in tasks(conn, &programme, rules, Some(school), today)? {
            let state = match t.status {
                Some("red") => State::Failed,
                _ => State::Met,
            };
            out.push(Check {
                rule: format!("school_targets.{}", t.id),
                label_zh: t.title.clone(),
                label_en: t.title.clone(),
                person: None,
                figure: Some(t.completion),
                target: Some(t.elapsed - timeline.warning_points),
                unit: "%",
                state,
                met: state == State::Met,
                period: None,
                source: if t.source.is_empty() { timeline.source.clone() } else { Source { document: rules.document.clone(), sentence: t.source.clone() } },
                link: format!("/records?template=task-progress&school={}", crate::web::page::url(school)),
            });
        }
    }
    Ok(out)
}

/// A record behind a check, as its page lists it.
#[derive(Debug, Clone)]
pub struct Behind {
    pub id: String,
    pub template: String,
    pub date: String,
    pub author: String,
    pub status: String,
}

/// The records behind one check (`rule` as in [`Check::rule`]), or the members of the expert
/// team (as ids in `author`, with no record id).
pub fn behind(conn: &Connection, rules: &Rules, school: &str, rule: &str, person: Option<&str>, term: Option<&Term>) -> AppResult<Vec<Behind>> {
    let programme = forms::programme_of_school(conn, school)?.unwrap_or_default();
    let listed = |c: Counted, extra: &str| -> AppResult<Vec<Behind>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT r.id, r.template_id, COALESCE(r.record_date, ''), COALESCE(u.name, r.created_by), r.status
             FROM records r LEFT JOIN users u ON u.id = r.created_by WHERE {} ORDER BY r.record_date DESC, r.id {extra}",
            c.sql
        ))?;
        let rows = stmt.query_map(params_from_iter(&c.args), |r| {
            Ok(Behind { id: r.get(0)?, template: r.get(1)?, date: r.get(2)?, author: r.get(3)?, status: r.get(4)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    };
    if let Some(id) = rule.strip_prefix("lesson_quotas.") {
        let (Some(q), Some(t), Some(p)) = (rules.lesson_quotas.iter().find(|q| q.id == id), term, person) else { return Ok(Vec::new()) };
        return listed(quota_condition(conn, &programme, q, school, p, &period_for(rules, t, q.per))?, "");
    }
    if rule == "expert_activity" {
        let (Some(a), Some(t)) = (&rules.expert_activity, term) else { return Ok(Vec::new()) };
        return listed(activity_condition(conn, &programme, school, &period_for(rules, t, a.per))?, "");
    }
    if let Some(id) = rule.strip_prefix("staffing.") {
        let Some(form) = rules.staffing.iter().find(|s| s.id == id).and_then(|s| s.form.clone()) else { return Ok(Vec::new()) };
        return listed(staffing_condition(school, &form), "LIMIT 1");
    }
    if rule == "expert_team" {
        let mut stmt = conn.prepare_cached(
            "SELECT t.user_id, COALESCE(u.name, t.user_id) FROM expert_team t LEFT JOIN users u ON u.id = t.user_id WHERE t.school_id = ?1 ORDER BY t.user_id",
        )?;
        let rows = stmt.query_map([school], |r| {
            Ok(Behind { id: String::new(), template: r.get(0)?, date: String::new(), author: r.get(1)?, status: String::new() })
        })?;
        return Ok(rows.collect::<rusqlite::Result<_>>()?);
    }
    Ok(Vec::new())
}

/// A programme task against its target and time line.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub target: f64,
    pub unit: String,
    pub achieved: f64,
    pub completion: f64,
    pub elapsed: f64,
    /// `green` / `amber` / `red` under the programme's time-line rule; None when the programme
    /// states no band (completion and time are shown, nothing is graded).
    pub status: Option<&'static str>,
    /// The document's sentence the task comes from ('' when an admin entered it).
    pub source: String,
    pub school: Option<String>,
}

/// The programme's district-wide targets (`school` None: tasks with no school, achieved summed
/// over the programme's schools) or one school's own targets (tasks of that school, achieved by
/// its records). Only submitted and approved task-progress records count.
pub fn tasks(conn: &Connection, programme: &str, rules: &Rules, school: Option<&str>, today: &str) -> AppResult<Vec<TaskRow>> {
    let mut achieved: HashMap<String, f64> = HashMap::new();
    {
        // One school's progress reads its own rows (`task_progress_school`); the district's, every
        // school of the programme.
        let scope = match school {
            Some(_) => "p.school_id = ?2 AND ?1 = ?1",
            None => "p.school_id IN (SELECT id FROM schools WHERE programme_id = ?1) AND ?2 IS NULL",
        };
        let sql = format!(
            "SELECT p.task_ref, SUM(p.achieved) FROM task_progress p JOIN records r ON r.id = p.record_id
             WHERE {scope} AND r.status IN {COUNTED} GROUP BY p.task_ref"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params![programme, school])?;
        while let Some(row) = rows.next()? {
            if let Some(sum) = row.get::<_, Option<f64>>(1)? {
                achieved.insert(row.get(0)?, sum);
            }
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, title, target, unit, start_date, due_date, source, school_id FROM tasks
         WHERE programme_id = ?1 AND ((?2 IS NULL AND school_id IS NULL) OR school_id = ?2) ORDER BY id",
    )?;
    let today_n = shidao_core::date::parse_date(today).unwrap_or(0);
    type Row = (String, String, f64, String, String, String, String, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map(rusqlite::params![programme, school], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (id, title, target, unit, start, due, source, school) in rows {
        let (s, d) = (shidao_core::date::parse_date(&start).unwrap_or(0), shidao_core::date::parse_date(&due).unwrap_or(1));
        let elapsed = (((today_n - s) as f64) / ((d - s).max(1) as f64)).clamp(0.0, 1.0) * 100.0;
        let got = achieved.get(&id).copied().unwrap_or(0.0);
        let completion = (got / target * 100.0).min(999.0);
        let status = rules.task_timeline.as_ref().map(|r| {
            if completion >= elapsed {
                "green"
            } else if completion >= elapsed - r.warning_points {
                "amber"
            } else {
                "red"
            }
        });
        out.push(TaskRow { id, title, target, unit, achieved: got, completion, elapsed, status, source, school });
    }
    Ok(out)
}

/// Per meaning and school, the mean points (0–100) and the number of the counted ratings carrying
/// each of `meanings` (`lesson.interest`, `lesson.participation`) over a period, from the ratings
/// projection (each rating through its own form version's scale, points where it has them).
pub fn rating_points(conn: &Connection, programme: &str, meanings: &[&str], start: &str, end: &str) -> AppResult<Vec<HashMap<String, (f64, i64)>>> {
    let mut out: Vec<HashMap<String, (f64, i64)>> = vec![HashMap::new(); meanings.len()];
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT school_id, AVG(points), COUNT(*) FROM ratings INDEXED BY ratings_mean
         WHERE meaning = ?1 AND status IN {COUNTED} AND record_date BETWEEN ?2 AND ?3
           AND school_id IN (SELECT id FROM schools WHERE programme_id = ?4)
         GROUP BY school_id"
    ))?;
    for (i, m) in meanings.iter().enumerate() {
        let rows = stmt.query_map(rusqlite::params![m, start, end, programme], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?;
        out[i] = rows.collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}
