//! The school report's queries over the projection (answers, computed values, scores,
//! rectifications, task progress), without loading documents. Only records submitted for review
//! or approved count ([`COUNTED`]); drafts and returned records never do. Which fields carry what
//! comes from the forms' `meanings`.

use std::collections::HashMap;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::model::*;
use crate::error::{AppError, AppResult};
use crate::forms::{self, Carriers};
use crate::programme::rules::IndicatorDef;
use crate::web::auth::WebUser;
use crate::web::page::{url, Lang};
use shidao_core::date::china_minute;
use crate::web::reports;

/// The statuses a report counts.
pub const COUNTED: &str = "r.status IN ('submitted', 'approved')";

/// The default chapters: the six development areas of the evaluation form.
const AREAS: [(&str, &str, &str); 6] = [
    ("cadre", "干部培养", "Leadership development"),
    ("teacher", "教师发展", "Teacher development"),
    ("student", "学生成长", "Student growth"),
    ("resource", "资源配置", "Resources"),
    ("curriculum", "课程教学", "Curriculum and teaching"),
    ("feature", "特色建设", "Distinctive programmes"),
];

/// The chapters of the programme's report: its rule book's report structure where it has one,
/// else the six development areas.
pub fn structure(conn: &Connection, programme: &str) -> AppResult<Vec<Chapter>> {
    let rules = crate::programme::load(conn, programme)?;
    if let Some(report) = rules.report.filter(|r| !r.chapters.is_empty()) {
        return Ok(report
            .chapters
            .into_iter()
            .map(|c| {
                let areas = c
                    .meanings
                    .iter()
                    .filter_map(|m| m.strip_prefix("evaluation.area.").map(|stem| (m.clone(), stem.to_string())))
                    .collect();
                let title_en = if c.title_en.trim().is_empty() { c.title.clone() } else { c.title_en };
                Chapter { id: c.id, title_zh: c.title, title_en, areas, points: c.indicators }
            })
            .collect());
    }
    Ok(AREAS
        .iter()
        .map(|(id, zh, en)| Chapter {
            id: (*id).to_string(),
            title_zh: (*zh).to_string(),
            title_en: (*en).to_string(),
            areas: vec![(format!("evaluation.area.{id}"), (*id).to_string())],
            points: Vec::new(),
        })
        .collect())
}

/// The programme's rules as the school's figures meet them: each rule (per person where the rule
/// counts per person), the figure, met or not, and the document's sentence.
pub fn compliance(conn: &Connection, p: &Period<'_>, term: Option<&crate::programme::rules::Term>, today: &str, lang: Lang) -> AppResult<Vec<Check>> {
    use crate::programme::compliance::{self as rules_check, State};
    let rules = crate::programme::load(conn, p.programme)?;
    Ok(rules_check::compliance(conn, &rules, p.school, term, today)?
        .into_iter()
        .map(|c| {
            let mut rule = format!("{}（{}）", lang.t(&c.label_zh, &c.label_en), c.target_text());
            if let Some((_, name)) = &c.person {
                rule.push_str(&format!(" · {name}"));
            }
            Check {
                figure: match c.figure {
                    Some(f) => format!("{}{}", crate::web::page::num(Some(f)), c.unit),
                    None => lang.t("无数据", "no data").to_string(),
                },
                met: c.state == State::Met,
                judged: c.state != State::NoData,
                source: c.source.sentence.clone(),
                href: c.link.clone(),
                rule,
            }
        })
        .collect())
}

/// The school and period a report is about.
#[derive(Debug, Clone, Copy)]
pub struct Period<'a> {
    pub programme: &'a str,
    pub school: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

impl Period<'_> {
    /// `?1` school, `?2` from, `?3` to.
    fn args(&self) -> Vec<String> {
        vec![self.school.to_string(), self.from.to_string(), self.to.to_string()]
    }
    /// The records behind a figure: this school's records of a form in the period.
    pub fn link(&self, template: &str, extra: &str) -> String {
        format!("/records?school={}&template={}&from={}&to={}{extra}", url(self.school), url(template), url(self.from), url(self.to))
    }
}

