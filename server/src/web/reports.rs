//! The programme dashboard and the school report (一校一报告), computed from the projection
//! (answers, computed values, scores, and the rectification items and task progress projected
//! onto their own tables) without loading documents. Every figure links to the records behind it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;

use super::auth::WebUser;
use super::page::{esc, layout, line_chart, num, url, Lang};
use crate::error::{AppError, AppResult};
use crate::forms::{self, Carriers};
use crate::AppState;

/// The period a page covers: the programme of the signed-in user, its name, and the term of the
/// programme's rule book containing `today` (or the chosen term, by id). With no term listed,
/// `term` is None and the period is the calendar year (quotas per term are then not judged).
#[derive(Debug, Clone)]
pub struct Term {
    pub programme: String,
    /// The programme's name.
    pub name: String,
    pub start: String,
    pub end: String,
    /// The programme's term in use, when it lists terms.
    pub term: Option<crate::programme::rules::Term>,
}

pub fn term(conn: &Connection, user: &WebUser, today: &str, chosen: Option<&str>) -> AppResult<Term> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT id, name FROM programmes WHERE ?1 IS NULL OR id = ?1 ORDER BY id LIMIT 1",
            [&user.programme],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (programme, name) = row.ok_or_else(|| AppError::NotFound("no programme yet".into()))?;
    let rules = crate::programme::load(conn, &programme)?;
    let t = match chosen {
        Some(id) => Some(
            rules
                .terms
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(|| AppError::NotFound(format!("term {id} is not a term of programme {programme}")))?
                .clone(),
        ),
        None => crate::programme::compliance::current_term(&rules, today).cloned(),
    };
    let year = &today[..4];
    let (start, end) = match &t {
        Some(t) => (t.start.clone(), t.end.clone()),
        None => (format!("{year}-01-01"), format!("{year}-12-31")),
    };
    Ok(Term { programme, name, start, end, term: t })
}

/// The modules of an inspection visit the report shows, by the meaning of their rating.
const VISIT_MODULES: [(&str, &str, &str); 6] = [
    ("visit.module.lessons", "课堂教学", "Lessons"),
    ("visit.module.documents", "资料检查", "Documents"),
    ("visit.module.walk", "校园巡视", "Site walk"),
    ("visit.module.talks", "座谈访谈", "Talks"),
    ("visit.module.questionnaires", "问卷调查", "Questionnaires"),
    ("visit.module.tests", "学业抽测", "Spot tests"),
];

/// The programme's forms by what they are to the reports (declared by their `meanings`).
struct Kinds {
    lessons: Carriers,
    guidance: Carriers,
    visits: Carriers,
    evaluations: Carriers,
}

fn kinds(conn: &Connection, programme: &str) -> AppResult<Kinds> {
    let merged = |names: &[&str]| -> AppResult<Carriers> {
        let mut all = Vec::new();
        for n in names {
            all.extend(forms::carriers(conn, programme, n)?.0);
        }
        Ok(Carriers(all))
    };
    Ok(Kinds {
        lessons: forms::carriers(conn, programme, "lesson.total")?,
        guidance: forms::carriers(conn, programme, "guidance.hours")?,
        visits: merged(&VISIT_MODULES.iter().map(|m| m.0).chain(["rectification.group"]).collect::<Vec<_>>())?,
        evaluations: merged(&AREAS.iter().map(|a| a.3).collect::<Vec<_>>())?,
    })
}

const PRINCIPAL_QUOTA: f64 = 30.0;
const EXPERTS_PER_SCHOOL: f64 = 3.0;

pub use crate::programme::compliance::{tasks, TaskRow};

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
            t.status.map(|s| badge(lang, s)).unwrap_or_default()
        ));
    }
    h.push_str("</table>");
    h
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

