//! What a school report (一校一报告) says, as plain data: the queries fill it, the template
//! `templates/report.html` renders it. Every figure carries the link to the records behind it.

use std::borrow::Borrow;

/// One chapter of the programme's report structure.
#[derive(Debug, Clone)]
pub struct Chapter {
    pub id: String,
    pub title_zh: String,
    pub title_en: String,
    /// The development areas the chapter covers: the meaning of each area's evaluation score
    /// (e.g. `evaluation.area.cadre`) and the stem of the evaluation form's indicator rows for it
    /// (`cadre` reads the repeat `cadre_indicators` with `cadre_indicator`, `_baseline`,
    /// `_current`, `_target`). The chapter's score is the mean of its areas' scores.
    pub areas: Vec<(String, String)>,
    /// What the programme document lists under the chapter (评价内容).
    pub points: Vec<String>,
}

/// A compliance check: one programme rule, the figure, met or not, and the rule's sentence.
#[derive(Debug, Clone)]
pub struct Check {
    pub rule: String,
    pub figure: String,
    pub met: bool,
    /// False when nothing records the figure (or no term is set): neither met nor failed.
    pub judged: bool,
    pub source: String,
    pub href: String,
}

/// A number with the records behind it.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    pub value: Option<f64>,
    pub href: String,
}

impl Figure {
    pub fn show(&self) -> String {
        super::super::page::num(self.value)
    }
}

#[derive(Debug, Clone)]
pub struct Indicator {
    pub label: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

/// 一、学校基本情况, from the latest baseline assessment.
#[derive(Debug, Clone, Default)]
pub struct Basics {
    pub href: String,
    pub date: String,
    pub category: String,
    pub classes: Option<f64>,
    pub enrolment: Option<f64>,
    pub teachers: Option<f64>,
    pub backbone_share: Option<f64>,
    pub indicators: Vec<Indicator>,
    pub indicators_met: Option<f64>,
    pub balanced_met: Option<bool>,
}

/// 二、工作开展情况.
#[derive(Debug, Clone, Default)]
pub struct Work {
    pub visits: Figure,
    pub visit_lessons: Figure,
    pub observations: Figure,
    /// The mean of the counted observations' lesson scores.
    pub lesson_mean: Figure,
    pub by_subject: Vec<(String, i64, String)>,
    pub by_role: Vec<(String, i64, String)>,
    pub documents: Figure,
    pub people: Figure,
    pub issued: Figure,
    pub returned: Figure,
    pub return_rate: Option<f64>,
    pub tested: Figure,
    pub pass_rate: Figure,
    pub guidance_logs: Figure,
    pub guidance_hours: Figure,
}

/// 兴趣度 and 参与度 of the lessons observed, per subject and teacher.
#[derive(Debug, Clone)]
pub struct LessonLine {
    pub subject: String,
    pub teacher: String,
    pub lessons: i64,
    pub interest: Option<f64>,
    pub participation: Option<f64>,
    pub href: String,
}

#[derive(Debug, Clone)]
pub struct IndicatorRow {
    pub name: String,
    pub unit: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    pub target: Option<f64>,
    /// Against the programme's indicator bank: None when the programme keeps none, else whether
    /// the bank lists the indicator.
    pub bank: Option<bool>,
}

impl IndicatorRow {
    /// Whether no record reported a figure for it (a bank indicator still to be reported).
    pub fn unreported(&self) -> bool {
        self.baseline.is_none() && self.current.is_none()
    }

    pub fn added(&self) -> Option<f64> {
        Some(self.current? - self.baseline?)
    }
}

/// A chapter as the report shows it.
#[derive(Debug, Clone)]
pub struct ChapterView {
    pub number: String,
    pub title: String,
    pub points: Vec<String>,
    pub first: Figure,
    pub latest: Figure,
    pub added: Option<f64>,
    pub indicators: Vec<IndicatorRow>,
    pub findings: Vec<Note>,
}

/// A passage of text written in a record.
#[derive(Debug, Clone)]
pub struct Note {
    pub text: String,
    pub date: String,
    pub href: String,
}

#[derive(Debug, Clone)]
pub struct Conclusion {
    pub score: Option<f64>,
    pub band: String,
    pub veto: bool,
    pub veto_items: String,
    pub text: String,
    pub date: String,
    pub href: String,
}

/// An open action: a visit's rectification or an action agreed in a guidance log.
#[derive(Debug, Clone)]
pub struct Action {
    pub kind: String,
    pub item: String,
    pub owner: String,
    pub due: String,
    pub status: String,
    pub overdue: bool,
    pub href: String,
}

#[derive(Debug, Clone)]
pub struct TaskLine {
    pub title: String,
    pub target: String,
    pub achieved: String,
    pub completion: String,
    pub elapsed: String,
    pub status: &'static str,
    pub href: String,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub school: String,
    pub school_name: String,
    pub category: String,
    pub key_project: String,
    pub programme_name: String,
    pub number: String,
    pub from: String,
    pub to: String,
    pub today: String,
    pub cut_off: String,
    pub team: Vec<String>,
    pub support_school: String,
    pub experts: Vec<String>,
    pub basics: Option<Basics>,
    pub work: Work,
    pub lessons: Vec<LessonLine>,
    pub chapters: Vec<ChapterView>,
    pub achievements: Vec<Note>,
    pub problems: Vec<Note>,
    pub recommendations: Vec<Note>,
    pub conclusion: Option<Conclusion>,
    pub checks: Vec<Check>,
    pub actions: Vec<Action>,
    pub tasks: Vec<TaskLine>,
    pub counted: i64,
    pub awaiting_review: i64,
    pub not_counted: i64,
    pub awaiting_href: String,
}

/// A number for the page (one decimal at most, a dash for none), by value or reference.
pub fn n(v: impl Borrow<Option<f64>>) -> String {
    super::super::page::num(*v.borrow())
}

/// Chinese numerals for the chapters (一 … 二十).
pub fn numeral(i: impl Borrow<usize>) -> String {
    let i = *i.borrow();
    const N: [&str; 10] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
    match i {
        1..=10 => N[i - 1].to_string(),
        11..=19 => format!("十{}", N[i - 11]),
        _ => format!("二十{}", if i > 20 { N[(i - 21) % 10] } else { "" }),
    }
}
