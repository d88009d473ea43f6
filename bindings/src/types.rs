//! The values that cross the boundary: templates as a form screen draws them, answers, and a
//! record as read.
//!
//! Most are the core's own types, exported as they are with `#[uniffi::remote(..)]`: the
//! definition written here only tells uniffi the fields (the compiler checks it against the core
//! type, so a field added in the core and not here fails to build), and no conversion is
//! written. They stay in the bindings' own namespace (Kotlin `uniffi.shidao`, Python `shidao`,
//! the Swift module), under the names the apps already know (`RecordStatus` is the core's
//! `Status`, `RepeatRows` its `RowView`, `ReviewStep` its `ReviewEntry`, `FieldPlace` its
//! `FieldRef`). The core's ids cross as strings (`custom_type!`): a malformed one from the app is
//! `ShidaoError.InvalidAnswer` naming the id's kind, as before.
//!
//! The types defined here instead are the ones whose conversion does real work: a bilingual
//! `Label` resolved to the requested language (templates, issues, scores), an answer displayed
//! for a person (`FieldAnswer`), a shape the apps' code relies on (`AnswerValue` with named
//! fields and a flat attachment and signature), or a value the core computes on request
//! (`SetAsideEntry.kept_aside`).

use shidao_core::record::{self as core_record, AttachmentRef, FieldRef, ReviewEntry, RowView, SignatureRef};
use shidao_core::store as core_store;
use shidao_core::template::{self as core_template, Label};
use shidao_core::{Answer, RecordId, RowId, SchoolId, Status};

use crate::error::{Result, ShidaoError};

// The core types exported as they are, named for Rust callers as the apps name them.
pub use shidao_core::record::{Authorship, FieldRef as FieldPlace, IssueKind, ReviewEntry as ReviewStep, RowView as RepeatRows};
pub use shidao_core::store::{Durability, RecordFilter, RecordSummary};
pub use shidao_core::template::{FieldKind, Role};
pub use shidao_core::Status as RecordStatus;
pub use shidao_core::{DeviceId, Editor, UserId};

// ---------------------------------------------------------------------------------------------
// Ids: strings on the other side, checked on the way in
// ---------------------------------------------------------------------------------------------

macro_rules! id_as_string {
    ($($id:ident),*) => {$(
        uniffi::custom_type!($id, String, {
            remote,
            try_lift: |s| Ok($id::new(s).map_err(ShidaoError::from)?),
            lower: |id| id.into(),
        });
    )*};
}

id_as_string!(RecordId, SchoolId, RowId, UserId, DeviceId);

// ---------------------------------------------------------------------------------------------
// Who edits
// ---------------------------------------------------------------------------------------------

/// The roles of the people who use the apps.
#[uniffi::remote(Enum)]
pub enum Role {
    Inspector,
    Expert,
    Principal,
    Supervisor,
    Admin,
}

/// Who is editing: every change they make carries their user and device, and the role decides
/// what they may do (fill, submit, return, approve). The ids are strings to the app, checked on
/// the way in (a malformed one is `InvalidAnswer` naming `user` or `device`).
#[uniffi::remote(Record)]
pub struct Editor {
    /// The person's account id.
    pub user: UserId,
    /// This tablet's id (one per installation of the app).
    pub device: DeviceId,
    pub role: Role,
}

/// How hard a save waits for the disk.
#[uniffi::remote(Enum)]
pub enum Durability {
    /// Every acknowledged edit survives a power cut (the default).
    Full,
    /// Survives the app being killed, not a power cut; faster.
    Normal,
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// The kinds of field a form can hold.
#[uniffi::remote(Enum)]
pub enum FieldKind {
    /// One line of text.
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
    /// A file (photo, scan) stored in the store by content hash.
    Attachment,
    /// A signature by the signing user.
    Signature,
    /// Rows with stable ids, each holding the group's sub-fields.
    Repeat,
    /// A value computed from other answers; never entered.
    Computed,
    /// Text shown on the form; holds no answer.
    Note,
}

// The template types below are defined here, not taken from the core: every label of the core
// is bilingual (`Label`), and the app gets it in the one language it asks for.

/// One option of a choice field.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChoiceOption {
    /// The stable code stored in records (what `AnswerValue.Choice` takes).
    pub value: String,
    pub label: String,
}

