//! Evaluating a record against its template: relevance, required answers, constraints, computed
//! values and scores. Pure: it reads the document and never changes it.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::answer::constraint_message;
use super::{Answer, FieldRef, InvalidAnswer, Record};
use crate::expr::{Env, EValue, Expr};
use crate::ids::RowId;
use crate::template::{CompiledField, FieldKind, Label, Parent, Required, Template};

/// What kind of problem a validation issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// A required answer is missing.
    Missing,
    /// An answer breaks its constraint.
    Constraint,
    /// A repeat group has too few rows.
    Rows,
    /// Two people set the field concurrently; someone should pick one (does not block submit).
    Conflict,
}

/// One problem with a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub field: FieldRef,
    pub kind: IssueKind,
    pub message: Label,
}

/// The problems of a record, and the fields its relevance rules hide.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationReport {
    pub issues: Vec<Issue>,
    /// Fields (answered or not) hidden by relevance; their answers do not count.
    pub hidden: Vec<FieldRef>,
}

impl ValidationReport {
    /// Issues that stop the record from being submitted.
    pub fn blocking(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.kind != IssueKind::Conflict)
    }
    /// No missing answer, failed constraint or short repeat.
    pub fn is_clean(&self) -> bool {
        self.blocking().next().is_none()
    }
}

/// A computed field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedValue {
    pub field: FieldRef,
    /// The number, when the value is one.
    pub number: Option<f64>,
    /// The value as text (empty when it cannot be computed yet).
    pub text: String,
}

/// A score with its band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreValue {
    pub id: String,
    pub label: Label,
    pub value: Option<f64>,
    pub out_of: Option<f64>,
    pub band: Option<Label>,
}

pub(crate) struct Evaluated {
    pub report: ValidationReport,
    pub computed: Vec<ComputedValue>,
    pub scores: Vec<ScoreValue>,
}

/// The answers of a record as expressions see them, with lazy relevance and computed values.
struct Values<'t> {
    template: &'t Template,
    top: HashMap<String, EValue>,
    /// Repeat id → rows (id, sub-field → value).
    rows: HashMap<String, Vec<(RowId, HashMap<String, EValue>)>>,
    scores: HashMap<String, EValue>,
    today: String,
    memo: RefCell<HashMap<(String, Option<usize>), EValue>>,
    depth: RefCell<u32>,
}

/// Evaluation from one place in the form: top level, or inside one row of a repeat.
struct At<'v, 't> {
    values: &'v Values<'t>,
    row: Option<(&'v str, usize)>,
    current: EValue,
}

const MAX_DEPTH: u32 = 64;

impl Values<'_> {
    fn raw(&self, f: &CompiledField, row: Option<usize>) -> EValue {
        match (f.parent, row) {
            (Parent::Top, _) => self.top.get(f.id()).cloned().unwrap_or(EValue::Empty),
            (Parent::Repeat(gi), Some(r)) => {
                let group = self.template.fields[gi].id();
                self.rows
                    .get(group)
                    .and_then(|rows| rows.get(r))
                    .and_then(|(_, m)| m.get(f.id()).cloned())
                    .unwrap_or(EValue::Empty)
            }
            (Parent::Repeat(_), None) => EValue::Empty,
        }
    }

    fn row_count(&self, repeat: &str) -> usize {
        self.rows.get(repeat).map_or(0, Vec::len)
    }

    /// Whether a field (in a row, for sub-fields) is relevant: its section's rule, its group's
    /// rule and its own rule all hold.
    fn relevant(&self, f: &CompiledField, row: Option<usize>) -> bool {
        if let Some(e) = self.template.section_relevant.get(&f.section) {
            if !self.eval_guarded(e, f, row, EValue::Empty).truthy() {
                return false;
            }
        }
        if let Parent::Repeat(gi) = f.parent {
            if !self.relevant(&self.template.fields[gi], None) {
                return false;
            }
        }
        match &f.relevant {
            Some(e) => self.eval_guarded(e, f, row, EValue::Empty).truthy(),
            None => true,
        }
    }

