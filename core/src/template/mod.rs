//! Form templates: what a form asks, in Chinese and English, and the logic between its fields.
//!
//! A template is a versioned JSON file (see `docs/templates.md`). Field ids are stable across
//! versions; a record remembers the template id and version it was created from. Templates are
//! checked when loaded ([`Template::from_json`]): a template that refers to an unknown field,
//! repeats an id or has a bad option list is refused with an error naming the file, the field and
//! the problem, so a broken template never reaches a tablet.

mod builtin;
mod check;
mod compat;
pub mod meaning;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::expr::Expr;

pub use builtin::{builtin, builtin_templates, source as builtin_source, BUILTIN_IDS};
pub use compat::{check_successor, Dropped};

/// A text in Chinese (first) and English.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub zh: String,
    pub en: String,
}

impl Label {
    /// The text in the given language (`"zh"` or `"en"`); Chinese for anything else.
    pub fn get(&self, lang: &str) -> &str {
        if lang.starts_with("en") { &self.en } else { &self.zh }
    }
}

/// The kinds of field a form can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One line of text; concurrent edits conflict (both kept).
    Text,
    /// Co-written text: concurrent edits by two people both survive.
    LongText,
    Integer,
    Decimal,
    SingleChoice,
    /// A set of options; two people ticking different options both count.
    MultipleChoice,
    /// A rating on a scale whose levels each carry a description.
    Rating,
    YesNo,
    /// `YYYY-MM-DD`.
    Date,
    /// `HH:MM` (24 h).
    Time,
    /// Whole minutes.
    Duration,
    /// A tally; concurrent increments add up.
    Counter,
    /// A file (photo, scan) referenced by content hash; bytes live outside the record.
    Attachment,
    /// A signature by the signing user, optionally with the image of the stroke by hash.
    Signature,
    /// Rows with stable ids, each holding the group's sub-fields.
    Repeat,
    /// A value computed from other answers; never entered.
    Computed,
    /// Text shown on the form; holds no answer.
    Note,
}

impl FieldKind {
    /// Whether a person enters a value for this kind.
    pub fn holds_answer(self) -> bool {
        !matches!(self, FieldKind::Computed | FieldKind::Note)
    }
}

/// One option of a choice field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Stable code stored in records and exports.
    pub value: String,
    pub label: Label,
}

/// One level of a rating scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleLevel {
    pub value: i64,
    pub label: Label,
    /// What a rater must see to give this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The share of an item's weight this level earns in a weighted score, in percent (优秀 95,
    /// 良好 85, 一般 70 …). Either every level of a scale carries points or none does; without
    /// them a level earns (level − lowest) / (highest − lowest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<f64>,
}

/// `required` is either a plain yes/no or an expression (required only when it holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Required {
    Always(bool),
    When(String),
}

impl Default for Required {
    fn default() -> Self {
        Required::Always(false)
    }
}

/// One field of a template, as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    pub kind: FieldKind,
    pub label: Label,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<Label>,
    #[serde(default)]
    pub required: Required,
    /// Show (and count) the field only when this expression holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevant: Option<String>,
    /// Must hold for a non-empty answer; `.` is the answer itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_message: Option<Label>,
    /// Options of a choice field; on a computed field, labels of its values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// Levels of a rating field, lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<ScaleLevel>,
    /// Inclusive bounds of a number, duration or counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Label>,
    /// Expression of a computed field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// Sub-fields of a repeat group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u32>,
    /// Marks a field of another record this one links to (e.g. observation records of a visit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_to: Option<String>,
}

/// A titled part of a form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub id: String,
    pub label: Label,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevant: Option<String>,
    pub fields: Vec<Field>,
}

/// A band of a score (e.g. 优秀 from 90).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub min: f64,
    pub label: Label,
}

/// A computed score: either a weighted mean of rating fields scaled to `out_of`, or an expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub id: String,
    pub label: Label,
    /// Rating field id → weight. Each answered rating counts as (value − lowest level) /
    /// (highest − lowest) of its weight; the sum is scaled to `out_of` over the answered weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<Weight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of: Option<f64>,
    /// Bands, any order; the highest band whose `min` the score reaches names it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<Band>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weight {
    pub field: String,
    pub weight: f64,
}

