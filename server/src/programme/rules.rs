//! A programme's rule book: the rules its own document states, each with the sentence it comes
//! from, as data (docs/programme.md).
//!
//! The book is JSON with unknown fields refused; [`Rules::validate`] checks what serde cannot
//! (numbers in range, known roles and meanings, terms that do not overlap, unique ids, a source on
//! every rule) and names the rule and the field of the first problem. A rule the document does not
//! state is absent (an empty list or `null`), never filled with another district's number.

use serde::{Deserialize, Serialize};
use shidao_core::date::parse_date;
use shidao_core::template::Role;

use crate::error::AppError;

/// Where a rule comes from: the programme document and the sentence, quoted as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The document's name, e.g. 《瓯海区初中全面提升行动计划》.
    pub document: String,
    /// The sentence, exactly as the document writes it.
    pub sentence: String,
}

/// The whole rule book of one programme.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The programme document's name (what the sources cite).
    #[serde(default)]
    pub document: String,
    /// The semesters (学期) quotas are counted in; entered by the admin, never overlapping.
    #[serde(default)]
    pub terms: Vec<Term>,
    /// The categories a school of the programme may have; empty: schools carry no category.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Lessons a person of a role must observe per term or year.
    #[serde(default)]
    pub lesson_quotas: Vec<LessonQuota>,
    /// Experts assigned to each school (一校一团队), counted from the expert team table.
    #[serde(default)]
    pub expert_team: Option<ExpertTeamRule>,
    /// Visits or logs the experts must make, where a document states it (apart from the team).
    #[serde(default)]
    pub expert_activity: Option<ExpertActivityRule>,
    /// Staffing minima and shares per school (名校长, 名师, 骨干 share …).
    #[serde(default)]
    pub staffing: Vec<StaffingRule>,
    /// The evaluation stages the document names (初态 / 年度 / 中期 / 终期 / 专项 …).
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// The chapters of the school report (一校一报告), where the document gives a structure.
    #[serde(default)]
    pub report: Option<ReportStructure>,
    /// How a task is graded against its time line, where the document states a band.
    #[serde(default)]
    pub task_timeline: Option<TaskTimelineRule>,
    /// Targets every school of the programme must reach (one task per school, made when a
    /// school is added): e.g. 鱼峰 "创建校建成市级及以上常规管理示范校".
    #[serde(default)]
    pub school_targets: Vec<SchoolTarget>,
    /// The programme's indicator bank: the evaluation indicators its schools report on, each
    /// under a chapter of the report structure, with its unit and, where the document states
    /// one, its target.
    #[serde(default)]
    pub indicators: Vec<IndicatorDef>,
}

/// An indicator of the programme's bank. Evaluation records name it (`name`) in their
/// indicator rows (baseline, current, target); the report lists it under `chapter` with the
/// bank's unit and target where the record gives none, and shows an indicator no record
/// reported as such.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorDef {
    pub id: String,
    /// The name as the document and the evaluation records write it (德育工作).
    pub name: String,
    #[serde(default)]
    pub name_en: String,
    /// The id of a chapter of `report`.
    pub chapter: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub target: Option<f64>,
    pub source: Source,
}

/// One semester: `start` and `end` are the first and last day (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    pub id: String,
    pub name: String,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// The category as schools carry it (示范, 实验校, 创建校 …).
    pub name: String,
    pub source: Source,
}

/// The period a count is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Each of the programme's terms.
    Term,
    /// Each school year (two consecutive terms, as the admin enters them).
    Year,
}

/// At least `min` lessons observed per person of `role`, per `per`; counted per named person
/// (each account of that role at the school on its own), submitted or approved records only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonQuota {
    pub id: String,
    /// The observer's role (`principal`, `inspector`, …).
    pub role: String,
    pub min: f64,
    pub per: Per,
    /// Only lessons with this `lesson.purpose` value count (absent: any purpose).
    #[serde(default)]
    pub purpose: Option<String>,
    /// Only lessons at the observer's own school count (瓯海 "在本校听评课").
    #[serde(default)]
    pub own_school: bool,
    pub source: Source,
}

impl LessonQuota {
    /// The role, once the book is validated.
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }
}

/// Experts assigned to each school: at least `min`; with no `min`, the document asks for a team
/// without a number (鱼峰 "为每所创建校配备指导专家"), and only a school with nobody assigned
/// falls short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertTeamRule {
    #[serde(default)]
    pub min: Option<f64>,
    pub source: Source,
}