/// One level of a rating scale.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ScaleLevel {
    pub value: i64,
    pub label: String,
    /// What a rater must see to give this level.
    pub description: Option<String>,
}

/// One field as a form screen draws it; labels in the requested language.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FieldInfo {
    pub id: String,
    pub kind: FieldKind,
    pub label: String,
    pub hint: Option<String>,
    /// Always required.
    pub required: bool,
    /// Required only when this expression holds (e.g. `${r_goal} = 1 or ${r_goal} = 5`); the
    /// validation report says when it applies.
    pub required_when: Option<String>,
    /// Shown (and counted) only when this expression holds; the validation report lists the
    /// fields it hides now.
    pub relevant: Option<String>,
    /// Must hold for an answer; `.` is the answer itself.
    pub constraint: Option<String>,
    pub constraint_message: Option<String>,
    pub options: Vec<ChoiceOption>,
    /// Levels of a rating, lowest first.
    pub scale: Vec<ScaleLevel>,
    /// Inclusive bounds of a number, duration or counter.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Option<String>,
    /// Expression of a computed field.
    pub compute: Option<String>,
    /// Sub-fields of a repeat group (their answers take the row id).
    pub sub_fields: Vec<FieldInfo>,
    pub min_rows: Option<u32>,
    pub max_rows: Option<u32>,
    /// Kind of record a text field links to (e.g. the observations of a visit).
    pub links_to: Option<String>,
}

/// A titled part of a form.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionInfo {
    pub id: String,
    pub label: String,
    pub relevant: Option<String>,
    pub fields: Vec<FieldInfo>,
}

/// A named band of a score (e.g. 优秀 from 90).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ScoreBand {
    pub min: f64,
    pub label: String,
}

/// A score the template computes.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ScoreInfo {
    pub id: String,
    pub label: String,
    pub out_of: Option<f64>,
    pub bands: Vec<ScoreBand>,
}

/// A form template: everything needed to draw the form.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TemplateInfo {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub description: Option<String>,
    /// Roles that fill this form (and may create and submit its records).
    pub filled_by: Vec<Role>,
    /// The field holding the date the record is about.
    pub date_field: Option<String>,
    pub sections: Vec<SectionInfo>,
    pub scores: Vec<ScoreInfo>,
}

fn label(l: &Label, lang: &str) -> String {
    l.get(lang).to_string()
}

fn opt_label(l: &Option<Label>, lang: &str) -> Option<String> {
    l.as_ref().map(|l| label(l, lang))
}

pub(crate) fn field_info(f: &core_template::Field, lang: &str) -> FieldInfo {
    let (required, required_when) = match &f.required {
        core_template::Required::Always(b) => (*b, None),
        core_template::Required::When(e) => (false, Some(e.clone())),
    };
    FieldInfo {
        id: f.id.clone(),
        kind: f.kind,
        label: label(&f.label, lang),
        hint: opt_label(&f.hint, lang),
        required,
        required_when,
        relevant: f.relevant.clone(),
        constraint: f.constraint.clone(),
        constraint_message: opt_label(&f.constraint_message, lang),
        options: f.options.iter().map(|o| ChoiceOption { value: o.value.clone(), label: label(&o.label, lang) }).collect(),
        scale: f
            .scale
            .iter()
            .map(|l| ScaleLevel { value: l.value, label: label(&l.label, lang), description: opt_label(&l.description, lang) })
            .collect(),
        min: f.min,
        max: f.max,
        unit: opt_label(&f.unit, lang),
        compute: f.compute.clone(),
        sub_fields: f.fields.iter().map(|s| field_info(s, lang)).collect(),
        min_rows: f.min_rows,
        max_rows: f.max_rows,
        links_to: f.links_to.clone(),
    }
}