/// Roles of the people who use the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Inspector,
    Expert,
    Principal,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inspector => "inspector",
            Role::Expert => "expert",
            Role::Principal => "principal",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// The role's name as the programme documents and the pages write it.
    pub fn name_zh(self) -> &'static str {
        match self {
            Role::Inspector => "视导员",
            Role::Expert => "指导专家",
            Role::Principal => "校长",
            Role::Supervisor => "督导",
            Role::Admin => "管理员",
        }
    }

    /// The role's name in English, for the pages' English view.
    pub fn name_en(self) -> &'static str {
        match self {
            Role::Inspector => "Inspector",
            Role::Expert => "Expert",
            Role::Principal => "Principal",
            Role::Supervisor => "Supervisor",
            Role::Admin => "Admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "inspector" => Role::Inspector,
            "expert" => Role::Expert,
            "principal" => Role::Principal,
            "supervisor" => Role::Supervisor,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Supervisors and admins review records; nobody else may return or approve one.
    pub fn reviews(self) -> bool {
        matches!(self, Role::Supervisor | Role::Admin)
    }
}

/// A template as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub id: String,
    pub version: u32,
    pub title: Label,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Roles that fill this form.
    pub filled_by: Vec<Role>,
    /// Field holding the date the record is about (visit day, lesson day), for listing by date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_field: Option<String>,
    pub sections: Vec<Section>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<Score>,
    /// What fields and scores mean to the programme's reports: meaning → field or score id
    /// (`"lesson.total": "total"`; the names are in [`meaning::MEANINGS`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meanings: std::collections::BTreeMap<String, String>,
}

/// Where a field sits: at the top of the form, or inside a repeat group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Top,
    /// Index of the repeat field in [`Template::fields`].
    Repeat(usize),
}

/// A field with its compiled expressions.
#[derive(Debug, Clone)]
pub struct CompiledField {
    pub def: Field,
    pub section: String,
    pub parent: Parent,
    pub required: Option<Expr>,
    pub relevant: Option<Expr>,
    pub constraint: Option<Expr>,
    pub compute: Option<Expr>,
}

impl CompiledField {
    pub fn id(&self) -> &str {
        &self.def.id
    }
    pub fn kind(&self) -> FieldKind {
        self.def.kind
    }
    /// The option with this code, if the field has one.
    pub fn option(&self, value: &str) -> Option<&Choice> {
        self.def.options.iter().find(|c| c.value == value)
    }
    /// A computed value as a person reads it: the label the template gives that value (e.g.
    /// `1` → 达标, `red` → 滞后) in `lang`, else the value itself.
    pub fn value_label(&self, text: &str, lang: &str) -> String {
        match self.option(text) {
            Some(o) => o.label.get(lang).to_string(),
            None => text.to_string(),
        }
    }

    /// The lowest and highest level of a rating scale.
    pub fn scale_range(&self) -> Option<(i64, i64)> {
        let lo = self.def.scale.iter().map(|l| l.value).min()?;
        let hi = self.def.scale.iter().map(|l| l.value).max()?;
        Some((lo, hi))
    }

    /// The share (0–1) of its weight a rating at `level` earns in a weighted score: the level's
    /// `points` / 100 where the scale carries points, else (level − lowest) / (highest − lowest).
    /// Empty for a level the scale does not have (points) or a field without a scale.
    pub fn level_share(&self, level: f64) -> Option<f64> {
        if self.def.scale.iter().any(|l| l.points.is_some()) {
            return self.def.scale.iter().find(|l| l.value as f64 == level).and_then(|l| l.points).map(|p| p / 100.0);
        }
        let (lo, hi) = self.scale_range()?;
        let span = (hi - lo) as f64;
        Some(if span > 0.0 { (level - lo as f64) / span } else { 1.0 })
    }
}

/// A compiled score.
#[derive(Debug, Clone)]
pub struct CompiledScore {
    pub def: Score,
    pub expr: Option<Expr>,
}

/// A checked, compiled template, ready to build and validate records.
#[derive(Debug, Clone)]
pub struct Template {
    pub def: TemplateDef,
    /// Every field in form order, repeat sub-fields right after their group.
    pub fields: Vec<CompiledField>,
    /// Section relevance, by section id.
    pub section_relevant: HashMap<String, Expr>,
    pub scores: Vec<CompiledScore>,
    index: HashMap<String, usize>,
}

