//! Records: one Automerge document per filled form.
//!
//! Document layout (keys of the root map):
//!
//! | key | holds |
//! |---|---|
//! | `meta` | map: `id`, `template`, `version`, `school`, `created_by` — written once at creation |
//! | `status` | `draft` / `submitted` / `returned` / `approved` |
//! | `review` | list of maps `{action, user, comment}`: every submit, return and approval |
//! | `answers` | map field id → answer (see below) |
//! | `files` | map content hash → `{name, mime, size}` of attached files |
//! | `touched` | map field path → null, rewritten by every edit of a co-written text, counter or multiple choice, so their last author is known |
//!
//! Plain answers are scalars, so two people setting the same field concurrently leave two values
//! that [`Record::read`] reports as a conflict, each with its author. Co-written text is an
//! Automerge text, a counter an Automerge counter, a multiple choice a map of ticked option codes,
//! and a repeat group a map `{rows: {row id → {sub-field → answer}}, order: [row id]}`: these
//! objects are all made when the record (or the row) is created, so concurrent edits land in the
//! same object and merge instead of conflicting. A cleared answer is an explicit null, so the clear
//! has an author too.
//!
//! Every edit is one Automerge change whose author is `user/device` and whose time is the editor's
//! clock in seconds. Edits are checked before they touch the document: a refused edit changes
//! nothing.

mod answer;
mod clock;
mod edit;
mod eval;
mod read;
mod review;
pub mod rules;

use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{
    ActorId, Author, Automerge, ChangeHash, LoadOptions, ObjId, ObjType, OnPartialLoad,
    ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};

pub use clock::Clock;
pub use review::Status;
pub use answer::{check as check_answer, Answer, AttachmentRef, InvalidAnswer, SignatureRef, MAX_LONG_TEXT, MAX_TEXT};
pub use eval::{ComputedValue, Issue, IssueKind, ScoreValue, ValidationReport};
pub use read::{AnswerView, Authorship, FieldValue, HistoryEntry, RecordView, ReviewEntry, RowView};

use crate::ids::{DeviceId, RecordId, RowId, SchoolId, UserId};
use crate::template::{CompiledField, FieldKind, Parent, Role, Template};

/// Who is editing: every change they make carries their user and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Editor {
    pub user: UserId,
    pub device: DeviceId,
    pub role: Role,
}

impl Editor {
    /// The author bytes written into each change: `user/device`.
    pub fn author(&self) -> Author<'static> {
        Author::from(format!("{}/{}", self.user, self.device).into_bytes())
    }
}

/// Which answer an edit is about: a top-level field, or a sub-field in one row of a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldRef {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<RowId>,
}