pub(crate) fn template_info(t: &core_template::Template, lang: &str) -> TemplateInfo {
    let d = &t.def;
    TemplateInfo {
        id: d.id.clone(),
        version: d.version,
        title: label(&d.title, lang),
        description: opt_label(&d.description, lang),
        filled_by: d.filled_by.clone(),
        date_field: d.date_field.clone(),
        sections: d
            .sections
            .iter()
            .map(|s| SectionInfo {
                id: s.id.clone(),
                label: label(&s.label, lang),
                relevant: s.relevant.clone(),
                fields: s.fields.iter().map(|f| field_info(f, lang)).collect(),
            })
            .collect(),
        scores: d
            .scores
            .iter()
            .map(|s| ScoreInfo {
                id: s.id.clone(),
                label: label(&s.label, lang),
                out_of: s.out_of,
                bands: s.bands.iter().map(|b| ScoreBand { min: b.min, label: label(&b.label, lang) }).collect(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

// Defined here, not the core's `Answer`: the apps build it with named fields (`value`,
// `minutes`) and a flat attachment and signature, where the core's variants hold a value or a
// struct.

/// A value of one field; the variant must match the field's kind.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AnswerValue {
    /// For a `Text` field: one line.
    Text { value: String },
    /// For a `LongText` field: replaces the whole text (use `splice_text` for typing).
    LongText { value: String },
    Integer { value: i64 },
    Decimal { value: f64 },
    /// For a `SingleChoice` field: an option's `value` code.
    Choice { value: String },
    /// For a `MultipleChoice` field: the ticked options' codes.
    Choices { values: Vec<String> },
    /// For a `Rating` field: a scale level's `value`.
    Rating { value: i64 },
    /// For a `YesNo` field.
    Bool { value: bool },
    /// `YYYY-MM-DD`.
    Date { value: String },
    /// `HH:MM`.
    Time { value: String },
    Duration { minutes: i64 },
    /// For a `Counter` field: sets the tally (use `increment` for taps).
    Counter { value: i64 },
    /// A stored file (see `ShidaoStore.put_attachment`, or `FormRecord.attach_file`).
    Attachment { hash: String, name: String, mime: String, size: u64 },
    /// `user` must be the editor's user (use `FormRecord.sign`); `signer` names someone without
    /// an account signing on this tablet; `image` is the stored hash of the stroke image.
    Signature { user: String, signer: Option<String>, image: Option<String> },
}

impl From<AnswerValue> for Answer {
    fn from(a: AnswerValue) -> Self {
        match a {
            AnswerValue::Text { value } => Answer::Text(value),
            AnswerValue::LongText { value } => Answer::LongText(value),
            AnswerValue::Integer { value } => Answer::Integer(value),
            AnswerValue::Decimal { value } => Answer::Decimal(value),
            AnswerValue::Choice { value } => Answer::Choice(value),
            AnswerValue::Choices { values } => Answer::Choices(values),
            AnswerValue::Rating { value } => Answer::Rating(value),
            AnswerValue::Bool { value } => Answer::Bool(value),
            AnswerValue::Date { value } => Answer::Date(value),
            AnswerValue::Time { value } => Answer::Time(value),
            AnswerValue::Duration { minutes } => Answer::Duration(minutes),
            AnswerValue::Counter { value } => Answer::Counter(value),
            AnswerValue::Attachment { hash, name, mime, size } => Answer::Attachment(AttachmentRef { hash, name, mime, size }),
            AnswerValue::Signature { user, signer, image } => Answer::Signature(SignatureRef { user, signer, image }),
        }
    }
}

impl From<Answer> for AnswerValue {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Text(value) => AnswerValue::Text { value },
            Answer::LongText(value) => AnswerValue::LongText { value },
            Answer::Integer(value) => AnswerValue::Integer { value },
            Answer::Decimal(value) => AnswerValue::Decimal { value },
            Answer::Choice(value) => AnswerValue::Choice { value },
            Answer::Choices(values) => AnswerValue::Choices { values },
            Answer::Rating(value) => AnswerValue::Rating { value },
            Answer::Bool(value) => AnswerValue::Bool { value },
            Answer::Date(value) => AnswerValue::Date { value },
            Answer::Time(value) => AnswerValue::Time { value },
            Answer::Duration(minutes) => AnswerValue::Duration { minutes },
            Answer::Counter(value) => AnswerValue::Counter { value },
            Answer::Attachment(a) => AnswerValue::Attachment { hash: a.hash, name: a.name, mime: a.mime, size: a.size },
            Answer::Signature(s) => AnswerValue::Signature { user: s.user, signer: s.signer, image: s.image },
        }
    }
}

/// Which answer a call is about: a top-level field, or a sub-field in a row of a repeat.
pub(crate) fn field_ref(field: String, row: Option<String>) -> Result<FieldRef> {
    Ok(FieldRef { field, row: row.map(RowId::new).transpose()? })
}

// ---------------------------------------------------------------------------------------------
// Listing records
// ---------------------------------------------------------------------------------------------

/// The life of a record: draft → submitted → (returned → submitted →) approved.
#[uniffi::remote(Enum)]
#[uniffi(name = "RecordStatus")]
pub enum Status {
    Draft,
    Submitted,
    Returned,
    Approved,
}

/// Which records to list; every field set narrows the list (all unset: every record).
#[uniffi::remote(Record)]
pub struct RecordFilter {
    #[uniffi(default = None)]
    pub school: Option<SchoolId>,
    #[uniffi(default = None)]
    pub template: Option<String>,
    #[uniffi(default = None)]
    pub status: Option<Status>,
    /// Records anyone with this user id wrote to.
    #[uniffi(default = None)]
    pub author: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds on the record's date (lesson day, visit day).
    #[uniffi(default = None)]
    pub date_from: Option<String>,
    #[uniffi(default = None)]
    pub date_to: Option<String>,
    /// Only records with changes the server has not acknowledged.
    #[uniffi(default = false)]
    pub dirty_only: bool,
    #[uniffi(default = None)]
    pub limit: Option<u32>,
}

/// A line of a record list, read without loading the record.
#[uniffi::remote(Record)]
pub struct RecordSummary {
    pub id: RecordId,
    pub template_id: String,
    pub template_version: u32,
    pub school_id: String,
    pub status: Status,
    pub created_by: String,
    /// The record's date (lesson day, visit day), `YYYY-MM-DD`, once answered.
    pub date: Option<String>,
    /// Seconds since 1970 of the latest change, by its author's clock.
    pub updated_at: i64,
    /// Has changes the server has not acknowledged.
    pub dirty: bool,
}

// ---------------------------------------------------------------------------------------------
// A record as read
// ---------------------------------------------------------------------------------------------

/// Who made a change and when (seconds since 1970, by their tablet's clock).
#[uniffi::remote(Record)]
pub struct Authorship {
    pub user: String,
    pub device: String,
    pub at: i64,
}

// `ConflictValue`, `FieldAnswer`, `ValidationIssue`, `ComputedValue`, `ScoreValue`, `RecordView`
// and `HistoryEntry` are defined here: they carry an answer displayed for a person or a label in
// the requested language, a flat `field`/`row` pair, or an `AnswerValue`.

/// One of the values two people set concurrently, with its author.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictValue {
    /// `None` when that edit cleared the field.
    pub answer: Option<AnswerValue>,
    pub display: Option<String>,
    pub by: Option<Authorship>,
}

/// A field's answer as read.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FieldAnswer {
    pub field: String,
    /// The row id, for a sub-field of a repeat group.
    pub row: Option<String>,
    pub answer: Option<AnswerValue>,
    /// The answer as a person reads it (option labels in the requested language).
    pub display: Option<String>,
    /// The last author.
    pub by: Option<Authorship>,
    /// Empty unless two people set the field concurrently: then every value, the shown one last.
    /// Nothing is dropped; setting the field again resolves the conflict.
    pub conflicts: Vec<ConflictValue>,
}