/// At least `min` guidance logs at each school per `per`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertActivityRule {
    pub min: f64,
    pub per: Per,
    pub source: Source,
}

/// A staffing minimum per school: at least `min_count` people, or at least `min_share` per cent
/// of the school's teachers. `form`/`field` name where the figure is recorded, when a form
/// records it (e.g. `baseline-assessment` · `backbone_share`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffingRule {
    pub id: String,
    /// What is counted, as the document names it (市级名校长, 名师, 骨干 …).
    pub title: String,
    #[serde(default)]
    pub min_count: Option<f64>,
    #[serde(default)]
    pub min_share: Option<f64>,
    #[serde(default)]
    pub form: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    pub source: Source,
}

/// An evaluation stage; `id` is the value the evaluation form records (`initial`, `midterm`,
/// `final`, `special`, `annual` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: String,
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportStructure {
    pub source: Source,
    pub chapters: Vec<Chapter>,
}

/// A report chapter: which evaluation-area meanings (core `evaluation.area.*`) feed it, and the
/// indicators (by name) the document puts under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chapter {
    pub id: String,
    pub title: String,
    /// The title in English (the report's English view); the Chinese title when empty.
    #[serde(default)]
    pub title_en: String,
    #[serde(default)]
    pub meanings: Vec<String>,
    #[serde(default)]
    pub indicators: Vec<String>,
}

/// A task is 预警 while its completion trails the time elapsed by at most `warning_points`
/// percentage points, and 滞后 beyond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTimelineRule {
    pub warning_points: f64,
    pub source: Source,
}

/// A target each school must reach; becomes the task `{id}-{school}` of every school.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolTarget {
    pub id: String,
    pub title: String,
    pub target: f64,
    pub unit: String,
    pub start: String,
    pub due: String,
    pub source: Source,
}

/// The first problem of a rule book: which rule, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}, field {field}: {problem}")]
pub struct RuleError {
    pub rule: String,
    pub field: String,
    pub problem: String,
}

impl From<RuleError> for AppError {
    fn from(e: RuleError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

/// The names of the rules, in the order the pages show them.
pub const RULE_NAMES: &[&str] = &[
    "document",
    "terms",
    "categories",
    "lesson_quotas",
    "expert_team",
    "expert_activity",
    "staffing",
    "stages",
    "report",
    "task_timeline",
    "school_targets",
    "indicators",
];

fn err(rule: impl Into<String>, field: impl Into<String>, problem: impl Into<String>) -> RuleError {
    RuleError { rule: rule.into(), field: field.into(), problem: problem.into() }
}

fn check_source(rule: &str, s: &Source) -> Result<(), RuleError> {
    if s.document.trim().is_empty() {
        return Err(err(rule, "source.document", "name the programme document the rule comes from"));
    }
    if s.sentence.trim().is_empty() {
        return Err(err(rule, "source.sentence", "quote the sentence of the document the rule comes from"));
    }
    Ok(())
}

fn check_id(rule: &str, id: &str, seen: &mut Vec<String>) -> Result<(), RuleError> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(err(rule, "id", format!("`{id}` must be 1–64 letters, digits, `-` or `_`")));
    }
    if seen.iter().any(|s| s == id) {
        return Err(err(rule, "id", format!("`{id}` is used twice")));
    }
    seen.push(id.to_string());
    Ok(())
}

fn check_min(rule: &str, field: &str, v: f64) -> Result<(), RuleError> {
    if !v.is_finite() || v < 0.0 {
        return Err(err(rule, field, format!("{v} must be a number of at least 0")));
    }
    Ok(())
}

fn check_date(rule: &str, field: &str, v: &str) -> Result<(), RuleError> {
    if parse_date(v).is_none() {
        return Err(err(rule, field, format!("`{v}` is not a date YYYY-MM-DD")));
    }
    Ok(())
}

fn roles() -> String {
    ["inspector", "expert", "principal", "supervisor", "admin"].join(", ")
}

