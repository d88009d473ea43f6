//! The programme dashboard, computed from the projection
//! (answers, computed values, scores, and the rectification items and task progress projected
//! onto their own tables) without loading documents. Every figure links to the records behind it.
//! The school report lives in `report/`; it reads `term` and `tasks` from here.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Html;
use rusqlite::{params, Connection, OptionalExtension};

use super::auth::WebUser;
use super::page::{esc, layout, num, url, Lang};
use crate::error::{AppError, AppResult};
use crate::forms::{self, Carriers};
use crate::AppState;

/// The term a report covers.
#[derive(Debug, Clone)]
pub struct Term {
    pub programme: String,
    pub name: String,
    pub start: String,
    pub end: String,
}

pub fn term(conn: &Connection, user: &WebUser, today: &str) -> AppResult<Term> {
    let row: Option<(String, String, Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT id, name, term_start, term_end FROM programmes WHERE ?1 IS NULL OR id = ?1 ORDER BY id LIMIT 1",
            [&user.programme],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (programme, name, start, end) = row.ok_or_else(|| AppError::NotFound("no programme yet".into()))?;
    let year = &today[..4];
    Ok(Term {
        programme,
        name,
        start: start.unwrap_or_else(|| format!("{year}-01-01")),
        end: end.unwrap_or_else(|| format!("{year}-12-31")),
    })
}

/// Counts per school from one grouped query.
fn per_school(conn: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> AppResult<HashMap<String, f64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0))))?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

/// Counts per school from one grouped query whose arguments are all text (numbered `?1`…).
fn per_school_args(conn: &Connection, sql: &str, args: &[String]) -> AppResult<HashMap<String, f64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0))))?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

/// The programme's forms by what they are to the reports (declared by their `meanings`).
struct Kinds {
    lessons: Carriers,
    guidance: Carriers,
}

fn kinds(conn: &Connection, programme: &str) -> AppResult<Kinds> {
    Ok(Kinds {
        lessons: forms::carriers(conn, programme, "lesson.total")?,
        guidance: forms::carriers(conn, programme, "guidance.hours")?,
    })
}

const PRINCIPAL_QUOTA: f64 = 30.0;
const EXPERTS_PER_SCHOOL: f64 = 3.0;

pub struct TaskRow {
    pub title: String,
    pub target: f64,
    pub unit: String,
    pub achieved: f64,
    pub completion: f64,
    pub elapsed: f64,
    pub status: &'static str,
}

/// Programme tasks (or one school's) against their targets, from task-progress records.
pub fn tasks(conn: &Connection, programme: &str, school: Option<&str>, today: &str) -> AppResult<Vec<TaskRow>> {
    // What each task has achieved, summed per task from the projected task progress of the
    // programme's schools (or the one school).
    let mut achieved: HashMap<String, f64> = HashMap::new();
    {
        let mut stmt = match school {
            None => conn.prepare_cached(
                "SELECT p.task_ref, SUM(p.achieved) FROM schools s JOIN task_progress p ON p.school_id = s.id
                 WHERE s.programme_id = ?1 GROUP BY p.task_ref",
            )?,
            Some(_) => conn.prepare_cached("SELECT task_ref, SUM(achieved) FROM task_progress WHERE school_id = ?1 GROUP BY task_ref")?,
        };
        let mut rows = match school {
            None => stmt.query([programme])?,
            Some(s) => stmt.query([s])?,
        };
        while let Some(row) = rows.next()? {
            if let Some(sum) = row.get::<_, Option<f64>>(1)? {
                achieved.insert(row.get(0)?, sum);
            }
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.title, t.target, t.unit, t.start_date, t.due_date
         FROM tasks t WHERE t.programme_id = ?1 AND (t.school_id IS NULL OR ?2 IS NULL OR t.school_id = ?2) ORDER BY t.id",
    )?;
    let today_n = shidao_core::expr::parse_date(today).unwrap_or(0);
    let rows = stmt.query_map(params![programme, school], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, title, target, unit, start, due) = row?;
        let (s, d) = (shidao_core::expr::parse_date(&start).unwrap_or(0), shidao_core::expr::parse_date(&due).unwrap_or(1));
        let elapsed = (((today_n - s) as f64) / ((d - s).max(1) as f64)).clamp(0.0, 1.0) * 100.0;
        let achieved = achieved.get(&id).copied().unwrap_or(0.0);
        let completion = (achieved / target * 100.0).min(999.0);
        let status = if completion >= elapsed { "green" } else if completion >= elapsed - 15.0 { "amber" } else { "red" };
        out.push(TaskRow { title, target, unit, achieved, completion, elapsed, status });
    }
    Ok(out)
}