impl FieldRef {
    pub fn top(field: &str) -> FieldRef {
        FieldRef { field: field.to_string(), row: None }
    }
    pub fn in_row(field: &str, row: &RowId) -> FieldRef {
        FieldRef { field: field.to_string(), row: Some(row.clone()) }
    }
    /// `field` or `field@row`: the key used in the `touched` map and in exports.
    pub fn path(&self) -> String {
        match &self.row {
            Some(r) => format!("{}@{}", self.field, r),
            None => self.field.clone(),
        }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// What a new record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub id: RecordId,
    pub school: SchoolId,
}

/// Why an edit or a load was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Invalid(#[from] InvalidAnswer),
    #[error("field `{0}` is not in the template")]
    UnknownField(String),
    #[error("field `{field}`: {problem}")]
    WrongPlace { field: String, problem: String },
    #[error("row `{row}` is not in repeat group `{field}`")]
    UnknownRow { field: String, row: String },
    #[error("repeat group `{field}` allows at most {max} rows")]
    TooManyRows { field: String, max: u32 },
    #[error("record {0} is approved and sealed: it cannot be changed")]
    Sealed(RecordId),
    #[error("a {role} may not {action} a record that is {status}")]
    NotAllowed { role: &'static str, action: &'static str, status: &'static str },
    #[error("the record cannot be submitted: {0}")]
    NotReady(String),
    #[error("a returned record needs a comment saying what to correct")]
    CommentRequired,
    #[error("record document is damaged or not a record: {0}")]
    Corrupt(String),
    #[error("record was made from template {template} v{version}, which this app does not have")]
    UnknownTemplate { template: String, version: u32 },
    #[error("changes of record {0} depend on earlier changes this copy does not have")]
    MissingHistory(RecordId),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

pub type Result<T, E = RecordError> = std::result::Result<T, E>;

pub(crate) mod keys {
    pub const META: &str = "meta";
    pub const STATUS: &str = "status";
    pub const REVIEW: &str = "review";
    pub const ANSWERS: &str = "answers";
    pub const FILES: &str = "files";
    pub const TOUCHED: &str = "touched";
    pub const ROWS: &str = "rows";
    pub const ORDER: &str = "order";
}

/// A filled form, in memory, with the editor who is working on it.
pub struct Record {
    doc: Automerge,
    template: Arc<Template>,
    id: RecordId,
    answers: ObjId,
    editor: Editor,
    clock: Clock,
    /// Heads already written to a store; `None` until the record is first stored.
    pub(crate) stored: Option<Vec<ChangeHash>>,
    /// The store's chunk number up to which this copy holds everything on disk; `None` once
    /// another copy wrote a chunk this one has not read.
    pub(crate) stored_seq: Option<i64>,
    /// The store's generation of the record this copy was loaded at; a set-aside (the record put
    /// back to the relay's state) starts a new one, and a copy of an older one may not be saved.
    pub(crate) generation: Option<i64>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("id", &self.id).field("template", &self.template.id()).finish()
    }
}

/// The school a record's document is about, read without a template at hand: the relay finds
/// the programme (and so the form registry) a pushed record belongs to before it opens it.
pub fn peek_school(doc: &Automerge) -> Result<SchoolId> {
    let meta = obj(doc, &ROOT, keys::META)?;
    get_str(doc, &meta, "school")
        .and_then(|s| SchoolId::new(s).ok())
        .ok_or_else(|| RecordError::Corrupt("meta has no valid school".into()))
}

fn load_doc(bytes: &[u8]) -> Result<Automerge> {
    Automerge::load_with_options(bytes, LoadOptions::new().on_partial_load(OnPartialLoad::Error))
        .map_err(|e| RecordError::Corrupt(e.to_string()))
}

pub(crate) fn obj(doc: &impl ReadDoc, parent: &ObjId, key: &str) -> Result<ObjId> {
    match doc.get(parent, key)? {
        Some((Value::Object(_), id)) => Ok(id),
        _ => Err(RecordError::Corrupt(format!("missing object `{key}`"))),
    }
}

pub(crate) fn get_str(doc: &impl ReadDoc, parent: &ObjId, key: &str) -> Option<String> {
    match doc.get(parent, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn get_int(doc: &impl ReadDoc, parent: &ObjId, key: &str) -> Option<i64> {
    match doc.get(parent, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Int(n) => Some(*n),
            ScalarValue::Uint(n) => i64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Makes the empty objects a field needs so that concurrent edits share them.
fn init_containers<'a>(
    tx: &mut Transaction<'_>,
    parent: &ObjId,
    fields: impl Iterator<Item = &'a CompiledField>,
) -> Result<()> {
    for f in fields {
        match f.kind() {
            FieldKind::LongText => {
                tx.put_object(parent, f.id(), ObjType::Text)?;
            }
            FieldKind::Counter => tx.put(parent, f.id(), ScalarValue::Counter(0.into()))?,
            FieldKind::MultipleChoice => {
                tx.put_object(parent, f.id(), ObjType::Map)?;
            }
            FieldKind::Repeat => {
                let group = tx.put_object(parent, f.id(), ObjType::Map)?;
                tx.put_object(&group, keys::ROWS, ObjType::Map)?;
                tx.put_object(&group, keys::ORDER, ObjType::List)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl Record {
    /// Creates a record of `template` for a school; the first change is the creator's.
    pub fn create(template: Arc<Template>, new: NewRecord, editor: Editor, clock: Clock) -> Result<Record> {
        rules::permit(rules::Action::Create, None, &template, editor.role, &new.id)?;
        let mut doc = Automerge::new();
        doc.set_author(Some(editor.author()));
        let time = clock.now();
        let answers = doc
            .transact_with(
                |_| CommitOptions::default().with_time(time),
                |tx| -> Result<ObjId> {
                    let meta = tx.put_object(ROOT, keys::META, ObjType::Map)?;
                    tx.put(&meta, "id", new.id.as_str())?;
                    tx.put(&meta, "template", template.id())?;
                    tx.put(&meta, "version", i64::from(template.version()))?;
                    tx.put(&meta, "school", new.school.as_str())?;
                    tx.put(&meta, "created_by", editor.user.as_str())?;
                    tx.put(ROOT, keys::STATUS, Status::Draft.as_str())?;
                    tx.put_object(ROOT, keys::REVIEW, ObjType::List)?;
                    tx.put_object(ROOT, keys::FILES, ObjType::Map)?;
                    tx.put_object(ROOT, keys::TOUCHED, ObjType::Map)?;
                    let answers = tx.put_object(ROOT, keys::ANSWERS, ObjType::Map)?;
                    init_containers(tx, &answers, template.top_fields())?;
                    Ok(answers)
                },
            )
            .map_err(|f| f.error)?
            .result;
        Ok(Record { doc, template, id: new.id, answers, editor, clock, stored: None, stored_seq: None, generation: None })
    }

    /// Loads a saved record (a full save, optionally followed by incremental chunks).
    ///
    /// `templates` finds the template by id and version; the record refuses to load without it
    /// rather than guess at its fields.
    pub fn load<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        templates: impl Fn(&str, u32) -> Option<Arc<Template>>,
        editor: Editor,
        clock: Clock,
    ) -> Result<Record> {
        let mut iter = chunks.into_iter();
        let first = iter.next().ok_or_else(|| RecordError::Corrupt("no bytes".into()))?;
        let mut doc = load_doc(first)?;
        // One incremental load of all chunks together applies them as one batch: far cheaper
        // than one call per chunk.
        let rest: Vec<u8> = iter.flatten().copied().collect();
        if !rest.is_empty() {
            doc.load_incremental(&rest).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        }
        Record::from_doc(doc, templates, editor, clock)
    }

    /// Wraps a loaded document, checking that it is a record.
    pub fn from_doc(
        mut doc: Automerge,
        templates: impl Fn(&str, u32) -> Option<Arc<Template>>,
        editor: Editor,
        clock: Clock,
    ) -> Result<Record> {
        let meta = obj(&doc, &ROOT, keys::META)?;
        let id = get_str(&doc, &meta, "id")
            .and_then(|s| RecordId::new(s).ok())
            .ok_or_else(|| RecordError::Corrupt("meta has no valid id".into()))?;
        let tid = get_str(&doc, &meta, "template").ok_or_else(|| RecordError::Corrupt("meta has no template".into()))?;
        let version = get_int(&doc, &meta, "version")
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| RecordError::Corrupt("meta has no version".into()))?;
        let template = templates(&tid, version).ok_or(RecordError::UnknownTemplate { template: tid, version })?;
        let answers = obj(&doc, &ROOT, keys::ANSWERS)?;
        doc.set_author(Some(editor.author()));
        Ok(Record { doc, template, id, answers, editor, clock, stored: None, stored_seq: None, generation: None })
    }

    pub fn id(&self) -> &RecordId {
        &self.id
    }
    pub fn template(&self) -> &Arc<Template> {
        &self.template
    }
    pub fn editor(&self) -> &Editor {
        &self.editor
    }
    /// The Automerge document (read only).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }
    /// The whole document, compressed.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }
    /// The changes made since `heads`, as bytes [`Record::load`] and `load_incremental` accept.
    pub fn save_after(&self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }
    /// Merges bytes from another copy of this record (a save or changes). Returns how many changes
    /// were new. Bytes of another record are refused.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        let mut other = load_doc(bytes)?;
        let meta = obj(&other, &ROOT, keys::META).ok();
        if let Some(meta) = meta {
            if get_str(&other, &meta, "id").as_deref() != Some(self.id.as_str()) {
                return Err(RecordError::Corrupt("bytes belong to another record".into()));
            }
        }
        let before = self.doc.get_heads();
        self.doc.merge(&mut other)?;
        Ok(self.doc.get_changes(&before).len())
    }
    /// Applies change bytes (from `save_after` on another copy) to this record. Refused when they
    /// depend on changes this copy lacks; the copy in memory should then be dropped, not saved.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<usize> {
        let before = self.doc.get_heads();
        self.doc.load_incremental(bytes).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        if !self.doc.get_missing_deps(&[]).is_empty() {
            return Err(RecordError::MissingHistory(self.id.clone()));
        }
        Ok(self.doc.get_changes(&before).len())
    }

    /// Merges another in-memory copy of this record.
    pub fn merge(&mut self, other: &Record) -> Result<usize> {
        if other.id != self.id {
            return Err(RecordError::Corrupt("cannot merge two different records".into()));
        }
        let before = self.doc.get_heads();
        let mut theirs = other.doc.clone();
        self.doc.merge(&mut theirs)?;
        Ok(self.doc.get_changes(&before).len())
    }
    /// An independent copy (for a second device in tests): same history, its own actor.
    pub fn fork(&self, editor: Editor) -> Record {
        let mut doc = self.doc.fork();
        doc.set_author(Some(editor.author()));
        Record {
            doc,
            template: self.template.clone(),
            id: self.id.clone(),
            answers: self.answers.clone(),
            editor,
            clock: self.clock.clone(),
            stored: None,
            stored_seq: None,
            generation: None,
        }
    }

    /// Today's date by the editor's clock (China time).
    pub fn today(&self) -> String {
        self.clock.today()
    }

    pub fn status(&self) -> Status {
        get_str(&self.doc, &ROOT, keys::STATUS).and_then(|s| Status::parse(&s)).unwrap_or(Status::Draft)
    }

    pub fn school(&self) -> Option<SchoolId> {
        let meta = obj(&self.doc, &ROOT, keys::META).ok()?;
        get_str(&self.doc, &meta, "school").and_then(|s| SchoolId::new(s).ok())
    }

    pub fn created_by(&self) -> Option<UserId> {
        let meta = obj(&self.doc, &ROOT, keys::META).ok()?;
        get_str(&self.doc, &meta, "created_by").and_then(|s| UserId::new(s).ok())
    }

    /// The actor of this copy's changes.
    pub fn actor(&self) -> &ActorId {
        self.doc.get_actor()
    }

    /// Runs one change as the editor; nothing is kept if `f` fails.
    fn change<T>(&mut self, f: impl FnOnce(&mut Transaction<'_>, &ObjId) -> Result<T>) -> Result<T> {
        let time = self.clock.now();
        let answers = self.answers.clone();
        self.doc
            .transact_with(|_| CommitOptions::default().with_time(time), |tx| f(tx, &answers))
            .map(|s| s.result)
            .map_err(|f| f.error)
    }

    /// The field, checked to be where `at` says (top level or inside a row).
    fn locate(&self, at: &FieldRef) -> Result<&CompiledField> {
        let f = self.template.field(&at.field).ok_or_else(|| RecordError::UnknownField(at.field.clone()))?;
        match (f.parent, &at.row) {
            (Parent::Top, None) | (Parent::Repeat(_), Some(_)) => Ok(f),
            (Parent::Top, Some(_)) => Err(RecordError::WrongPlace {
                field: at.field.clone(),
                problem: "is not inside a repeat group; give no row".into(),
            }),
            (Parent::Repeat(_), None) => Err(RecordError::WrongPlace {
                field: at.field.clone(),
                problem: "is inside a repeat group; give the row".into(),
            }),
        }
    }

    /// The map an answer lives in: `answers`, or the row's map.
    fn container(&self, at: &FieldRef) -> Result<ObjId> {
        let f = self.locate(at)?;
        match (f.parent, &at.row) {
            (Parent::Repeat(gi), Some(row)) => {
                let group_id = self.template.fields[gi].id().to_string();
                let group = obj(&self.doc, &self.answers, &group_id)?;
                let rows = obj(&self.doc, &group, keys::ROWS)?;
                match self.doc.get(&rows, row.as_str())? {
                    Some((Value::Object(ObjType::Map), id)) => Ok(id),
                    _ => Err(RecordError::UnknownRow { field: group_id, row: row.to_string() }),
                }
            }
            _ => Ok(self.answers.clone()),
        }
    }

    /// Asks the rule book whether the editor may take `action` on the record as it stands.
    fn permit(&self, action: rules::Action) -> Result<&'static rules::Rule> {
        rules::permit(action, Some(self.status()), &self.template, self.editor.role, &self.id)
    }


}