impl Rules {
    /// Parses a rule book (unknown fields refused) and validates it.
    pub fn from_json(text: &str) -> Result<Rules, RuleError> {
        let rules: Rules = serde_json::from_str(text).map_err(|e| err("(book)", format!("line {} column {}", e.line(), e.column()), e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    pub fn to_json(&self) -> crate::error::AppResult<String> {
        serde_json::to_string_pretty(self).map_err(|e| crate::error::AppError::Internal(format!("rule book: {e}")))
    }

    /// Checks what the types cannot; the first problem names its rule and field.
    pub fn validate(&self) -> Result<(), RuleError> {
        let mut ids = Vec::new();
        for (i, t) in self.terms.iter().enumerate() {
            let rule = format!("terms[{}]", t.id);
            check_id(&rule, &t.id, &mut ids)?;
            if t.name.trim().is_empty() {
                return Err(err(&rule, "name", "give the term a name (e.g. 2025学年第一学期)"));
            }
            check_date(&rule, "start", &t.start)?;
            check_date(&rule, "end", &t.end)?;
            if t.start > t.end {
                return Err(err(&rule, "end", format!("{} is before the start {}", t.end, t.start)));
            }
            for o in &self.terms[..i] {
                if t.start <= o.end && o.start <= t.end {
                    return Err(err(&rule, "start", format!("{}…{} overlaps term {} ({}…{})", t.start, t.end, o.id, o.start, o.end)));
                }
            }
        }
        let mut names: Vec<String> = Vec::new();
        for c in &self.categories {
            let rule = format!("categories[{}]", c.name);
            let name = c.name.trim();
            if name.is_empty() || name != c.name || name.chars().count() > 40 {
                return Err(err(&rule, "name", "a category is 1–40 characters without surrounding spaces"));
            }
            if names.iter().any(|n| n == name) {
                return Err(err(&rule, "name", format!("`{name}` is listed twice")));
            }
            names.push(name.to_string());
            check_source(&rule, &c.source)?;
        }
        let mut ids = Vec::new();
        for q in &self.lesson_quotas {
            let rule = format!("lesson_quotas[{}]", q.id);
            check_id(&rule, &q.id, &mut ids)?;
            if Role::parse(&q.role).is_none() {
                return Err(err(&rule, "role", format!("unknown role `{}` (one of {})", q.role, roles())));
            }
            check_min(&rule, "min", q.min)?;
            if q.purpose.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(err(&rule, "purpose", "name a lesson purpose value (e.g. principal) or leave it out"));
            }
            check_source(&rule, &q.source)?;
        }
        if let Some(t) = &self.expert_team {
            if let Some(min) = t.min {
                check_min("expert_team", "min", min)?;
            }
            check_source("expert_team", &t.source)?;
        }
        if let Some(a) = &self.expert_activity {
            check_min("expert_activity", "min", a.min)?;
            check_source("expert_activity", &a.source)?;
        }
        let mut ids = Vec::new();
        for s in &self.staffing {
            let rule = format!("staffing[{}]", s.id);
            check_id(&rule, &s.id, &mut ids)?;
            if s.title.trim().is_empty() {
                return Err(err(&rule, "title", "name what is counted"));
            }
            match (s.min_count, s.min_share) {
                (None, None) => return Err(err(&rule, "min_count", "give min_count or min_share")),
                (Some(_), Some(_)) => return Err(err(&rule, "min_share", "give min_count or min_share, not both")),
                (Some(n), None) => check_min(&rule, "min_count", n)?,
                (None, Some(p)) => {
                    check_min(&rule, "min_share", p)?;
                    if p > 100.0 {
                        return Err(err(&rule, "min_share", format!("{p} is a share in per cent, at most 100")));
                    }
                }
            }
            if s.form.is_some() != s.field.is_some() {
                return Err(err(&rule, "field", "name both the form and its field, or neither"));
            }
            check_source(&rule, &s.source)?;
        }
        let mut ids = Vec::new();
        for s in &self.stages {
            let rule = format!("stages[{}]", s.id);
            check_id(&rule, &s.id, &mut ids)?;
            if s.name.trim().is_empty() {
                return Err(err(&rule, "name", "name the stage as the document does"));
            }
            check_source(&rule, &s.source)?;
        }
        if let Some(r) = &self.report {
            check_source("report", &r.source)?;
            if r.chapters.is_empty() {
                return Err(err("report", "chapters", "a report structure has at least one chapter"));
            }
            let mut ids = Vec::new();
            for c in &r.chapters {
                let rule = format!("report.chapters[{}]", c.id);
                check_id(&rule, &c.id, &mut ids)?;
                if c.title.trim().is_empty() {
                    return Err(err(&rule, "title", "give the chapter its title"));
                }
                for m in &c.meanings {
                    if !shidao_core::template::meaning::MEANINGS.iter().any(|(n, _, _)| n == m) {
                        return Err(err(&rule, "meanings", format!("unknown meaning `{m}` (see docs/templates.md)")));
                    }
                }
            }
        }
        if let Some(t) = &self.task_timeline {
            check_min("task_timeline", "warning_points", t.warning_points)?;
            if t.warning_points > 100.0 {
                return Err(err("task_timeline", "warning_points", "percentage points, at most 100"));
            }
            check_source("task_timeline", &t.source)?;
        }
        let mut ids = Vec::new();
        for t in &self.school_targets {
            let rule = format!("school_targets[{}]", t.id);
            check_id(&rule, &t.id, &mut ids)?;
            if t.title.trim().is_empty() || t.unit.trim().is_empty() {
                return Err(err(&rule, "title", "give the target a title and a unit"));
            }
            if !(t.target > 0.0 && t.target.is_finite()) {
                return Err(err(&rule, "target", format!("{} must be a positive number", t.target)));
            }
            check_date(&rule, "start", &t.start)?;
            check_date(&rule, "due", &t.due)?;
            if t.start > t.due {
                return Err(err(&rule, "due", format!("{} is before the start {}", t.due, t.start)));
            }
            check_source(&rule, &t.source)?;
        }
        let (mut ids, mut names) = (Vec::new(), Vec::<&str>::new());
        for i in &self.indicators {
            let rule = format!("indicators[{}]", i.id);
            check_id(&rule, &i.id, &mut ids)?;
            let name = i.name.trim();
            if name.is_empty() || name != i.name || name.chars().count() > 60 {
                return Err(err(&rule, "name", "an indicator's name is 1–60 characters without surrounding spaces"));
            }
            if names.contains(&name) {
                return Err(err(&rule, "name", format!("`{name}` is in the bank twice")));
            }
            names.push(name);
            let chapters: Vec<&str> = self.report.iter().flat_map(|r| r.chapters.iter().map(|c| c.id.as_str())).collect();
            if !chapters.contains(&i.chapter.as_str()) {
                return Err(err(
                    &rule,
                    "chapter",
                    match chapters.is_empty() {
                        true => format!("`{}`: the programme has no report structure to place an indicator in", i.chapter),
                        false => format!("`{}` is not a chapter of the report (one of {})", i.chapter, chapters.join(", ")),
                    },
                ));
            }
            if let Some(t) = i.target
                && !t.is_finite()
            {
                return Err(err(&rule, "target", "the target must be a number"));
            }
            check_source(&rule, &i.source)?;
        }
        Ok(())
    }

    /// The bank's indicators under a chapter of the report, in the bank's order.
    pub fn indicators_of(&self, chapter: &str) -> impl Iterator<Item = &IndicatorDef> {
        self.indicators.iter().filter(move |i| i.chapter == chapter)
    }

    /// The term a date (`YYYY-MM-DD`) falls in.
    pub fn term_of(&self, date: &str) -> Option<&Term> {
        self.terms.iter().find(|t| t.start.as_str() <= date && date <= t.end.as_str())
    }

    /// Whether `category` is allowed for a school: empty always; any when the programme lists no
    /// categories (a school's category is then not checked); else one of the programme's.
    pub fn allows_category(&self, category: &str) -> bool {
        category.is_empty() || self.categories.is_empty() || self.categories.iter().any(|c| c.name == category)
    }

    /// The category names, in order.
    pub fn category_names(&self) -> Vec<&str> {
        self.categories.iter().map(|c| c.name.as_str()).collect()
    }
}

/// The rule book of a programme (an empty book for a programme that has none yet).
pub fn load(conn: &rusqlite::Connection, programme: &str) -> crate::error::AppResult<Rules> {
    super::store::load(conn, programme)
}

/// One line of a rule book for people: the rule, its figure, its source (none for terms and
/// for a rule the document does not state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    pub rule: String,
    pub figure: String,
    pub source: Option<Source>,
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") }
}

fn per(p: Per) -> &'static str {
    match p {
        Per::Term => "每学期",
        Per::Year => "每学年",
    }
}