fn badge(lang: Lang, status: &str) -> String {
    let label = match status {
        "green" => lang.t("正常", "on track"),
        "amber" => lang.t("预警", "at risk"),
        _ => lang.t("滞后", "behind"),
    };
    format!(r#"<span class="badge {status}">{label}</span>"#)
}

fn tasks_table(lang: Lang, rows: &[TaskRow], school: Option<&str>) -> String {
    let mut h = format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("任务", "Task"),
        lang.t("目标", "Target"),
        lang.t("已完成", "Achieved"),
        lang.t("完成率", "Completion"),
        lang.t("时间进度", "Time elapsed"),
        lang.t("状态", "Status")
    );
    for t in rows {
        let link = format!("/records?template=task-progress{}", school.map(|s| format!("&school={}", url(s))).unwrap_or_default());
        h.push_str(&format!(
            r#"<tr><td>{}</td><td class="n">{} {}</td><td class="n"><a href="{}">{}</a></td><td class="n">{}%</td><td class="n">{}%</td><td>{}</td></tr>"#,
            esc(&t.title),
            num(Some(t.target)),
            esc(&t.unit),
            esc(&link),
            num(Some(t.achieved)),
            num(Some(t.completion)),
            num(Some(t.elapsed)),
            badge(lang, t.status)
        ));
    }
    h.push_str("</table>");
    h
}

/// `GET /`: schools by category with their figures and the programme's compliance flags.
pub async fn dashboard(State(state): State<AppState>, user: WebUser, lang: Lang) -> AppResult<Html<String>> {
    let today = state.clock.today();
    let u = user.clone();
    let body = state.blocking(move |conn| dashboard_html(conn, &u, lang, &today)).await?;
    Ok(layout(lang, lang.t("总览", "Dashboard"), Some(&user), &body))
}