/// Sum or mean of the numbers (answers, computed values or scores) carrying a meaning over the
/// school's counted records in the period.
fn number(conn: &Connection, p: &Period<'_>, meaning: &str, agg: &str) -> AppResult<Figure> {
    let c = forms::carriers(conn, p.programme, meaning)?;
    let mut args = p.args();
    let ca = c.condition("r.template_id", "a.field", &mut args);
    let cc = c.condition("r.template_id", "x.name", &mut args);
    let value = conn.query_row(
        &format!(
            "SELECT {agg}(v) FROM (
               SELECT a.number AS v FROM answers a JOIN records r ON r.id = a.record_id
                WHERE r.school_id = ?1 AND {ca} AND a.row_id = '' AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED}
               UNION ALL
               SELECT x.number FROM computed x JOIN records r ON r.id = x.record_id
                WHERE r.school_id = ?1 AND {cc} AND x.row_id = '' AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED})"
        ),
        params_from_iter(&args),
        |r| r.get::<_, Option<f64>>(0),
    )?;
    Ok(Figure { value, href: p.link(c.first(), "") })
}

/// How many counted records of these forms the school has in the period.
fn count(conn: &Connection, p: &Period<'_>, c: &Carriers) -> AppResult<Figure> {
    let mut args = p.args();
    let cond = c.form_condition("r.template_id", &mut args);
    let n: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM records r WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED}"),
        params_from_iter(&args),
        |r| r.get(0),
    )?;
    Ok(Figure { value: Some(n as f64), href: p.link(c.first(), "") })
}

/// The mean lesson score of the counted observations (each record's `lesson.total`, kept on it).
fn mean_score(conn: &Connection, p: &Period<'_>, c: &Carriers) -> AppResult<Figure> {
    let mut args = p.args();
    let cond = c.form_condition("r.template_id", &mut args);
    let mean: Option<f64> = conn.query_row(
        &format!("SELECT AVG(r.score) FROM records r WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED}"),
        params_from_iter(&args),
        |r| r.get(0),
    )?;
    Ok(Figure { value: mean.map(|m| (m * 10.0).round() / 10.0), href: p.link(c.first(), "") })
}