/// The rows of a repeat group, in order.
#[uniffi::remote(Record)]
#[uniffi(name = "RepeatRows")]
pub struct RowView {
    pub field: String,
    pub rows: Vec<RowId>,
}

/// One step of review: `submit`, `return` (with the comment), `approve`.
#[uniffi::remote(Record)]
#[uniffi(name = "ReviewStep")]
pub struct ReviewEntry {
    pub action: String,
    pub user: String,
    pub comment: Option<String>,
    pub at: Option<i64>,
}

/// What kind of problem a validation issue is.
#[uniffi::remote(Enum)]
pub enum IssueKind {
    /// A required answer is missing.
    Missing,
    /// An answer breaks its constraint.
    Constraint,
    /// A repeat group has too few rows.
    Rows,
    /// Two people set the field concurrently (does not block submitting).
    Conflict,
}

/// One problem with a record, with a message in the requested language.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ValidationIssue {
    pub field: String,
    pub row: Option<String>,
    pub kind: IssueKind,
    pub text: String,
}

/// A field hidden by relevance (its answer does not count).
#[uniffi::remote(Record)]
#[uniffi(name = "FieldPlace")]
pub struct FieldRef {
    pub field: String,
    pub row: Option<RowId>,
}

/// The record's problems and hidden fields.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ValidationReport {
    pub issues: Vec<ValidationIssue>,
    pub hidden: Vec<FieldRef>,
    /// No missing answer, failed constraint or short repeat: the record can be submitted.
    pub clean: bool,
}