/// Mean of the computed value or score carrying a meaning over a school's records in a period.
fn mean_of(conn: &Connection, school: &str, programme: &str, meaning: &str, from: &str, to: &str) -> AppResult<(Option<f64>, i64)> {
    let mut args = vec![school.to_string(), from.to_string(), to.to_string()];
    let cond = forms::carriers(conn, programme, meaning)?.condition("r.template_id", "c.name", &mut args);
    Ok(conn.query_row(
        &format!(
            "SELECT AVG(c.number), COUNT(c.number) FROM computed c JOIN records r ON r.id = c.record_id
             WHERE r.school_id = ?1 AND {cond} AND c.row_id = '' AND r.record_date BETWEEN ?2 AND ?3"
        ),
        rusqlite::params_from_iter(&args),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Mean (or sum) of the answer carrying a meaning over a school's records in a period.
fn answers_of(conn: &Connection, school: &str, programme: &str, meaning: &str, from: &str, to: &str, sum: bool) -> AppResult<Option<f64>> {
    let mut args = vec![school.to_string(), from.to_string(), to.to_string()];
    let cond = forms::carriers(conn, programme, meaning)?.condition("r.template_id", "a.field", &mut args);
    let agg = if sum { "SUM" } else { "AVG" };
    Ok(conn.query_row(
        &format!(
            "SELECT {agg}(a.number) FROM answers a JOIN records r ON r.id = a.record_id
             WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3"
        ),
        rusqlite::params_from_iter(&args),
        |r| r.get(0),
    )?)
}

/// How many of a school's records in a period are of these forms.
fn count_of(conn: &Connection, school: &str, forms: &Carriers, from: &str, to: &str, what: &str) -> AppResult<i64> {
    let mut args = vec![school.to_string(), from.to_string(), to.to_string()];
    let cond = forms.form_condition("r.template_id", &mut args);
    Ok(conn.query_row(
        &format!("SELECT {what} FROM records r WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3"),
        rusqlite::params_from_iter(&args),
        |r| r.get(0),
    )?)
}

/// An evaluation record: its id, its date and its scores by name.
type Evaluation = (String, String, HashMap<String, f64>);

/// The six development areas, with the meaning of their evaluation score.
const AREAS: [(&str, &str, &str, &str); 6] = [
    ("cadre", "干部培养", "Leadership development", "evaluation.area.cadre"),
    ("teacher", "教师发展", "Teacher development", "evaluation.area.teacher"),
    ("student", "学生成长", "Student growth", "evaluation.area.student"),
    ("resource", "资源配置", "Resources", "evaluation.area.resource"),
    ("curriculum", "课程教学", "Curriculum and teaching", "evaluation.area.curriculum"),
    ("feature", "特色建设", "Distinctive programmes", "evaluation.area.feature"),
];

/// `GET /schools/{id}`: the school report for a term.
pub async fn school_report(
    State(state): State<AppState>,
    user: WebUser,
    lang: Lang,
    Path(school): Path<String>,
    Query(q): Query<ReportQuery>,
) -> AppResult<Html<String>> {
    let today = state.clock.today();
    let u = user.clone();
    let (title, body) = state.blocking(move |conn| report_html(conn, &u, lang, &school, &q, &today)).await?;
    Ok(layout(lang, &title, Some(&user), &body))
}

pub fn report_html(conn: &Connection, user: &WebUser, lang: Lang, school: &str, q: &ReportQuery, today: &str) -> AppResult<(String, String)> {
    let term = term(conn, user, today, None)?;
    let from = q.from.clone().filter(|d| shidao_core::expr::parse_date(d).is_some()).unwrap_or(term.start.clone());
    let to = q.to.clone().filter(|d| shidao_core::expr::parse_date(d).is_some()).unwrap_or(term.end.clone());
    let (name, category, project): (String, String, String) = conn
        .query_row("SELECT name, category, key_project FROM schools WHERE id = ?1", [school], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| AppError::NotFound(format!("school {school} does not exist")))?;
    let sid = url(school);
    let title = format!("{name} · {}", lang.t("一校一报告", "School report"));
    let link = |template: &str, extra: &str| format!("/records?school={sid}&template={template}{extra}");
    let mut h = format!(
        r#"<h1>{}</h1><p>{} · {} <b>{}</b> · {} {}</p><form class="noprint" method="get">{} <input type="text" name="from" value="{}" style="width:8rem"> – <input type="text" name="to" value="{}" style="width:8rem"> <button type="submit">{}</button> <button type="button" class="secondary" onclick="window.print()">{}</button></form>"#,
        esc(&title),
        esc(&term.name),
        lang.t("类别", "Category"),
        esc(&category),
        lang.t("重点项目：", "Key project: "),
        esc(&project),
        lang.t("时段", "Period"),
        esc(&from),
        esc(&to),
        lang.t("更新", "Update"),
        lang.t("打印 / PDF", "Print / PDF"),
    );

    // Which of the programme's forms are lesson observations, visits, guidance logs and
    // evaluations, and which of their fields carry what the report reads: their `meanings`.
    let programme = term.programme.as_str();
    let kinds = kinds(conn, programme)?;
    // Lesson observations: the figures every chapter of teaching refers to.
    let mut args = vec![school.to_string(), from.clone(), to.clone()];
    let totals = kinds.lessons.condition("r.template_id", "c.name", &mut args);
    let lesson_forms = kinds.lessons.form_condition("r.template_id", &mut args);
    let obs: (i64, Option<f64>) = conn.query_row(
        &format!(
            "SELECT COUNT(*), AVG(c.number) FROM records r LEFT JOIN computed c ON c.record_id = r.id AND c.row_id = '' AND {totals}
             WHERE r.school_id = ?1 AND {lesson_forms} AND r.record_date BETWEEN ?2 AND ?3"
        ),
        rusqlite::params_from_iter(&args),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let licc: Vec<(String, Option<f64>)> =
        ["lesson.licc.student_learning", "lesson.licc.teacher_teaching", "lesson.licc.curriculum", "lesson.licc.culture"]
            .iter()
            .map(|n| mean_of(conn, school, programme, n, &from, &to).map(|(v, _)| ((*n).to_string(), v)))
            .collect::<AppResult<_>>()?;
    let (tol, _) = mean_of(conn, school, programme, "lesson.time_on_learning", &from, &to)?;
    let (agree, agree_n) = mean_of(conn, school, programme, "lesson.agreement_exact", &from, &to)?;
    let (agree1, _) = mean_of(conn, school, programme, "lesson.agreement_within1", &from, &to)?;
    let mut args = vec![school.to_string(), from.clone(), to.clone()];
    let lesson_forms = kinds.lessons.form_condition("r.template_id", &mut args);
    let principal: i64 = conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM records r JOIN users u ON u.id = r.created_by WHERE r.school_id = ?1 AND {lesson_forms}
             AND u.role = 'principal' AND r.record_date BETWEEN ?2 AND ?3"
        ),
        rusqlite::params_from_iter(&args),
        |r| r.get(0),
    )?;
    // Visits: module ratings and open rectifications.
    let visits = count_of(conn, school, &kinds.visits, &from, &to, "COUNT(*)")?;
    let mut module_means = Vec::new();
    for (m, ..) in VISIT_MODULES {
        module_means.push(answers_of(conn, school, programme, m, &from, &to, false)?);
    }
    // By deadline, then record, then the rows' order on the form.
    let mut stmt = conn.prepare_cached(
        "SELECT record_id, item, owner, COALESCE(deadline, ''), status FROM rectifications
         WHERE school_id = ?1 AND closed = 0 AND item IS NOT NULL ORDER BY 4, record_id, row_index",
    )?;
    let rects: Vec<(String, String, String, String, String)> =
        stmt.query_map([school], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect::<rusqlite::Result<_>>()?;
    // Experts: hours and the share of agreed actions done.
    let hours = answers_of(conn, school, programme, "guidance.hours", &from, &to, true)?;
    let logs = count_of(conn, school, &kinds.guidance, &from, &to, "COUNT(*)")?;
    let (done_share, _) = mean_of(conn, school, programme, "guidance.done_share", &from, &to)?;
    let experts = count_of(conn, school, &kinds.guidance, &from, &to, "COUNT(DISTINCT r.created_by)")?;
    // Evaluations: the first (baseline) and the latest, per area; each area's score is the one
    // the record's own form names for it.
    let area_carriers: Vec<Carriers> = AREAS.iter().map(|a| forms::carriers(conn, programme, a.3)).collect::<AppResult<_>>()?;
    let eval_scores = |order: &str| -> AppResult<Option<Evaluation>> {
        let mut args = vec![school.to_string()];
        let cond = kinds.evaluations.form_condition("template_id", &mut args);
        let row: Option<(String, String, String)> = conn
            .query_row(
                &format!("SELECT id, COALESCE(record_date, ''), template_id FROM records WHERE school_id = ?1 AND {cond} ORDER BY record_date {order}, id LIMIT 1"),
                rusqlite::params_from_iter(&args),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, date, template)) = row else { return Ok(None) };
        let mut stmt = conn.prepare_cached("SELECT name, number FROM computed WHERE record_id = ?1 AND number IS NOT NULL AND row_id = ''")?;
        let by_name = stmt.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?.collect::<rusqlite::Result<HashMap<_, _>>>()?;
        let m = AREAS
            .iter()
            .zip(&area_carriers)
            .filter_map(|(a, c)| c.name_in(&template).and_then(|n| by_name.get(n)).map(|v| (a.3.to_string(), *v)))
            .collect();
        Ok(Some((id, date, m)))
    };
    let first = eval_scores("ASC")?;
    let latest = eval_scores("DESC")?;

    // Chapters: the six development areas.
    for (i, (area, zh, en, score)) in AREAS.iter().enumerate() {
        h.push_str(&format!("<h2>{}、{}</h2>", ["一", "二", "三", "四", "五", "六"][i], lang.t(zh, en)));
        let base = first.as_ref().and_then(|(_, _, m)| m.get(*score).copied());
        let now = latest.as_ref().and_then(|(_, _, m)| m.get(*score).copied());
        let eval_link = latest.as_ref().map(|(id, ..)| format!("/records/{}", url(id))).unwrap_or_else(|| link(kinds.evaluations.first(), ""));
        h.push_str(&format!(
            r#"<p>{} <a href="{}">{}</a> → <a href="{}">{}</a> · {} <b>{}</b></p>"#,
            lang.t("发展评估得分（初次 → 最近）：", "Evaluation score (first → latest): "),
            esc(&first.as_ref().map(|(id, ..)| format!("/records/{}", url(id))).unwrap_or_default()),
            num(base),
            esc(&eval_link),
            num(now),
            lang.t("增值", "value added"),
            match (base, now) {
                (Some(b), Some(n)) if latest.as_ref().map(|l| &l.0) != first.as_ref().map(|f| &f.0) => num(Some(n - b)),
                _ => "—".into(),
            }
        ));
        match *area {
            "cadre" => h.push_str(&format!(
                r#"<p>{} <a class="{}" href="{}">{}</a> {}</p>"#,
                lang.t("校长本期听评课", "Lessons the principal observed:"),
                if (principal as f64) < PRINCIPAL_QUOTA { "flag" } else { "ok" },
                esc(&link(kinds.lessons.first(), "&role=principal")),
                principal,
                lang.t("节（要求 ≥30 节/学期）", "(required: ≥30 a term)")
            )),
            "teacher" => h.push_str(&format!(
                r#"<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr><tr><td class="n"><a href="{l}">{}</a></td><td class="n {}">{}</td><td class="n"><a href="{l}">{}</a></td><td class="n">{}%</td></tr></table>"#,
                lang.t("蹲点指导记录", "Guidance logs"),
                lang.t("参与专家（≥3）", "Experts (≥3)"),
                lang.t("指导时长（小时）", "Expert hours"),
                lang.t("上次约定事项完成率", "Agreed actions done"),
                logs,
                if (experts as f64) < EXPERTS_PER_SCHOOL { "flag" } else { "ok" },
                experts,
                num(hours),
                num(done_share),
                l = esc(&link(kinds.guidance.first(), "")),
            )),
            "curriculum" => {
                h.push_str(&format!(
                    r#"<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr><tr><td class="n"><a href="{l}">{}</a></td><td class="n">{}</td>"#,
                    lang.t("听课节数", "Lessons observed"),
                    lang.t("平均总分", "Mean total"),
                    lang.t("学生学习", "Student learning"),
                    lang.t("教师教学", "Teacher teaching"),
                    lang.t("课程性质", "Curriculum"),
                    lang.t("课堂文化", "Classroom culture"),
                    lang.t("学习时间占比", "Time on learning"),
                    lang.t("双人评分一致率（完全 / ±1）", "Rater agreement (exact / ±1)"),
                    obs.0,
                    num(obs.1),
                    l = esc(&link(kinds.lessons.first(), "")),
                ));
                for (_, v) in &licc {
                    h.push_str(&format!(r#"<td class="n">{}</td>"#, num(*v)));
                }
                h.push_str(&format!(
                    r#"<td class="n">{}%</td><td class="n">{}% / {}% <span class="muted">(n={agree_n})</span></td></tr></table>"#,
                    num(tol),
                    num(agree),
                    num(agree1)
                ));
                // Mean lesson score by month, as a chart.
                let mut args = vec![school.to_string(), from.clone(), to.clone()];
                let totals = kinds.lessons.condition("r.template_id", "c.name", &mut args);
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT substr(r.record_date, 1, 7), AVG(c.number) FROM records r JOIN computed c ON c.record_id = r.id AND c.row_id = ''
                     WHERE r.school_id = ?1 AND {totals} AND r.record_date BETWEEN ?2 AND ?3 GROUP BY 1 ORDER BY 1"
                ))?;
                let points: Vec<(String, f64, String)> = stmt
                    .query_map(rusqlite::params_from_iter(&args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .map(|(m, v)| {
                        let l = link(kinds.lessons.first(), &format!("&from={m}-01&to={m}-31"));
                        (m, v, l)
                    })
                    .collect();
                h.push_str(&line_chart(&points, 100.0, lang.t("听课平均总分（按月）", "Mean lesson score by month")));
                // Visits.
                h.push_str(&format!(
                    r#"<h3>{} (<a href="{}">{}</a>)</h3><table><tr>"#,
                    lang.t("教学视导", "Inspection visits"),
                    esc(&link(kinds.visits.first(), "")),
                    visits
                ));
                for (_, zh_m, en_m) in VISIT_MODULES {
                    h.push_str(&format!("<th>{}</th>", lang.t(zh_m, en_m)));
                }
                h.push_str("</tr><tr>");
                for v in &module_means {
                    let grade = v.map(|x| ["D", "C", "B", "A"][((x.round() as usize).clamp(1, 4)) - 1].to_string());
                    h.push_str(&format!(r#"<td class="n">{} {}</td>"#, grade.unwrap_or_else(|| "—".into()), num(*v)));
                }
                h.push_str("</tr></table>");
                h.push_str(&format!(
                    "<h3>{}</h3><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                    lang.t("未完成的整改事项", "Open rectifications"),
                    lang.t("事项", "Item"),
                    lang.t("责任人", "Owner"),
                    lang.t("期限", "Deadline"),
                    lang.t("状态", "Status")
                ));
                for (rid, item, owner, deadline, status) in &rects {
                    let late = !deadline.is_empty() && deadline.as_str() < today;
                    h.push_str(&format!(
                        r#"<tr><td><a href="/records/{}">{}</a></td><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
                        url(rid),
                        esc(item),
                        esc(owner),
                        if late { "flag" } else { "" },
                        esc(deadline),
                        esc(status)
                    ));
                }
                h.push_str("</table>");
            }
            _ => {}
        }
    }
    h.push_str(&format!("<h2>{}</h2>", lang.t("任务进展", "Tasks against targets")));
    let rules = crate::programme::load(conn, &term.programme)?;
    h.push_str(&tasks_table(lang, &tasks(conn, &term.programme, &rules, Some(school), today)?, Some(school)));
    Ok((title, h))
}