/// A counted record of these forms: (id, date, form, version), first or latest by date.
fn pick(conn: &Connection, school: &str, c: &Carriers, until: &str, latest: bool) -> AppResult<Option<(String, String, String, u32)>> {
    let mut args = vec![school.to_string(), until.to_string()];
    let cond = c.form_condition("r.template_id", &mut args);
    let order = if latest { "DESC" } else { "ASC" };
    Ok(conn
        .query_row(
            &format!(
                "SELECT r.id, COALESCE(r.record_date, ''), r.template_id, r.template_version FROM records r
                 WHERE r.school_id = ?1 AND {cond} AND r.record_date <= ?2 AND {COUNTED} ORDER BY r.record_date {order}, r.id {order} LIMIT 1"
            ),
            params_from_iter(&args),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// The number a record holds under a field or score name (top level).
fn value_in(conn: &Connection, record: &str, name: &str) -> AppResult<Option<f64>> {
    let v: Option<Option<f64>> = conn
        .query_row(
            "SELECT number FROM computed WHERE record_id = ?1 AND name = ?2 AND row_id = ''
             UNION ALL SELECT number FROM answers WHERE record_id = ?1 AND field = ?2 AND row_id = '' LIMIT 1",
            [record, name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.flatten())
}

/// The displayed answer a record holds in a top-level field.
fn text_in(conn: &Connection, record: &str, field: &str) -> AppResult<Option<String>> {
    Ok(conn
        .query_row("SELECT display FROM answers WHERE record_id = ?1 AND field = ?2 AND row_id = ''", [record, field], |r| r.get(0))
        .optional()?
        .filter(|s: &String| !s.trim().is_empty()))
}

/// The names of the experts on the school's team (the programme's expert team, else the experts
/// assigned to the school).
fn expert_names(conn: &Connection, school: &str) -> AppResult<Vec<String>> {
    let mut ids = crate::programme::store::expert_team(conn, school)?;
    if ids.is_empty() {
        ids = conn
            .prepare_cached("SELECT a.user_id FROM assignments a JOIN users u ON u.id = a.user_id WHERE a.school_id = ?1 AND u.role = 'expert' ORDER BY u.name")?
            .query_map([school], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    let mut names = Vec::new();
    for id in ids {
        names.push(conn.query_row("SELECT name FROM users WHERE id = ?1", [&id], |r| r.get(0)).optional()?.unwrap_or(id));
    }
    Ok(names)
}

const RATIOS: [&str; 7] = ["qualified", "backbone", "pe_art", "building", "sports", "equipment", "multimedia"];

fn basics(conn: &Connection, p: &Period<'_>, lang: Lang) -> AppResult<Option<Basics>> {
    let c = forms::carriers(conn, p.programme, "baseline.enrolment")?;
    let Some((id, date, template, version)) = pick(conn, p.school, &c, p.to, true)? else { return Ok(None) };
    let Some(t) = forms::template(conn, p.programme, &template, version)? else { return Ok(None) };
    let field = |m: &str| t.meaning(m).map(str::to_string);
    let num = |m: &str| -> AppResult<Option<f64>> {
        match field(m) {
            Some(f) => value_in(conn, &id, &f),
            None => Ok(None),
        }
    };
    let mut indicators = Vec::new();
    for r in RATIOS {
        let Some(f) = field(&format!("baseline.ratio.{r}")) else { continue };
        let label = t.field(&f).map(|x| x.def.label.get(lang.code()).to_string()).unwrap_or_else(|| f.clone());
        let met = num(&format!("baseline.ratio.{r}_met"))?.map(|v| v >= 1.0);
        indicators.push(Indicator { label, value: value_in(conn, &id, &f)?, met });
    }
    Ok(Some(Basics {
        href: format!("/records/{}", url(&id)),
        date,
        category: match field("baseline.category") {
            Some(f) => text_in(conn, &id, &f)?.unwrap_or_default(),
            None => String::new(),
        },
        classes: num("baseline.classes")?,
        enrolment: num("baseline.enrolment")?,
        teachers: num("baseline.teachers")?,
        backbone_share: num("baseline.backbone_share")?,
        indicators,
        indicators_met: num("baseline.indicators_met")?,
        balanced_met: num("baseline.balanced_met")?.map(|v| v >= 1.0),
    }))
}

/// Counted lesson observations grouped by the display of a field (subject) or the author's role.
fn lessons_by(conn: &Connection, p: &Period<'_>, lessons: &Carriers, by_role: bool, lang: Lang) -> AppResult<Vec<(String, i64, String)>> {
    let mut args = p.args();
    let sql = if by_role {
        let cond = lessons.form_condition("r.template_id", &mut args);
        format!(
            "SELECT COALESCE(u.role, r.author_role, ''), COUNT(*) FROM records r LEFT JOIN users u ON u.id = r.created_by
             WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED} GROUP BY 1 ORDER BY 2 DESC, 1"
        )
    } else {
        let subject = forms::carriers(conn, p.programme, "lesson.subject")?;
        let cond = subject.condition("r.template_id", "a.field", &mut args);
        format!(
            "SELECT a.display, COUNT(*) FROM records r JOIN answers a ON a.record_id = r.id AND a.row_id = ''
             WHERE r.school_id = ?1 AND {cond} AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED} GROUP BY 1 ORDER BY 2 DESC, 1"
        )
    };
    let rows: Vec<(String, i64)> =
        conn.prepare(&sql)?.query_map(params_from_iter(&args), |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .map(|(k, n)| {
            if by_role {
                let label = role_label(lang, &k);
                (label, n, p.link(lessons.first(), &format!("&role={}", url(&k))))
            } else {
                (k, n, p.link(lessons.first(), ""))
            }
        })
        .collect())
}

fn role_label(lang: Lang, role: &str) -> String {
    match shidao_core::template::Role::parse(role) {
        Some(r) => lang.t(r.name_zh(), r.name_en()).to_string(),
        None => lang.t("其他", "other").to_string(),
    }
}

fn work(conn: &Connection, p: &Period<'_>, lang: Lang) -> AppResult<Work> {
    let visits = forms::carriers(conn, p.programme, "visit.lessons")?;
    let lessons = forms::carriers(conn, p.programme, "lesson.total")?;
    let guidance = forms::carriers(conn, p.programme, "guidance.hours")?;
    let issued = number(conn, p, "visit.questionnaires_issued", "SUM")?;
    let returned = number(conn, p, "visit.questionnaires_returned", "SUM")?;
    let return_rate = match (issued.value, returned.value) {
        (Some(i), Some(r)) if i > 0.0 => Some(r / i * 100.0),
        _ => None,
    };
    Ok(Work {
        visits: count(conn, p, &visits)?,
        visit_lessons: number(conn, p, "visit.lessons", "SUM")?,
        observations: count(conn, p, &lessons)?,
        lesson_mean: mean_score(conn, p, &lessons)?,
        by_subject: lessons_by(conn, p, &lessons, false, lang)?,
        by_role: lessons_by(conn, p, &lessons, true, lang)?,
        documents: number(conn, p, "visit.documents_sampled", "SUM")?,
        people: number(conn, p, "visit.people_interviewed", "SUM")?,
        issued,
        returned,
        return_rate,
        tested: number(conn, p, "visit.tested_students", "SUM")?,
        pass_rate: number(conn, p, "visit.test_pass_rate", "AVG")?,
        guidance_logs: count(conn, p, &guidance)?,
        guidance_hours: number(conn, p, "guidance.hours", "SUM")?,
    })
}

/// 兴趣度 and 参与度 per subject and teacher, from the counted lesson observations.
fn lesson_lines(conn: &Connection, p: &Period<'_>) -> AppResult<Vec<LessonLine>> {
    let lessons = forms::carriers(conn, p.programme, "lesson.total")?;
    let subject = forms::carriers(conn, p.programme, "lesson.subject")?;
    let teacher = forms::carriers(conn, p.programme, "lesson.teacher")?;
    let interest = forms::carriers(conn, p.programme, "lesson.interest")?;
    let participation = forms::carriers(conn, p.programme, "lesson.participation")?;
    let mut args = p.args();
    let forms_cond = lessons.form_condition("r.template_id", &mut args);
    let cs = subject.condition("r.template_id", "s.field", &mut args);
    let ct = teacher.condition("r.template_id", "t.field", &mut args);
    let ci = interest.condition("r.template_id", "i.field", &mut args);
    let cp = participation.condition("r.template_id", "q.field", &mut args);
    let sql = format!(
        "SELECT COALESCE(s.display, ''), COALESCE(t.display, ''), COUNT(*), AVG(i.number), AVG(q.number)
         FROM records r
         LEFT JOIN answers s ON s.record_id = r.id AND s.row_id = '' AND {cs}
         LEFT JOIN answers t ON t.record_id = r.id AND t.row_id = '' AND {ct}
         LEFT JOIN answers i ON i.record_id = r.id AND i.row_id = '' AND {ci}
         LEFT JOIN answers q ON q.record_id = r.id AND q.row_id = '' AND {cp}
         WHERE r.school_id = ?1 AND {forms_cond} AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED}
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = conn
        .prepare(&sql)?
        .query_map(params_from_iter(&args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .map(|(subject, teacher, lessons_n, interest, participation)| LessonLine {
            subject,
            teacher,
            lessons: lessons_n,
            interest,
            participation,
            href: p.link(lessons.first(), ""),
        })
        .collect())
}

/// The text answers carrying a meaning in the school's counted records of the period.
fn notes(conn: &Connection, p: &Period<'_>, c: &Carriers) -> AppResult<Vec<Note>> {
    let mut args = p.args();
    let cond = c.condition("r.template_id", "a.field", &mut args);
    let rows = conn
        .prepare(&format!(
            "SELECT a.display, COALESCE(r.record_date, ''), r.id FROM answers a JOIN records r ON r.id = a.record_id
             WHERE r.school_id = ?1 AND {cond} AND a.row_id = '' AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED}
               AND trim(a.display) != '' ORDER BY r.record_date, r.id"
        ))?
        .query_map(params_from_iter(&args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().map(|(text, date, id)| Note { text, date, href: format!("/records/{}", url(&id)) }).collect())
}

fn narrative(conn: &Connection, p: &Period<'_>, meaning: &str) -> AppResult<Vec<Note>> {
    notes(conn, p, &forms::carriers(conn, p.programme, meaning)?)
}

/// The indicator rows of one chapter in an evaluation record.
fn indicator_rows(conn: &Connection, record: &str, stem: &str) -> AppResult<Vec<IndicatorRow>> {
    let fields = [format!("{stem}_indicator"), format!("{stem}_unit"), format!("{stem}_baseline"), format!("{stem}_current"), format!("{stem}_target")];
    let mut rows: Vec<(String, IndicatorRow)> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT row_id, field, display, number FROM answers WHERE record_id = ?1 AND row_id != '' AND field IN (?2, ?3, ?4, ?5, ?6) ORDER BY rowid",
    )?;
    let found = stmt
        .query_map(params![record, fields[0], fields[1], fields[2], fields[3], fields[4]], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<f64>>(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (row, field, display, number) in found {
        let i = match rows.iter().position(|(r, _)| *r == row) {
            Some(i) => i,
            None => {
                rows.push((row, IndicatorRow { name: String::new(), unit: String::new(), baseline: None, current: None, target: None, bank: None }));
                rows.len() - 1
            }
        };
        let ind = &mut rows[i].1;
        match field.strip_prefix(stem).unwrap_or("") {
            "_indicator" => ind.name = display,
            "_unit" => ind.unit = display,
            "_baseline" => ind.baseline = number,
            "_current" => ind.current = number,
            _ => ind.target = number,
        }
    }
    Ok(rows.into_iter().map(|(_, r)| r).filter(|r| !r.name.trim().is_empty()).collect())
}

/// A chapter's indicator rows read against the programme's indicator bank (`banked`: the
/// programme keeps one): a row the bank lists takes the bank's unit and target where the record
/// gives none; an indicator of the bank no record reported is listed with no figures; a row the
/// bank does not list is marked so.
fn with_bank<'a>(rows: &mut Vec<IndicatorRow>, bank: impl Iterator<Item = &'a IndicatorDef>, banked: bool, lang: Lang) {
    if !banked {
        return;
    }
    for r in rows.iter_mut() {
        r.bank = Some(false);
    }
    for def in bank {
        match rows.iter_mut().find(|r| r.name == def.name) {
            Some(r) => {
                r.bank = Some(true);
                if r.unit.trim().is_empty() {
                    r.unit = def.unit.clone();
                }
                r.target = r.target.or(def.target);
            }
            None => rows.push(IndicatorRow {
                name: if lang.en && !def.name_en.is_empty() { format!("{} ({})", def.name, def.name_en) } else { def.name.clone() },
                unit: def.unit.clone(),
                baseline: None,
                current: None,
                target: def.target,
                bank: Some(true),
            }),
        }
    }
}

fn chapters(conn: &Connection, p: &Period<'_>, first_number: usize, lang: Lang) -> AppResult<Vec<ChapterView>> {
    let evaluations = forms::carriers(conn, p.programme, "evaluation.overall")?;
    // The baseline: the earliest counted evaluation (the 初态); the current: the latest in the period.
    let first = pick(conn, p.school, &evaluations, p.to, false)?;
    let latest = pick(conn, p.school, &evaluations, p.to, true)?.filter(|l| l.1.as_str() >= p.from);
    let rules = crate::programme::load(conn, p.programme)?;
    let mut out = Vec::new();
    for (i, ch) in structure(conn, p.programme)?.into_iter().enumerate() {
        // The chapter's score in a record: the mean of its areas' scores there.
        let score = |rec: &Option<(String, String, String, u32)>| -> AppResult<Figure> {
            let Some((id, _, template, _)) = rec else { return Ok(Figure::default()) };
            let mut values = Vec::new();
            for (meaning, _) in &ch.areas {
                if let Some(n) = forms::carriers(conn, p.programme, meaning)?.name_in(template) {
                    values.extend(value_in(conn, id, n)?);
                }
            }
            let value = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
            Ok(Figure { value, href: format!("/records/{}", url(id)) })
        };
        let f = score(&first)?;
        let l = score(&latest)?;
        let added = match (&first, &latest, f.value, l.value) {
            (Some(a), Some(b), Some(x), Some(y)) if a.0 != b.0 => Some(y - x),
            _ => None,
        };
        let mut indicators = Vec::new();
        let mut findings = Vec::new();
        for (_, stem) in &ch.areas {
            let Some((lid, ..)) = &latest else { break };
            let mut rows = indicator_rows(conn, lid, stem)?;
            // A baseline left empty is carried from the earliest evaluation's value of the indicator.
            if let Some((fid, ..)) = first.as_ref().filter(|f| f.0 != *lid) {
                let earlier = indicator_rows(conn, fid, stem)?;
                for row in rows.iter_mut().filter(|r| r.baseline.is_none()) {
                    row.baseline = earlier.iter().find(|e| e.name == row.name).and_then(|e| e.baseline.or(e.current));
                }
            }
            indicators.extend(rows);
            let mut args = p.args();
            args.push(format!("{stem}_findings"));
            let cond = evaluations.form_condition("r.template_id", &mut args);
            let notes: Vec<Note> = conn
                .prepare(&format!(
                    "SELECT a.display, COALESCE(r.record_date, ''), r.id FROM answers a JOIN records r ON r.id = a.record_id
                     WHERE r.school_id = ?1 AND {cond} AND a.field = ?4 AND a.row_id = '' AND r.record_date BETWEEN ?2 AND ?3
                       AND {COUNTED} AND trim(a.display) != '' ORDER BY r.record_date"
                ))?
                .query_map(params_from_iter(&args), |r| {
                    Ok(Note { text: r.get(0)?, date: r.get(1)?, href: format!("/records/{}", url(&r.get::<_, String>(2)?)) })
                })?
                .collect::<rusqlite::Result<_>>()?;
            findings.extend(notes);
        }
        with_bank(&mut indicators, rules.indicators_of(&ch.id), !rules.indicators.is_empty(), lang);
        out.push(ChapterView {
            number: numeral(first_number + i),
            title: lang.t(&ch.title_zh, &ch.title_en).to_string(),
            points: ch.points.clone(),
            first: f,
            latest: l,
            added,
            indicators,
            findings,
        });
    }
    Ok(out)
}

fn conclusion(conn: &Connection, p: &Period<'_>) -> AppResult<Option<Conclusion>> {
    let c = forms::carriers(conn, p.programme, "evaluation.overall")?;
    let Some((id, date, template, version)) = pick(conn, p.school, &c, p.to, true)?.filter(|l| l.1.as_str() >= p.from) else {
        return Ok(None);
    };
    let t = forms::template(conn, p.programme, &template, version)?.ok_or_else(|| AppError::Internal(format!("form {template}@{version}")))?;
    let overall = c.name_in(&template).unwrap_or_default().to_string();
    let (score, band): (Option<f64>, Option<String>) = conn
        .query_row("SELECT number, band FROM computed WHERE record_id = ?1 AND name = ?2 AND row_id = ''", [&id, &overall], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((None, None));
    let text = |m: &str| -> AppResult<String> {
        Ok(match t.meaning(m) {
            Some(f) => text_in(conn, &id, f)?.unwrap_or_default(),
            None => String::new(),
        })
    };
    let veto = match t.meaning("evaluation.veto") {
        Some(f) => value_in(conn, &id, f)?.is_some_and(|v| v >= 1.0),
        None => false,
    };
    Ok(Some(Conclusion {
        score,
        band: band.unwrap_or_default(),
        veto,
        veto_items: text("evaluation.veto_items")?,
        text: text("evaluation.conclusion")?,
        date,
        href: format!("/records/{}", url(&id)),
    }))
}

/// Open rectifications of the school's visits and open agreed actions of its guidance logs.
fn actions(conn: &Connection, p: &Period<'_>, today: &str, lang: Lang) -> AppResult<Vec<Action>> {
    let mut out = Vec::new();
    let rects: Vec<(String, String, String, String, String)> = conn
        .prepare_cached(
            "SELECT x.record_id, x.item, x.owner, COALESCE(x.deadline, ''), x.status FROM rectifications x JOIN records r ON r.id = x.record_id
             WHERE x.school_id = ?1 AND x.closed = 0 AND x.item IS NOT NULL AND r.status IN ('submitted', 'approved')
             ORDER BY 4, x.record_id, x.row_index",
        )?
        .query_map([p.school], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, item, owner, due, status) in rects {
        out.push(Action {
            kind: lang.t("视导整改", "Visit rectification").into(),
            overdue: !due.is_empty() && due.as_str() < today,
            item,
            owner,
            due,
            status,
            href: format!("/records/{}", url(&id)),
        });
    }
    // Agreed actions: the rows of a guidance log's action group, open unless done or dropped.
    let cs = forms::carriers(conn, p.programme, "guidance.action.status")?;
    let ci = forms::carriers(conn, p.programme, "guidance.action.item")?;
    let co = forms::carriers(conn, p.programme, "guidance.action.owner")?;
    let cd = forms::carriers(conn, p.programme, "guidance.action.due")?;
    let mut args = vec![p.school.to_string()];
    let c_item = ci.condition("r.template_id", "i.field", &mut args);
    let c_status = cs.condition("r.template_id", "s.field", &mut args);
    let c_owner = co.condition("r.template_id", "o.field", &mut args);
    let c_due = cd.condition("r.template_id", "d.field", &mut args);
    let rows = conn
        .prepare(&format!(
            "SELECT r.id, i.display, COALESCE(o.display, ''), COALESCE(json_extract(d.value, '$.value'), ''), COALESCE(s.display, ''),
                    COALESCE(json_extract(s.value, '$.value'), '')
             FROM records r JOIN answers i ON i.record_id = r.id AND i.row_id != '' AND {c_item}
             LEFT JOIN answers s ON s.record_id = r.id AND s.row_id = i.row_id AND {c_status}
             LEFT JOIN answers o ON o.record_id = r.id AND o.row_id = i.row_id AND {c_owner}
             LEFT JOIN answers d ON d.record_id = r.id AND d.row_id = i.row_id AND {c_due}
             WHERE r.school_id = ?1 AND {COUNTED} AND trim(i.display) != ''
             ORDER BY 4, r.record_date, r.id"
        ))?
        .query_map(params_from_iter(&args), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (id, item, owner, due, status, code) in rows {
        if code == "done" || code == "dropped" {
            continue;
        }
        out.push(Action {
            kind: lang.t("指导约定行动", "Agreed action").into(),
            overdue: !due.is_empty() && due.as_str() < today,
            item,
            owner,
            due,
            status,
            href: format!("/records/{}", url(&id)),
        });
    }
    Ok(out)
}

/// The school's own targets (district-wide tasks belong to the dashboard).
fn school_tasks(conn: &Connection, programme: &str, school: &str, today: &str) -> AppResult<Vec<TaskLine>> {
    let rules = crate::programme::load(conn, programme)?;
    let num = |v: f64| crate::web::page::num(Some(v));
    Ok(reports::tasks(conn, programme, &rules, Some(school), today)?
        .into_iter()
        .map(|t| TaskLine {
            target: format!("{} {}", num(t.target), t.unit),
            achieved: num(t.achieved),
            completion: num(t.completion),
            elapsed: num(t.elapsed),
            status: t.status.unwrap_or(""),
            title: t.title,
            href: format!("/records?school={}&template=task-progress", url(school)),
        })
        .collect())
}

/// The report of one school over a period.
#[allow(clippy::too_many_arguments)]
pub fn report(conn: &Connection, user: &WebUser, lang: Lang, school: &str, from: Option<&str>, to: Option<&str>, today: &str, now: i64) -> AppResult<Report> {
    let term = reports::term(conn, user, today, None)?;
    let valid = |d: Option<&str>| d.filter(|d| shidao_core::date::parse_date(d).is_some()).map(str::to_string);
    let from = valid(from).unwrap_or(term.start.clone());
    let to = valid(to).unwrap_or(term.end.clone());
    let (school_name, category, key_project): (String, String, String) = conn
        .query_row("SELECT name, category, key_project FROM schools WHERE id = ?1", [school], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| AppError::NotFound(format!("school {school} does not exist")))?;
    let p = Period { programme: &term.programme, school, from: &from, to: &to };

    let mut team: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT DISTINCT COALESCE(u.name, r.created_by) FROM records r LEFT JOIN users u ON u.id = r.created_by
             WHERE r.school_id = ?1 AND r.record_date BETWEEN ?2 AND ?3 AND {COUNTED} ORDER BY 1"
        ))?
        .query_map(params![school, from, to], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    team.dedup();
    let statuses: HashMap<String, i64> = conn
        .prepare_cached("SELECT status, COUNT(*) FROM records WHERE school_id = ?1 AND record_date BETWEEN ?2 AND ?3 GROUP BY status")?
        .query_map(params![school, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let of = |s: &str| statuses.get(s).copied().unwrap_or(0);
    let support = forms::carriers(conn, &term.programme, "evaluation.support_school")?;
    let support_school = match pick(conn, school, &support, &to, true)? {
        Some((id, _, template, _)) => match support.name_in(&template) {
            Some(f) => text_in(conn, &id, f)?.unwrap_or_default(),
            None => String::new(),
        },
        None => String::new(),
    };

    let chapters = chapters(conn, &p, 3, lang)?;
    Ok(Report {
        school: school.to_string(),
        number: format!("{}-{}-{}-{}", term.programme, school, from.replace('-', ""), to.replace('-', "")),
        programme_name: term.name.clone(),
        today: today.to_string(),
        cut_off: china_minute(now),
        team,
        support_school,
        experts: expert_names(conn, school)?,
        basics: basics(conn, &p, lang)?,
        work: work(conn, &p, lang)?,
        lessons: lesson_lines(conn, &p)?,
        achievements: narrative(conn, &p, "narrative.achievements")?,
        problems: narrative(conn, &p, "narrative.problems")?,
        recommendations: narrative(conn, &p, "narrative.recommendations")?,
        conclusion: conclusion(conn, &p)?,
        checks: compliance(conn, &p, term.term.as_ref(), today, lang)?,
        actions: actions(conn, &p, today, lang)?,
        tasks: school_tasks(conn, &term.programme, school, today)?,
        counted: of("submitted") + of("approved"),
        awaiting_review: of("submitted"),
        not_counted: of("draft") + of("returned"),
        awaiting_href: format!("/records?school={}&status=submitted&from={}&to={}", url(school), url(&from), url(&to)),
        chapters,
        school_name,
        category,
        key_project,
        from,
        to,
    })
}
