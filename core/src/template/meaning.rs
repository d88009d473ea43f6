//! What a form's fields and scores mean to the programme's reports.
//!
//! A template declares, under `meanings`, which of its fields or scores carries each meaning the
//! reports read (`"lesson.total": "total"`), so that a district's own form with other ids feeds the
//! dashboard and the school report like a built-in one. The vocabulary is fixed here, each name
//! with the kind of target it takes; the loader refuses an unknown name, a target that does not
//! exist or is of the wrong kind, and a rectification sub-field outside the rectification group.
//! A form that declares nothing still gets the record list, the record view and the exports.

use super::{FieldKind, Parent, Template, TemplateError};

/// What a meaning may point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A score, or a computed field, with a number.
    Number,
    /// A field a person answers, of one of these kinds.
    Field(&'static [FieldKind]),
    /// A sub-field of the group named by `rectification.group`, of one of these kinds.
    Rectification(&'static [FieldKind]),
}

const NUMBER_FIELDS: &[FieldKind] = &[FieldKind::Integer, FieldKind::Decimal, FieldKind::Duration, FieldKind::Counter, FieldKind::Computed];
const RATINGS: &[FieldKind] = &[FieldKind::Rating];
const CHOICE: &[FieldKind] = &[FieldKind::SingleChoice];
const TEXT_OR_CHOICE: &[FieldKind] = &[FieldKind::Text, FieldKind::SingleChoice];
const REPEAT: &[FieldKind] = &[FieldKind::Repeat];
const DATE: &[FieldKind] = &[FieldKind::Date];
const ANY_TEXT: &[FieldKind] = &[FieldKind::Text, FieldKind::LongText];
const FLAG: &[FieldKind] = &[FieldKind::Computed];
const LONG_TEXT: &[FieldKind] = &[FieldKind::Text, FieldKind::LongText];
const YES_NO: &[FieldKind] = &[FieldKind::YesNo];

/// Every meaning a report reads: name, target, and what it is.
pub const MEANINGS: &[(&str, Target, &str)] = &[
    ("lesson.total", Target::Number, "the lesson's total score: makes the form a lesson observation"),
    ("lesson.licc.student_learning", Target::Number, "LICC dimension: students' learning"),
    ("lesson.licc.teacher_teaching", Target::Number, "LICC dimension: the teacher's teaching"),
    ("lesson.licc.curriculum", Target::Number, "LICC dimension: curriculum"),
    ("lesson.licc.culture", Target::Number, "LICC dimension: classroom culture"),
    ("lesson.time_on_learning", Target::Number, "share of time students spend learning (%)"),
    ("lesson.agreement_exact", Target::Number, "double coding: exact agreement (%)"),
    ("lesson.agreement_within1", Target::Number, "double coding: agreement within one level (%)"),
    ("lesson.interest", Target::Field(RATINGS), "students' interest (兴趣度)"),
    ("lesson.participation", Target::Field(RATINGS), "students' participation (参与度)"),
    ("lesson.subject", Target::Field(CHOICE), "the lesson's subject"),
    ("lesson.purpose", Target::Field(CHOICE), "why the lesson was observed (e.g. the principal's quota)"),
    ("visit.module.lessons", Target::Field(RATINGS), "visit module rating: lessons observed"),
    ("visit.module.documents", Target::Field(RATINGS), "visit module rating: documents checked"),
    ("visit.module.walk", Target::Field(RATINGS), "visit module rating: site walk"),
    ("visit.module.talks", Target::Field(RATINGS), "visit module rating: talks and interviews"),
    ("visit.module.questionnaires", Target::Field(RATINGS), "visit module rating: questionnaires"),
    ("visit.module.tests", Target::Field(RATINGS), "visit module rating: spot tests"),
    ("rectification.group", Target::Field(REPEAT), "the repeat group holding rectification items"),
    ("rectification.item", Target::Rectification(ANY_TEXT), "a rectification item"),
    ("rectification.owner", Target::Rectification(TEXT_OR_CHOICE), "who is responsible for it"),
    ("rectification.deadline", Target::Rectification(DATE), "its deadline"),
    ("rectification.status", Target::Rectification(CHOICE), "its state"),
    ("rectification.open", Target::Rectification(FLAG), "a computed flag, 1 while the item is open"),
    ("guidance.hours", Target::Field(NUMBER_FIELDS), "hours an expert spent at the school"),
    ("guidance.done_share", Target::Number, "share of earlier agreed actions done (%)"),
    ("evaluation.area.cadre", Target::Number, "development-area score: leadership"),
    ("evaluation.area.teacher", Target::Number, "development-area score: teachers"),
    ("evaluation.area.student", Target::Number, "development-area score: students"),
    ("evaluation.area.resource", Target::Number, "development-area score: resources"),
    ("evaluation.area.curriculum", Target::Number, "development-area score: curriculum and teaching"),
    ("evaluation.area.feature", Target::Number, "development-area score: distinctive programmes"),
    ("task.ref", Target::Field(TEXT_OR_CHOICE), "the programme task a record reports on"),
    ("task.achieved", Target::Number, "the amount it achieved toward the task's target"),
    ("lesson.teacher", Target::Field(TEXT_OR_CHOICE), "the teacher who taught the lesson"),
    ("visit.lessons", Target::Number, "lessons observed during a visit"),
    ("visit.documents_sampled", Target::Number, "documents sampled during a visit"),
    ("visit.people_interviewed", Target::Number, "people interviewed during a visit"),
    ("visit.questionnaires_issued", Target::Number, "questionnaires issued"),
    ("visit.questionnaires_returned", Target::Number, "questionnaires returned"),
    ("visit.tested_students", Target::Number, "students in a spot test"),
    ("visit.test_pass_rate", Target::Number, "a spot test's pass rate (%)"),
    ("narrative.achievements", Target::Field(LONG_TEXT), "what went well (成效, 优点)"),
    ("narrative.problems", Target::Field(LONG_TEXT), "the problems found (存在问题)"),
    ("narrative.recommendations", Target::Field(LONG_TEXT), "recommendations (意见建议)"),
    ("evaluation.overall", Target::Number, "an evaluation's overall score (its band is the score's band)"),
    ("evaluation.conclusion", Target::Field(LONG_TEXT), "an evaluation's written conclusion"),
    ("evaluation.veto", Target::Field(YES_NO), "whether a veto item (一票否决) applies"),
    ("evaluation.veto_items", Target::Field(&[FieldKind::MultipleChoice]), "which veto items apply"),
    ("evaluation.support_school", Target::Field(TEXT_OR_CHOICE), "the paired (support) school"),
    ("guidance.action.item", Target::Field(ANY_TEXT), "an action agreed with the school"),
    ("guidance.action.owner", Target::Field(TEXT_OR_CHOICE), "who is responsible for an agreed action"),
    ("guidance.action.due", Target::Field(DATE), "an agreed action's deadline"),
    ("guidance.action.status", Target::Field(CHOICE), "an agreed action's state (`done` and `dropped` close it)"),
    ("baseline.category", Target::Field(CHOICE), "the school's category at the baseline"),
    ("baseline.classes", Target::Number, "teaching classes"),
    ("baseline.enrolment", Target::Number, "students enrolled"),
    ("baseline.teachers", Target::Number, "full-time teachers"),
    ("baseline.backbone_share", Target::Number, "share of county-level and higher backbone teachers (%)"),
    ("baseline.indicators_met", Target::Number, "how many of the seven balanced-development indicators are met"),
    ("baseline.balanced_met", Target::Number, "1 when resources meet the balanced-development standard"),
    ("baseline.ratio.qualified", Target::Number, "indicator 1: teachers above the required degree per 100 students"),
    ("baseline.ratio.qualified_met", Target::Number, "indicator 1 met (1/0)"),
    ("baseline.ratio.backbone", Target::Number, "indicator 2: backbone teachers per 100 students"),
    ("baseline.ratio.backbone_met", Target::Number, "indicator 2 met (1/0)"),
    ("baseline.ratio.pe_art", Target::Number, "indicator 3: PE and art teachers per 100 students"),
    ("baseline.ratio.pe_art_met", Target::Number, "indicator 3 met (1/0)"),
    ("baseline.ratio.building", Target::Number, "indicator 4: teaching building area per student"),
    ("baseline.ratio.building_met", Target::Number, "indicator 4 met (1/0)"),
    ("baseline.ratio.sports", Target::Number, "indicator 5: sports area per student"),
    ("baseline.ratio.sports_met", Target::Number, "indicator 5 met (1/0)"),
    ("baseline.ratio.equipment", Target::Number, "indicator 6: equipment value per student"),
    ("baseline.ratio.equipment_met", Target::Number, "indicator 6 met (1/0)"),
    ("baseline.ratio.multimedia", Target::Number, "indicator 7: multimedia rooms per 100 students"),
    ("baseline.ratio.multimedia_met", Target::Number, "indicator 7 met (1/0)"),
];

/// Checks a compiled template's `meanings`.
pub(super) fn check(file: &str, t: &Template) -> Result<(), TemplateError> {
    let err = |field: &str, problem: String| TemplateError { file: file.to_string(), field: field.to_string(), problem };
    for (name, target_id) in &t.def.meanings {
        let Some((_, target, _)) = MEANINGS.iter().find(|(n, _, _)| n == name) else {
            return Err(err("meanings", format!("unknown meaning `{name}` (see docs/templates.md for the list)")));
        };
        let field = t.field(target_id);
        let is_score = t.def.scores.iter().any(|s| s.id == *target_id);
        let ok = match target {
            Target::Number => is_score || field.is_some_and(|f| NUMBER_FIELDS.contains(&f.kind())),
            Target::Field(kinds) => field.is_some_and(|f| kinds.contains(&f.kind())),
            Target::Rectification(kinds) => {
                let group = t.def.meanings.get("rectification.group").and_then(|g| t.field_index(g));
                field.is_some_and(|f| kinds.contains(&f.kind()) && group.is_some_and(|g| f.parent == Parent::Repeat(g)))
            }
        };
        if !ok {
            let wanted = match target {
                Target::Number => "a score or a number field".to_string(),
                Target::Field(kinds) => format!("a field of kind {kinds:?}").to_lowercase(),
                Target::Rectification(kinds) => format!("a sub-field of `rectification.group` of kind {kinds:?}").to_lowercase(),
            };
            let found = match (field, is_score) {
                (Some(f), _) => format!("`{target_id}` is {:?}", f.kind()).to_lowercase(),
                (None, true) => format!("`{target_id}` is a score"),
                (None, false) => format!("there is no field or score `{target_id}`"),
            };
            return Err(err("meanings", format!("`{name}` must name {wanted}; {found}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::builtin_templates;

    #[test]
    fn the_builtins_declare_what_the_reports_read() {
        let t = |id: &str| builtin_templates().iter().find(|t| t.id() == id).cloned().expect("built-in");
        assert_eq!(t("classroom-observation").meaning("lesson.total"), Some("total"));
        assert_eq!(t("inspection-visit").meaning("rectification.deadline"), Some("rect_deadline"));
        assert_eq!(t("guidance-log").meaning("guidance.hours"), Some("hours"));
        assert_eq!(t("supervision-evaluation").meaning("evaluation.area.cadre"), Some("score_cadre"));
        assert_eq!(t("task-progress").meaning("task.achieved"), Some("achieved"));
    }

    #[test]
    fn wrong_meanings_are_refused_naming_them() {
        let form = |meanings: &str| {
            let json = format!(
                r#"{{"id": "t", "version": 1, "title": {{"zh": "表", "en": "Form"}}, "filled_by": ["inspector"], "meanings": {meanings},
                    "sections": [{{"id": "s", "label": {{"zh": "一", "en": "One"}}, "fields": [
                      {{"id": "a", "kind": "text", "label": {{"zh": "甲", "en": "A"}}}},
                      {{"id": "g", "kind": "repeat", "label": {{"zh": "乙", "en": "G"}}, "fields": [{{"id": "d", "kind": "date", "label": {{"zh": "丙", "en": "D"}}}}]}},
                      {{"id": "d2", "kind": "date", "label": {{"zh": "丁", "en": "D2"}}}}]}}]}}"#
            );
            super::super::Template::from_json("t.json", &json)
        };
        let e = form(r#"{"lesson.totl": "a"}"#).expect_err("unknown");
        assert!(e.problem.contains("unknown meaning `lesson.totl`"), "{e}");
        let e = form(r#"{"lesson.total": "a"}"#).expect_err("not a number");
        assert!(e.problem.contains("`lesson.total` must name a score or a number field; `a` is text"), "{e}");
        let e = form(r#"{"rectification.group": "g", "rectification.deadline": "d2"}"#).expect_err("outside the group");
        assert!(e.problem.contains("sub-field of `rectification.group`"), "{e}");
        form(r#"{"rectification.group": "g", "rectification.deadline": "d"}"#).expect("inside the group");
        let e = form(r#"{"task.ref": "nope"}"#).expect_err("missing");
        assert!(e.problem.contains("no field or score `nope`"), "{e}");
    }
}