/// The content address of a definition's bytes, as lowercase hex SHA-256: a device checks a
/// delivered definition against it before storing it.
pub fn definition_hash(json: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// A template that cannot be used, with the file, the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {file}: field `{field}`: {problem}")]
pub struct TemplateError {
    pub file: String,
    /// The field (or section, score, or `-` for the whole template) at fault.
    pub field: String,
    pub problem: String,
}

impl Template {
    /// Parses and checks a template; `file` names it in errors.
    pub fn from_json(file: &str, json: &str) -> Result<Template, TemplateError> {
        let def: TemplateDef = serde_json::from_str(json).map_err(|e| TemplateError {
            file: file.to_string(),
            field: "-".into(),
            problem: format!("not a valid template file: {e}"),
        })?;
        check::compile(file, def)
    }

    pub fn id(&self) -> &str {
        &self.def.id
    }
    pub fn version(&self) -> u32 {
        self.def.version
    }

    /// The definition as the registry stores and sync delivers it: the template's JSON in the
    /// canonical form this build writes (the file's content, without its spacing).
    pub fn definition(&self) -> String {
        // A `TemplateDef` is plain data: serialising it cannot fail.
        serde_json::to_string(&self.def).unwrap_or_else(|e| unreachable!("template serialises: {e}"))
    }

    /// The content address of this template: the SHA-256 of [`Template::definition`].
    pub fn hash(&self) -> String {
        definition_hash(&self.definition())
    }

    /// The field or score that carries a report meaning (`lesson.total`), if the form declares it.
    pub fn meaning(&self, name: &str) -> Option<&str> {
        self.def.meanings.get(name).map(String::as_str)
    }

    /// The field with this id, anywhere in the form.
    pub fn field(&self, id: &str) -> Option<&CompiledField> {
        self.index.get(id).map(|&i| &self.fields[i])
    }
    pub fn field_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
    /// Top-level fields, in form order.
    pub fn top_fields(&self) -> impl Iterator<Item = &CompiledField> {
        self.fields.iter().filter(|f| f.parent == Parent::Top)
    }
    /// The sub-fields of a repeat group.
    pub fn sub_fields(&self, repeat_id: &str) -> impl Iterator<Item = &CompiledField> {
        let idx = self.index.get(repeat_id).copied();
        self.fields.iter().filter(move |f| Some(f.parent) == idx.map(Parent::Repeat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_builtins_load_and_are_complete() {
        for id in BUILTIN_IDS {
            let file = format!("core/templates/{id}.json");
            let json = builtin::source(id).expect("embedded");
            let t = match Template::from_json(&file, json) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(t.id(), *id);
            assert!(t.fields.len() >= 10, "{id} has only {} fields", t.fields.len());
            for f in &t.fields {
                assert!(!f.def.label.zh.is_empty() && !f.def.label.en.is_empty(), "{id}.{} lacks a label", f.id());
            }
        }
        assert_eq!(builtin_templates().len(), 6);
    }

    fn minimal(fields: &str) -> String {
        format!(
            r#"{{"id": "t", "version": 1, "title": {{"zh": "表", "en": "Form"}}, "filled_by": ["inspector"],
                "sections": [{{"id": "s", "label": {{"zh": "一", "en": "One"}}, "fields": [{fields}]}}]}}"#
        )
    }

    fn refused(fields: &str) -> TemplateError {
        Template::from_json("bad.json", &minimal(fields)).expect_err("must be refused")
    }

    const L: &str = r#""label": {"zh": "字段", "en": "Field"}"#;

    #[test]
    fn level_points_are_on_every_level_within_0_to_100_and_never_fall() {
        let lv = |v: i64, p: &str| format!(r#"{{"value": {v}, "label": {{"zh": "级", "en": "L"}}{p}}}"#);
        let rating = |levels: &[String]| format!(r#"{{"id": "r", "kind": "rating", {L}, "scale": [{}]}}"#, levels.join(", "));
        let e = refused(&rating(&[lv(1, r#", "points": 50"#), lv(2, "")]));
        assert_eq!(e.field, "r");
        assert!(e.problem.contains("scale level 2 has no `points`"), "{e}");
        let e = refused(&rating(&[lv(1, r#", "points": -5"#), lv(2, r#", "points": 120"#)]));
        assert!(e.problem.contains("points are 0–100"), "{e}");
        let e = refused(&rating(&[lv(1, r#", "points": 70"#), lv(2, r#", "points": 60"#)]));
        assert!(e.problem.contains("scale level 2 earns 60 points, fewer than level 1 (70)"), "{e}");
        let t = Template::from_json("ok.json", &minimal(&rating(&[lv(1, r#", "points": 60"#), lv(2, r#", "points": 90"#)]))).expect("loads");
        let f = t.field("r").expect("field");
        assert_eq!((f.level_share(1.0), f.level_share(2.0), f.level_share(3.0)), (Some(0.6), Some(0.9), None));
        let t = Template::from_json("ok.json", &minimal(&rating(&[lv(1, ""), lv(2, ""), lv(3, "")]))).expect("loads");
        assert_eq!(t.field("r").expect("field").level_share(2.0), Some(0.5), "without points: linear");
    }

    #[test]
    fn template_errors_name_file_field_and_problem() {
        let e = refused(&format!(r#"{{"id": "a", "kind": "integer", {L}, "relevant": "${{nope}} > 1"}}"#));
        assert_eq!((e.file.as_str(), e.field.as_str()), ("bad.json", "a"));
        assert!(e.problem.contains("unknown field `nope`"), "{e}");

        let e = refused(&format!(r#"{{"id": "a", "kind": "text", {L}}}, {{"id": "a", "kind": "text", {L}}}"#));
        assert!(e.problem.contains("used by another field"), "{e}");

        let e = refused(&format!(r#"{{"id": "c", "kind": "single_choice", {L}, "options": []}}"#));
        assert_eq!(e.field, "c");
        assert!(e.problem.contains("at least one option"), "{e}");

        let opt = r#"{"value": "x", "label": {"zh": "甲", "en": "X"}}"#;
        let e = refused(&format!(r#"{{"id": "c", "kind": "multiple_choice", {L}, "options": [{opt}, {opt}]}}"#));
        assert!(e.problem.contains("`x` appears twice"), "{e}");

        let e = refused(&format!(r#"{{"id": "r", "kind": "rating", {L}}}"#));
        assert!(e.problem.contains("needs a scale"), "{e}");

        let e = refused(&format!(r#"{{"id": "k", "kind": "computed", {L}}}"#));
        assert!(e.problem.contains("needs `compute`"), "{e}");

        let e = refused(&format!(r#"{{"id": "k", "kind": "computed", {L}, "compute": "${{k}} + 1"}}"#));
        assert!(e.problem.contains("itself"), "{e}");

        let e = refused(&format!(
            r#"{{"id": "a", "kind": "computed", {L}, "compute": "${{b}}"}}, {{"id": "b", "kind": "computed", {L}, "compute": "${{a}}"}}"#
        ));
        assert!(e.problem.contains("cycle"), "{e}");

        let e = refused(&format!(r#"{{"id": "a", "kind": "integer", {L}, "constraint": ". >"}}"#));
        assert!(e.problem.contains("constraint"), "{e}");

        let e = refused(&format!(r#"{{"id": "Bad", "kind": "text", {L}}}"#));
        assert_eq!(e.field, "Bad");

        let e = refused(&format!(r#"{{"id": "g", "kind": "repeat", {L}, "fields": [{{"id": "h", "kind": "repeat", {L}, "fields": [{{"id": "i", "kind": "text", {L}}}]}}]}}"#));
        assert!(e.problem.contains("cannot hold another repeat"), "{e}");

        let e = refused(&format!(r#"{{"id": "a", "kind": "text", {L}, "colour": "red"}}"#));
        assert!(e.problem.contains("colour"), "{e}");
    }

    #[test]
    fn template_scores_must_weight_ratings() {
        let json = minimal(&format!(r#"{{"id": "a", "kind": "integer", {L}}}"#)).replace(
            r#""sections""#,
            r#""scores": [{"id": "total", "label": {"zh": "总分", "en": "Total"}, "weights": [{"field": "a", "weight": 1}]}], "sections""#,
        );
        let e = Template::from_json("s.json", &json).expect_err("refused");
        assert_eq!(e.field, "total");
        assert!(e.problem.contains("not a rating"), "{e}");
    }
}