/// A computed field's value.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ComputedValue {
    pub field: String,
    pub row: Option<String>,
    pub number: Option<f64>,
    /// Empty while it cannot be computed yet.
    pub text: String,
}

/// A score with its band.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ScoreValue {
    pub id: String,
    pub label: String,
    pub value: Option<f64>,
    pub out_of: Option<f64>,
    pub band: Option<String>,
}

/// Everything a record screen needs.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RecordView {
    pub id: String,
    pub template: String,
    pub version: u32,
    pub school: String,
    pub created_by: String,
    pub created_at: Option<i64>,
    pub status: Status,
    /// Concurrent status values, when two people changed the status at once.
    pub status_conflicts: Vec<String>,
    /// Answered fields (and fields in conflict), in form order.
    pub answers: Vec<FieldAnswer>,
    pub rows: Vec<RowView>,
    pub review: Vec<ReviewEntry>,
    pub validation: ValidationReport,
    pub computed: Vec<ComputedValue>,
    pub scores: Vec<ScoreValue>,
}

/// One change to a field, oldest first.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryEntry {
    /// The value the change left (`None`: cleared).
    pub answer: Option<AnswerValue>,
    pub by: Authorship,
    /// The change's hash.
    pub change: String,
}

impl From<core_record::HistoryEntry> for HistoryEntry {
    fn from(h: core_record::HistoryEntry) -> Self {
        HistoryEntry { answer: h.answer.map(Into::into), by: h.by, change: h.change }
    }
}

// App-only: the core hands a file back as bytes and a MIME type.
/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoredFile {
    pub bytes: Vec<u8>,
    pub mime: String,
}