    fn eval_guarded(&self, e: &Expr, f: &CompiledField, row: Option<usize>, current: EValue) -> EValue {
        {
            let mut d = self.depth.borrow_mut();
            if *d >= MAX_DEPTH {
                return EValue::Empty;
            }
            *d += 1;
        }
        let group = match f.parent {
            Parent::Repeat(gi) => Some(self.template.fields[gi].id()),
            Parent::Top => None,
        };
        let at = At { values: self, row: group.zip(row), current };
        let v = e.eval(&at);
        *self.depth.borrow_mut() -= 1;
        v
    }

    /// The value of a field as seen by expressions: empty when hidden; computed when computed.
    fn value(&self, f: &CompiledField, row: Option<usize>) -> EValue {
        let key = (f.id().to_string(), row);
        if let Some(v) = self.memo.borrow().get(&key) {
            return v.clone();
        }
        let v = if !self.relevant(f, row) {
            EValue::Empty
        } else if let Some(e) = &f.compute {
            self.eval_guarded(e, f, row, EValue::Empty)
        } else {
            self.raw(f, row)
        };
        self.memo.borrow_mut().insert(key, v.clone());
        v
    }
}

impl Env for At<'_, '_> {
    fn lookup(&self, name: &str) -> EValue {
        let v = self.values;
        let Some(f) = v.template.field(name) else {
            return v.scores.get(name).cloned().unwrap_or(EValue::Empty);
        };
        match f.parent {
            Parent::Top if f.kind() == FieldKind::Repeat => {
                // The rows themselves: one (non-empty) list per row, so count() counts rows.
                let n = v.row_count(name);
                EValue::List((0..n).map(|_| EValue::List(vec![EValue::Bool(true)])).collect())
            }
            Parent::Top => v.value(f, None),
            Parent::Repeat(gi) => {
                let group = v.template.fields[gi].id();
                match self.row {
                    Some((g, r)) if g == group => v.value(f, Some(r)),
                    _ => EValue::List((0..v.row_count(group)).map(|r| v.value(f, Some(r))).collect()),
                }
            }
        }
    }

    fn current(&self) -> EValue {
        self.current.clone()
    }

    fn today(&self) -> String {
        self.values.today.clone()
    }
}

fn bare(field: FieldRef, answer: Answer) -> super::AnswerView {
    super::AnswerView { field, answer: Some(answer), by: None, conflicts: Vec::new() }
}

fn is_required(values: &Values<'_>, f: &CompiledField, row: Option<usize>) -> bool {
    match &f.def.required {
        Required::Always(b) => *b,
        Required::When(_) => f
            .required
            .as_ref()
            .is_some_and(|e| values.eval_guarded(e, f, row, EValue::Empty).truthy()),
    }
}

fn missing_message(f: &CompiledField) -> Label {
    Label { zh: format!("“{}”为必填项", f.def.label.zh), en: format!("“{}” is required", f.def.label.en) }
}