fn role_zh(role: &str) -> &str {
    Role::parse(role).map_or(role, |r| r.name_zh())
}

/// Every rule of a book with its figure and source, in [`RULE_NAMES`] order; a rule the book
/// does not state appears once as 未规定 (not stated).
pub fn figures(r: &Rules) -> Vec<Figure> {
    let mut out = Vec::new();
    let absent = |out: &mut Vec<Figure>, rule: &str| out.push(Figure { rule: rule.into(), figure: "未规定 (not stated)".into(), source: None });
    if r.terms.is_empty() {
        absent(&mut out, "terms");
    }
    for t in &r.terms {
        out.push(Figure { rule: format!("terms[{}]", t.id), figure: format!("{} {} … {}", t.name, t.start, t.end), source: None });
    }
    if r.categories.is_empty() {
        absent(&mut out, "categories");
    }
    for c in &r.categories {
        out.push(Figure { rule: "categories".into(), figure: c.name.clone(), source: Some(c.source.clone()) });
    }
    if r.lesson_quotas.is_empty() {
        absent(&mut out, "lesson_quotas");
    }
    for q in &r.lesson_quotas {
        let mut f = format!("{}{}听评课 ≥ {} 节（每人）", role_zh(&q.role), per(q.per), num(q.min));
        if q.own_school {
            f.push_str("，在本校");
        }
        if let Some(p) = &q.purpose {
            f.push_str(&format!("，听课类型 {p}"));
        }
        out.push(Figure { rule: format!("lesson_quotas[{}]", q.id), figure: f, source: Some(q.source.clone()) });
    }
    match &r.expert_team {
        None => absent(&mut out, "expert_team"),
        Some(t) => out.push(Figure {
            rule: "expert_team".into(),
            figure: match t.min {
                Some(m) => format!("每校配备指导专家 ≥ {} 名", num(m)),
                None => "每校配备指导专家（未定人数）".into(),
            },
            source: Some(t.source.clone()),
        }),
    }
    match &r.expert_activity {
        None => absent(&mut out, "expert_activity"),
        Some(a) => out.push(Figure {
            rule: "expert_activity".into(),
            figure: format!("每校{}指导 ≥ {} 次", per(a.per), num(a.min)),
            source: Some(a.source.clone()),
        }),
    }
    if r.staffing.is_empty() {
        absent(&mut out, "staffing");
    }
    for s in &r.staffing {
        let f = match (s.min_count, s.min_share) {
            (Some(n), _) => format!("每校{} ≥ {} 名", s.title, num(n)),
            (None, Some(p)) => format!("每校{} ≥ {}%", s.title, num(p)),
            _ => s.title.clone(),
        };
        out.push(Figure { rule: format!("staffing[{}]", s.id), figure: f, source: Some(s.source.clone()) });
    }
    if r.stages.is_empty() {
        absent(&mut out, "stages");
    }
    for s in &r.stages {
        out.push(Figure { rule: format!("stages[{}]", s.id), figure: s.name.clone(), source: Some(s.source.clone()) });
    }
    match &r.report {
        None => absent(&mut out, "report"),
        Some(rep) => {
            let chapters: Vec<String> = rep
                .chapters
                .iter()
                .map(|c| if c.indicators.is_empty() { c.title.clone() } else { format!("{}（{}）", c.title, c.indicators.join("、")) })
                .collect();
            out.push(Figure { rule: "report".into(), figure: chapters.join(" / "), source: Some(rep.source.clone()) });
        }
    }
    match &r.task_timeline {
        None => absent(&mut out, "task_timeline"),
        Some(t) => out.push(Figure {
            rule: "task_timeline".into(),
            figure: format!("完成率落后时间进度 ≤ {} 个百分点为预警，超过为滞后", num(t.warning_points)),
            source: Some(t.source.clone()),
        }),
    }
    for t in &r.school_targets {
        out.push(Figure {
            rule: format!("school_targets[{}]", t.id),
            figure: format!("每校：{} {}{}（{} … {}）", t.title, num(t.target), t.unit, t.start, t.due),
            source: Some(t.source.clone()),
        });
    }
    if r.indicators.is_empty() {
        absent(&mut out, "indicators");
    }
    for i in &r.indicators {
        let chapter = r.report.iter().flat_map(|s| &s.chapters).find(|c| c.id == i.chapter).map(|c| c.title.as_str()).unwrap_or(&i.chapter);
        let mut f = format!("{chapter}：{}", i.name);
        if let Some(t) = i.target {
            f.push_str(&format!("，目标 {}{}", num(t), i.unit));
        } else if !i.unit.is_empty() {
            f.push_str(&format!("（{}）", i.unit));
        }
        out.push(Figure { rule: format!("indicators[{}]", i.id), figure: f, source: Some(i.source.clone()) });
    }
    out
}