// Defined here: `kept_aside` is computed by the core on request (`SetAside::kept_aside`).
/// Changes the server refused by its rules, set aside on this tablet: the record went back to the
/// server's state, and the answers the rules still allow there were written again (they go with
/// the next sync). Nothing is deleted: `ShidaoStore.set_aside_record` shows the refused copy.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SetAsideEntry {
    pub id: i64,
    pub record: String,
    /// When it was set aside (seconds since 1970).
    pub at: i64,
    /// The server's refusal code (`sealed`: the record was approved meanwhile) and reason.
    pub code: String,
    pub reason: String,
    /// The answers the refused changes touched (`field` or `field@row`).
    pub fields: Vec<String>,
    /// Of those, the ones not written again: what the person should look at.
    pub kept_aside: Vec<String>,
    /// The review steps the refused changes took (`submit`, `return`, `approve`); never re-taken.
    pub acts: Vec<String>,
    /// The answers written again as new changes.
    pub reapplied: Vec<String>,
}

impl From<core_store::SetAside> for SetAsideEntry {
    fn from(e: core_store::SetAside) -> Self {
        SetAsideEntry {
            kept_aside: e.kept_aside(),
            id: e.id,
            record: e.record,
            at: e.at,
            code: e.code,
            reason: e.reason,
            fields: e.fields,
            acts: e.acts,
            reapplied: e.reapplied,
        }
    }
}

// Defined here: the app reads the unreadable records as `id: reason` lines.
/// What `ShidaoStore.salvage` recovered from a damaged store file.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SalvageReport {
    pub recovered: Vec<String>,
    /// Records that could not be read: `id: reason`.
    pub unreadable: Vec<String>,
}

impl From<core_store::SalvageReport> for SalvageReport {
    fn from(r: core_store::SalvageReport) -> Self {
        SalvageReport {
            recovered: r.recovered.iter().map(ToString::to_string).collect(),
            unreadable: r.unreadable.into_iter().map(|(id, why)| format!("{id}: {why}")).collect(),
        }
    }
}

fn place(f: &FieldRef) -> (String, Option<String>) {
    (f.field.clone(), f.row.as_ref().map(ToString::to_string))
}

/// Converts a core view, putting labels and displayed answers in `lang`.
pub(crate) fn record_view(v: core_record::RecordView, template: &core_template::Template, lang: &str) -> RecordView {
    RecordView {
        id: v.id,
        template: v.template,
        version: v.version,
        school: v.school,
        created_by: v.created_by,
        created_at: v.created_at,
        status: v.status,
        status_conflicts: v.status_conflicts,
        answers: v.answers.into_iter().map(|a| field_answer(a, template, lang)).collect(),
        rows: v.rows,
        review: v.review,
        validation: ValidationReport {
            clean: v.validation.is_clean(),
            issues: v
                .validation
                .issues
                .into_iter()
                .map(|i| {
                    let (field, row) = place(&i.field);
                    ValidationIssue { field, row, kind: i.kind, text: label(&i.message, lang) }
                })
                .collect(),
            hidden: v.validation.hidden,
        },
        computed: v
            .computed
            .into_iter()
            .map(|c| {
                let (field, row) = place(&c.field);
                ComputedValue { field, row, number: c.number, text: c.text }
            })
            .collect(),
        scores: v
            .scores
            .into_iter()
            .map(|s| ScoreValue {
                id: s.id,
                label: label(&s.label, lang),
                value: s.value,
                out_of: s.out_of,
                band: opt_label(&s.band, lang),
            })
            .collect(),
    }
}

/// Converts one core answer view, with the answer displayed in `lang`.
pub(crate) fn field_answer(a: core_record::AnswerView, template: &core_template::Template, lang: &str) -> FieldAnswer {
    let (field, row) = place(&a.field);
    let f = template.field(&field);
    let display = |x: &Option<Answer>| x.as_ref().map(|x| f.map_or_else(|| x.to_evalue().to_string(), |f| x.display(f, lang)));
    FieldAnswer {
        display: display(&a.answer),
        conflicts: a
            .conflicts
            .into_iter()
            .map(|c| ConflictValue { display: display(&c.answer), answer: c.answer.map(Into::into), by: c.by })
            .collect(),
        answer: a.answer.map(Into::into),
        by: a.by,
        field,
        row,
    }
}