impl Record {
    /// Every answer as expressions see it, read from the document (winning values only: no
    /// authors or conflicts, which an edit's constraint check does not need).
    fn values(&self) -> Values<'_> {
        let mut answers = Vec::new();
        for f in self.template.top_fields() {
            match f.kind() {
                FieldKind::Repeat => {
                    let subs: Vec<&CompiledField> = self.template.sub_fields(f.id()).collect();
                    for row in self.row_ids(f.id()).unwrap_or_default() {
                        let Ok(parent) = self.container(&FieldRef::in_row(subs[0].id(), &row)) else { continue };
                        for sub in subs.iter().filter(|s| s.kind().holds_answer()) {
                            if let Some(a) = self.read_answer_at(&parent, sub) {
                                answers.push(bare(FieldRef::in_row(sub.id(), &row), a));
                            }
                        }
                    }
                }
                k if k.holds_answer() => {
                    if let Some(a) = self.read_answer_at(&self.answers, f) {
                        answers.push(bare(FieldRef::top(f.id()), a));
                    }
                }
                _ => {}
            }
        }
        self.values_from(&answers)
    }

    /// Every answer as expressions see it, from answers already read.
    fn values_from(&self, answers: &[super::AnswerView]) -> Values<'_> {
        let mut top = HashMap::new();
        let mut by_row: HashMap<&RowId, HashMap<String, EValue>> = HashMap::new();
        for a in answers {
            let Some(answer) = &a.answer else { continue };
            match &a.field.row {
                None => {
                    top.insert(a.field.field.clone(), answer.to_evalue());
                }
                Some(row) => {
                    by_row.entry(row).or_default().insert(a.field.field.clone(), answer.to_evalue());
                }
            }
        }
        let mut rows = HashMap::new();
        for f in self.template.top_fields().filter(|f| f.kind() == FieldKind::Repeat) {
            let list: Vec<(RowId, HashMap<String, EValue>)> = self
                .row_ids(f.id())
                .unwrap_or_default()
                .into_iter()
                .map(|row| {
                    let m = by_row.remove(&row).unwrap_or_default();
                    (row, m)
                })
                .collect();
            rows.insert(f.id().to_string(), list);
        }
        Values {
            template: &self.template,
            top,
            rows,
            scores: HashMap::new(),
            today: self.clock.today(),
            memo: RefCell::new(HashMap::new()),
            depth: RefCell::new(0),
        }
    }

    /// A constraint that can be judged now (every field it reads is answered) must hold for a new
    /// answer; one that reads unanswered fields waits for the validation report.
    pub(super) fn check_constraint_now(&self, field: &CompiledField, at: &FieldRef, answer: &Answer) -> Option<InvalidAnswer> {
        let e = field.constraint.as_ref()?;
        if answer.is_blank() {
            return None;
        }
        let values = self.values();
        let row = self.row_index(at);
        let env = At {
            values: &values,
            row: match field.parent {
                Parent::Repeat(gi) => row.map(|r| (self.template.fields[gi].id(), r)),
                Parent::Top => None,
            },
            current: EValue::Empty,
        };
        if e.refs().iter().any(|r| env.lookup(r).is_empty()) {
            return None;
        }
        let env = At { current: answer.to_evalue(), ..env };
        if e.eval(&env).truthy() {
            return None;
        }
        let msg = constraint_message(field);
        Some(InvalidAnswer { field: field.def.id.clone(), label: field.def.label.zh.clone(), problem: msg.zh })
    }

    fn row_index(&self, at: &FieldRef) -> Option<usize> {
        let row = at.row.as_ref()?;
        let f = self.template.field(&at.field)?;
        let Parent::Repeat(gi) = f.parent else { return None };
        self.row_ids(self.template.fields[gi].id()).ok()?.iter().position(|r| r == row)
    }

    /// The validation report alone.
    pub fn validate(&self) -> ValidationReport {
        self.evaluate().report
    }

    /// Computed scores alone.
    pub fn scores(&self) -> Vec<ScoreValue> {
        self.evaluate().scores
    }

    /// Computed fields alone.
    pub fn computed(&self) -> Vec<ComputedValue> {
        self.evaluate().computed
    }

    pub(crate) fn evaluate(&self) -> Evaluated {
        self.evaluate_with(&self.answers())
    }

    /// Evaluates with the answers already read (conflicts come from them).
    pub(crate) fn evaluate_with(&self, answers: &[super::AnswerView]) -> Evaluated {
        let mut values = self.values_from(answers);
        let mut report = ValidationReport::default();
        let mut computed = Vec::new();
        let t = self.template.clone();

        let mut check_field = |values: &Values<'_>, f: &CompiledField, at: FieldRef, row: Option<usize>, report: &mut ValidationReport| {
            if !values.relevant(f, row) {
                if f.kind().holds_answer() {
                    report.hidden.push(at);
                }
                return;
            }
            match f.kind() {
                FieldKind::Note => {}
                FieldKind::Computed => {
                    let v = values.value(f, row);
                    computed.push(ComputedValue { field: at, number: v.as_num().filter(|_| !matches!(v, EValue::Str(_))), text: v.to_string() });
                }
                _ => {
                    let v = values.raw(f, row);
                    if v.is_empty() {
                        if is_required(values, f, row) {
                            report.issues.push(Issue { field: at, kind: IssueKind::Missing, message: missing_message(f) });
                        }
                    } else if let Some(e) = &f.constraint {
                        if !values.eval_guarded(e, f, row, v).truthy() {
                            report.issues.push(Issue { field: at, kind: IssueKind::Constraint, message: constraint_message(f) });
                        }
                    }
                }
            }
        };

        for f in t.top_fields() {
            if f.kind() != FieldKind::Repeat {
                check_field(&values, f, FieldRef::top(f.id()), None, &mut report);
                continue;
            }
            if !values.relevant(f, None) {
                report.hidden.push(FieldRef::top(f.id()));
                continue;
            }
            let rows: Vec<RowId> = values.rows.get(f.id()).map(|r| r.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default();
            let min = f.def.min_rows.unwrap_or(0).max(u32::from(is_required(&values, f, None)));
            if (rows.len() as u32) < min {
                report.issues.push(Issue {
                    field: FieldRef::top(f.id()),
                    kind: IssueKind::Rows,
                    message: Label {
                        zh: format!("“{}”至少需要 {} 行", f.def.label.zh, min),
                        en: format!("“{}” needs at least {} row(s)", f.def.label.en, min),
                    },
                });
            }
            for (i, row) in rows.iter().enumerate() {
                for s in t.sub_fields(f.id()) {
                    check_field(&values, s, FieldRef::in_row(s.id(), row), Some(i), &mut report);
                }
            }
        }

        for a in answers.iter().filter(|a| !a.conflicts.is_empty()).cloned() {
            let label = t.field(&a.field.field).map(|f| f.def.label.clone());
            let (zh, en) = label.map(|l| (l.zh, l.en)).unwrap_or_default();
            report.issues.push(Issue {
                field: a.field,
                kind: IssueKind::Conflict,
                message: Label {
                    zh: format!("“{zh}”有 {} 个并存的值，请选定一个", a.conflicts.len()),
                    en: format!("“{en}” has {} concurrent values; pick one", a.conflicts.len()),
                },
            });
        }

        let mut scores = Vec::new();
        for s in &t.scores {
            let value = if s.def.weights.is_empty() {
                s.expr.as_ref().and_then(|e| e.eval(&At { values: &values, row: None, current: EValue::Empty }).as_num())
            } else {
                weighted(&values, &t, &s.def.weights, s.def.out_of.unwrap_or(100.0))
            };
            let band = value.and_then(|v| {
                s.def
                    .bands
                    .iter()
                    .filter(|b| v + 1e-9 >= b.min)
                    .max_by(|a, b| a.min.total_cmp(&b.min))
                    .map(|b| b.label.clone())
            });
            values.scores.insert(s.def.id.clone(), value.map_or(EValue::Empty, EValue::Num));
            values.memo.borrow_mut().clear();
            scores.push(ScoreValue {
                id: s.def.id.clone(),
                label: s.def.label.clone(),
                value: value.map(|v| (v * 100.0).round() / 100.0),
                out_of: s.def.out_of,
                band,
            });
        }
        Evaluated { report, computed, scores }
    }
}

fn weighted(values: &Values<'_>, t: &Template, weights: &[crate::template::Weight], out_of: f64) -> Option<f64> {
    let (mut got, mut total) = (0.0, 0.0);
    for w in weights {
        let f = t.field(&w.field)?;
        if let Some(share) = values.value(f, None).as_num().and_then(|v| f.level_share(v)) {
            got += w.weight * share;
            total += w.weight;
        }
    }
    if total > 0.0 { Some(got / total * out_of) } else { None }
}