/// The dashboard's content.
pub fn dashboard_html(conn: &Connection, u: &WebUser, lang: Lang, today: &str) -> AppResult<String> {
    let term = term(conn, u, today)?;
    let month_start = format!("{}-01", &today[..7]);
    let (ts, te) = (term.start.as_str(), term.end.as_str());
    let records = per_school(conn, "SELECT school_id, COUNT(*) FROM records WHERE record_date BETWEEN ?1 AND ?2 GROUP BY school_id", &[&ts, &te])?;
    let kinds = kinds(conn, &term.programme)?;
    let mut args = vec![ts.to_string(), te.to_string()];
    let lesson_forms = kinds.lessons.form_condition("r.template_id", &mut args);
    let principal = per_school_args(
        conn,
        &format!(
            "SELECT r.school_id, COUNT(*) FROM records r JOIN users u ON u.id = r.created_by
             WHERE {lesson_forms} AND u.role = 'principal' AND r.record_date BETWEEN ?1 AND ?2 GROUP BY r.school_id"
        ),
        &args,
    )?;
    let mut args = vec![month_start.clone()];
    let guidance_forms = kinds.guidance.form_condition("r.template_id", &mut args);
    let experts = per_school_args(
        conn,
        &format!(
            "SELECT r.school_id, COUNT(DISTINCT r.created_by) FROM records r JOIN users u ON u.id = r.created_by
             WHERE {guidance_forms} AND u.role = 'expert' AND r.record_date >= ?1 GROUP BY r.school_id"
        ),
        &args,
    )?;
    let overdue = per_school(
        conn,
        "SELECT school_id, COUNT(*) FROM rectifications WHERE closed = 0 AND deadline < ?1 GROUP BY school_id",
        &[&today.to_string()],
    )?;
    // A lesson's total (the form's `lesson.total`) is kept on the record.
    let mut args = vec![ts.to_string(), te.to_string()];
    let lesson_forms = kinds.lessons.form_condition("template_id", &mut args);
    let mean_score = per_school_args(
        conn,
        &format!("SELECT school_id, AVG(score) FROM records WHERE {lesson_forms} AND record_date BETWEEN ?1 AND ?2 GROUP BY school_id"),
        &args,
    )?;
    let to_review = per_school(conn, "SELECT school_id, COUNT(*) FROM records WHERE status = 'submitted' GROUP BY school_id", &[])?;
    let returned = per_school(conn, "SELECT school_id, COUNT(*) FROM records WHERE status = 'returned' GROUP BY school_id", &[])?;

    let mut h = format!(
        "<h1>{} · {}</h1><p class=\"muted\">{} {} – {} · {} {}</p>",
        esc(&term.name),
        lang.t("总览", "Dashboard"),
        lang.t("本学期", "Term"),
        esc(ts),
        esc(te),
        lang.t("今天", "today"),
        esc(today)
    );
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, category, key_project FROM schools WHERE programme_id = ?1
         ORDER BY CASE category WHEN '示范' THEN 0 WHEN '优质' THEN 1 WHEN '潜质' THEN 2 ELSE 3 END, id",
    )?;
    let schools: Vec<(String, String, String, String)> = stmt
        .query_map([&term.programme], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // The cards count the programme's schools only (the counts above are over every school);
    // folded from 0.0, as an empty `sum` of floats is -0 and would print "-0".
    let in_programme = |counts: &HashMap<String, f64>| schools.iter().filter_map(|(id, ..)| counts.get(id)).fold(0.0, |a, n| a + n);
    let flags_total = schools
        .iter()
        .filter(|(id, ..)| {
            principal.get(id).copied().unwrap_or(0.0) < PRINCIPAL_QUOTA
                || experts.get(id).copied().unwrap_or(0.0) < EXPERTS_PER_SCHOOL
                || overdue.get(id).copied().unwrap_or(0.0) > 0.0
        })
        .count();
    h.push_str(&format!(
        r#"<div class="cards"><div class="card"><b>{}</b>{}</div><div class="card"><b>{}</b>{}</div><div class="card"><b><a href="/records?status=submitted">{}</a></b>{}</div><div class="card"><b class="flag">{}</b>{}</div></div>"#,
        schools.len(),
        lang.t("所学校", "schools"),
        in_programme(&records),
        lang.t("条本学期记录", "records this term"),
        in_programme(&to_review),
        lang.t("条待审核", "awaiting review"),
        flags_total,
        lang.t("所学校有预警", "schools flagged"),
    ));
    let mut category = String::new();
    for (id, name, cat, project) in &schools {
        if *cat != category {
            if !category.is_empty() {
                h.push_str("</table>");
            }
            category = cat.clone();
            let cat_label = match cat.as_str() {
                "示范" => lang.t("示范校", "Model schools"),
                "优质" => lang.t("优质校", "Quality schools"),
                "潜质" => lang.t("潜质校", "Potential schools"),
                _ => lang.t("其他", "Other"),
            };
            h.push_str(&format!(
                "<h2>{cat_label}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                lang.t("学校", "School"),
                lang.t("重点项目", "Key project"),
                lang.t("本学期记录", "Records"),
                lang.t("听课平均分", "Mean lesson score"),
                lang.t("校长听课（≥30）", "Principal lessons (≥30)"),
                lang.t("本月在岗专家（≥3）", "Active experts this month (≥3)"),
                lang.t("逾期未整改", "Overdue rectifications"),
                lang.t("待审核 / 已退回", "To review / returned"),
            ));
        }
        let p = principal.get(id).copied().unwrap_or(0.0);
        let e = experts.get(id).copied().unwrap_or(0.0);
        let o = overdue.get(id).copied().unwrap_or(0.0);
        let sid = url(id);
        h.push_str(&format!(
            r#"<tr><td><a href="/schools/{sid}">{}</a></td><td>{}</td><td class="n"><a href="/records?school={sid}">{}</a></td><td class="n">{}</td>
<td class="n {}"><a href="/records?school={sid}&template=classroom-observation&role=principal">{}</a></td><td class="n {}"><a href="/records?school={sid}&template=guidance-log">{}</a></td>
<td class="n {}"><a href="/records?school={sid}&template=inspection-visit">{}</a></td><td class="n"><a href="/records?school={sid}&status=submitted">{}</a> / <a href="/records?school={sid}&status=returned">{}</a></td></tr>"#,
            esc(name),
            esc(project),
            records.get(id).copied().unwrap_or(0.0),
            num(mean_score.get(id).copied()),
            if p < PRINCIPAL_QUOTA { "flag" } else { "ok" },
            p,
            if e < EXPERTS_PER_SCHOOL { "flag" } else { "ok" },
            e,
            if o > 0.0 { "flag" } else { "ok" },
            o,
            to_review.get(id).copied().unwrap_or(0.0),
            returned.get(id).copied().unwrap_or(0.0),
        ));
    }
    if !category.is_empty() {
        h.push_str("</table>");
    }
    h.push_str(&format!("<h2>{}</h2>", lang.t("项目任务进展", "Programme tasks")));
    h.push_str(&tasks_table(lang, &tasks(conn, &term.programme, None, today)?, None));
    Ok(h)
}

