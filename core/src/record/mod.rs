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
mod eval;
mod read;
pub mod rules;

use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{
    ActorId, Author, Automerge, ChangeHash, LoadOptions, ObjId, ObjType, OnPartialLoad,
    ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};

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

/// Where time comes from; tests and fault injection move it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }))
    }
    /// A clock that always says `secs`.
    pub fn fixed(secs: i64) -> Clock {
        Clock(Arc::new(move || secs))
    }
    /// A clock that reads `now` (a test's clock that it moves itself).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }
    /// The system clock moved by `offset` seconds (a tablet whose clock is wrong).
    pub fn skewed(offset: i64) -> Clock {
        let sys = Clock::system();
        Clock(Arc::new(move || sys.now() + offset))
    }
    /// Seconds since 1970-01-01 UTC.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
    /// Today's date in China (UTC+8), `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        crate::expr::format_date((self.now() + 8 * 3600).div_euclid(86_400))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The life of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Submitted,
    Returned,
    Approved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Returned => "returned",
            Status::Approved => "approved",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "draft" => Status::Draft,
            "submitted" => Status::Submitted,
            "returned" => Status::Returned,
            "approved" => Status::Approved,
            _ => return None,
        })
    }
    /// Whether the people who fill the form may edit it in this state.
    pub fn open_for_filling(self) -> bool {
        matches!(self, Status::Draft | Status::Returned)
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

    /// Asks the rule book whether the editor may take `action` on the record as it stands.
    fn permit(&self, action: rules::Action) -> Result<&'static rules::Rule> {
        rules::permit(action, Some(self.status()), &self.template, self.editor.role, &self.id)
    }

    fn may_edit_answers(&self) -> Result<()> {
        self.permit(rules::Action::Fill).map(|_| ())
    }

    /// An edit of one answer: a plain fill, or, when the field holds concurrent values, the
    /// resolution of that conflict (which reviewers may also make while the record is submitted).
    fn may_edit_answer(&self, parent: &ObjId, field: &CompiledField) -> Result<()> {
        match self.may_edit_answers() {
            Ok(()) => Ok(()),
            Err(e) => {
                let in_conflict = self.doc.get_all(parent, field.id()).map(|v| v.len() > 1).unwrap_or(false);
                if in_conflict { self.permit(rules::Action::ResolveConflict).map(|_| ()) } else { Err(e) }
            }
        }
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

    /// Sets an answer. The value is checked against the field first; a constraint that can be
    /// judged now (every field it reads is answered) must hold.
    pub fn set_answer(&mut self, at: &FieldRef, answer: Answer) -> Result<()> {
        let field = self.locate(at)?.clone();
        if matches!(answer, Answer::Signature(_)) {
            self.permit(rules::Action::Sign)?;
        } else {
            let parent = self.container(at)?;
            self.may_edit_answer(&parent, &field)?;
        }
        answer::check(&field, &answer)?;
        if let Answer::Signature(s) = &answer {
            if s.user != self.editor.user.as_str() {
                return Err(InvalidAnswer {
                    field: field.def.id.clone(),
                    label: field.def.label.zh.clone(),
                    problem: format!("{} cannot sign as {}", self.editor.user, s.user),
                }
                .into());
            }
        }
        if let Some(problem) = self.check_constraint_now(&field, at, &answer) {
            return Err(problem.into());
        }
        let parent = self.container(at)?;
        let current = self.read_answer_at(&parent, &field);
        let files_meta = match &answer {
            Answer::Attachment(a) => Some(a.clone()),
            _ => None,
        };
        self.change(|tx, _| {
            write_answer(tx, &parent, &field, current.as_ref(), &answer)?;
            if let Some(a) = files_meta {
                let files = match tx.get(ROOT, keys::FILES)? {
                    Some((Value::Object(_), id)) => id,
                    _ => tx.put_object(ROOT, keys::FILES, ObjType::Map)?,
                };
                if tx.get(&files, a.hash.as_str())?.is_none() {
                    let m = tx.put_object(&files, a.hash.as_str(), ObjType::Map)?;
                    tx.put(&m, "name", a.name.as_str())?;
                    tx.put(&m, "mime", a.mime.as_str())?;
                    tx.put(&m, "size", a.size)?;
                }
            }
            if matches!(field.kind(), FieldKind::LongText | FieldKind::Counter | FieldKind::MultipleChoice) {
                touch(tx, at)?;
            }
            Ok(())
        })
    }

    /// Clears an answer (the clear is itself an edit with an author).
    pub fn clear_answer(&mut self, at: &FieldRef) -> Result<()> {
        let field = self.locate(at)?.clone();
        let parent = self.container(at)?;
        self.may_edit_answer(&parent, &field)?;
        let current = self.read_answer_at(&parent, &field);
        self.change(|tx, _| {
            match field.kind() {
                FieldKind::LongText => {
                    if let Some((Value::Object(ObjType::Text), text)) = tx.get(&parent, field.id())? {
                        let len = tx.length(&text);
                        tx.splice_text(&text, 0, len as isize, "")?;
                    }
                    touch(tx, at)?;
                }
                FieldKind::Counter => {
                    if let Some(Answer::Counter(n)) = current {
                        tx.increment(&parent, field.id(), -n)?;
                    }
                    touch(tx, at)?;
                }
                FieldKind::MultipleChoice => {
                    if let Some((Value::Object(ObjType::Map), set)) = tx.get(&parent, field.id())? {
                        let ticked: Vec<String> = tx.keys(&set).collect();
                        for k in ticked {
                            tx.delete(&set, k.as_str())?;
                        }
                    }
                    touch(tx, at)?;
                }
                FieldKind::Repeat | FieldKind::Computed | FieldKind::Note => {
                    return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "holds no answer to clear".into() });
                }
                _ => tx.put(&parent, field.id(), ScalarValue::Null)?,
            }
            Ok(())
        })
    }

    /// Adds to a counter; concurrent increments on other devices add up.
    pub fn increment(&mut self, at: &FieldRef, by: i64) -> Result<()> {
        self.may_edit_answers()?;
        let field = self.locate(at)?.clone();
        if field.kind() != FieldKind::Counter {
            return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "is not a counter".into() });
        }
        let parent = self.container(at)?;
        let now = match self.read_answer_at(&parent, &field) {
            Some(Answer::Counter(n)) => n,
            _ => 0,
        };
        answer::check(&field, &Answer::Counter(now.saturating_add(by)))?;
        self.change(|tx, _| {
            tx.increment(&parent, field.id(), by)?;
            touch(tx, at)
        })
    }

    /// Edits co-written text: deletes `delete` characters at `pos` and inserts `insert`.
    /// Positions count Unicode code points.
    pub fn splice_text(&mut self, at: &FieldRef, pos: usize, delete: usize, insert: &str) -> Result<()> {
        self.may_edit_answers()?;
        let field = self.locate(at)?.clone();
        if field.kind() != FieldKind::LongText {
            return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "is not a long text".into() });
        }
        let parent = self.container(at)?;
        let text = match self.doc.get(&parent, field.id())? {
            Some((Value::Object(ObjType::Text), id)) => id,
            _ => return Err(RecordError::Corrupt(format!("long text `{}` has no text object", field.id()))),
        };
        let len = self.doc.length(&text);
        if pos > len || pos + delete > len {
            return Err(InvalidAnswer {
                field: field.def.id.clone(),
                label: field.def.label.zh.clone(),
                problem: format!("edit at {pos}+{delete} is outside the text of {len} characters"),
            }
            .into());
        }
        if len - delete + insert.chars().count() > MAX_LONG_TEXT {
            return Err(InvalidAnswer {
                field: field.def.id.clone(),
                label: field.def.label.zh.clone(),
                problem: format!("text would be longer than {MAX_LONG_TEXT} characters"),
            }
            .into());
        }
        self.change(|tx, _| {
            tx.splice_text(&text, pos, delete as isize, insert)?;
            touch(tx, at)
        })
    }

    /// Signs a signature field as the editor; `signer` names who signed when it is somebody
    /// without an account signing on this tablet (the observed teacher).
    pub fn sign(&mut self, at: &FieldRef, signer: Option<String>, image: Option<String>) -> Result<()> {
        let user = self.editor.user.to_string();
        self.set_answer(at, Answer::Signature(SignatureRef { user, signer, image }))
    }

    /// Adds a row to a repeat group at `index` (the end when `None`); returns its stable id.
    pub fn add_row(&mut self, repeat: &str, index: Option<usize>) -> Result<RowId> {
        self.add_row_as(repeat, index, RowId::random())
    }

    /// Adds a row with a given id (a row set aside and written again keeps its id).
    pub(crate) fn add_row_as(&mut self, repeat: &str, index: Option<usize>, row: RowId) -> Result<RowId> {
        self.may_edit_answers()?;
        let (_, rows, order) = self.group(repeat)?;
        let field = self.template.field(repeat).cloned().ok_or_else(|| RecordError::UnknownField(repeat.into()))?;
        let count = self.row_ids(repeat)?.len();
        if let Some(max) = field.def.max_rows {
            if count >= max as usize {
                return Err(RecordError::TooManyRows { field: repeat.into(), max });
            }
        }
        let len = self.doc.length(&order);
        let at = index.unwrap_or(len).min(len);
        let template = self.template.clone();
        self.change(|tx, _| {
            let row_obj = tx.put_object(&rows, row.as_str(), ObjType::Map)?;
            init_containers(tx, &row_obj, template.sub_fields(repeat))?;
            tx.insert(&order, at, row.as_str())?;
            Ok(())
        })?;
        Ok(row)
    }

    /// Moves a row to position `to` among the rows.
    pub fn move_row(&mut self, repeat: &str, row: &RowId, to: usize) -> Result<()> {
        self.may_edit_answers()?;
        let (_, _, order) = self.group(repeat)?;
        let positions = self.order_positions(&order, row);
        if positions.is_empty() {
            return Err(RecordError::UnknownRow { field: repeat.into(), row: row.to_string() });
        }
        self.change(|tx, _| {
            for p in positions.iter().rev() {
                tx.delete(&order, *p)?;
            }
            let len = tx.length(&order);
            tx.insert(&order, to.min(len), row.as_str())?;
            Ok(())
        })
    }

    /// Removes a row and its answers.
    pub fn remove_row(&mut self, repeat: &str, row: &RowId) -> Result<()> {
        self.may_edit_answers()?;
        let (_, rows, order) = self.group(repeat)?;
        if self.doc.get(&rows, row.as_str())?.is_none() {
            return Err(RecordError::UnknownRow { field: repeat.into(), row: row.to_string() });
        }
        let positions = self.order_positions(&order, row);
        self.change(|tx, _| {
            for p in positions.iter().rev() {
                tx.delete(&order, *p)?;
            }
            tx.delete(&rows, row.as_str())?;
            Ok(())
        })
    }

    fn order_positions(&self, order: &ObjId, row: &RowId) -> Vec<usize> {
        self.doc
            .list_range(order, ..)
            .enumerate()
            .filter(|(_, item)| matches!(&item.value, ValueRef::Scalar(ScalarValueRef::Str(s)) if s.as_ref() == row.as_str()))
            .map(|(i, _)| i)
            .collect()
    }

    fn group(&self, repeat: &str) -> Result<(ObjId, ObjId, ObjId)> {
        let f = self.template.field(repeat).ok_or_else(|| RecordError::UnknownField(repeat.into()))?;
        if f.kind() != FieldKind::Repeat {
            return Err(RecordError::WrongPlace { field: repeat.into(), problem: "is not a repeat group".into() });
        }
        let group = obj(&self.doc, &self.answers, repeat)?;
        let rows = obj(&self.doc, &group, keys::ROWS)?;
        let order = obj(&self.doc, &group, keys::ORDER)?;
        Ok((group, rows, order))
    }

    /// Row ids of a repeat group in display order: the order list without duplicates or removed
    /// rows, then any row a concurrent reorder left out of the list.
    pub fn row_ids(&self, repeat: &str) -> Result<Vec<RowId>> {
        let (_, rows, order) = self.group(repeat)?;
        let present: std::collections::BTreeSet<String> = self.doc.keys(&rows).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in self.doc.list_range(&order, ..) {
            if let ValueRef::Scalar(ScalarValueRef::Str(id)) = &item.value {
                if present.contains(id.as_ref()) && seen.insert(id.to_string()) {
                    out.extend(RowId::new(id.as_ref()).ok());
                }
            }
        }
        for id in present {
            if !seen.contains(&id) {
                out.extend(RowId::new(id).ok());
            }
        }
        Ok(out)
    }

    /// Moves the record to `submitted`: by someone who fills this form, from draft or returned,
    /// with no missing answer and no failed constraint.
    pub fn submit(&mut self) -> Result<()> {
        let rule = self.permit(rules::Action::Submit)?;
        debug_assert_eq!(rule.requires, rules::Requires::CleanValidation);
        let report = self.validate();
        if let Some(first) = report.blocking().next() {
            let n = report.blocking().count();
            return Err(RecordError::NotReady(format!("{n} problem(s), first: `{}` {}", first.field, first.message.zh)));
        }
        self.review_step(Status::Submitted, "submit", None)
    }

    /// Sends a submitted record back to its authors with a comment (supervisors and admins).
    pub fn return_for_correction(&mut self, comment: &str) -> Result<()> {
        let rule = self.permit(rules::Action::Return)?;
        if rule.requires == rules::Requires::Comment && comment.trim().is_empty() {
            return Err(RecordError::CommentRequired);
        }
        self.review_step(Status::Returned, "return", Some(comment))
    }

    /// Approves a submitted record (supervisors and admins); it is sealed from then on.
    pub fn approve(&mut self, comment: Option<&str>) -> Result<()> {
        self.permit(rules::Action::Approve)?;
        self.review_step(Status::Approved, "approve", comment)
    }

    fn review_step(&mut self, to: Status, action: &str, comment: Option<&str>) -> Result<()> {
        let user = self.editor.user.to_string();
        self.change(|tx, _| {
            tx.put(ROOT, keys::STATUS, to.as_str())?;
            let review = match tx.get(ROOT, keys::REVIEW)? {
                Some((Value::Object(ObjType::List), id)) => id,
                _ => return Err(RecordError::Corrupt("no review list".into())),
            };
            let len = tx.length(&review);
            let entry = tx.insert_object(&review, len, ObjType::Map)?;
            tx.put(&entry, "action", action)?;
            tx.put(&entry, "user", user.as_str())?;
            if let Some(c) = comment {
                tx.put(&entry, "comment", c)?;
            }
            Ok(())
        })
    }
}

/// Marks a co-written field as edited by this change (its last author).
fn touch(tx: &mut Transaction<'_>, at: &FieldRef) -> Result<()> {
    let touched = match tx.get(ROOT, keys::TOUCHED)? {
        Some((Value::Object(_), id)) => id,
        _ => tx.put_object(ROOT, keys::TOUCHED, ObjType::Map)?,
    };
    tx.put(&touched, at.path().as_str(), ScalarValue::Null)?;
    Ok(())
}

fn write_answer(
    tx: &mut Transaction<'_>,
    parent: &ObjId,
    field: &CompiledField,
    current: Option<&Answer>,
    answer: &Answer,
) -> Result<()> {
    let key = field.id();
    // Automerge keeps the existing op when a put repeats the winning value, even when it resolves
    // a conflict; a null first makes the pick a new op, so it is recorded as this editor's edit.
    if tx.get_all(parent, key)?.len() > 1 {
        tx.put(parent, key, ScalarValue::Null)?;
    }
    match answer {
        Answer::Text(s) | Answer::Choice(s) | Answer::Date(s) | Answer::Time(s) => tx.put(parent, key, s.as_str())?,
        Answer::Integer(n) | Answer::Rating(n) | Answer::Duration(n) => tx.put(parent, key, *n)?,
        Answer::Decimal(x) => tx.put(parent, key, *x)?,
        Answer::Bool(b) => tx.put(parent, key, *b)?,
        Answer::Attachment(a) => tx.put(parent, key, a.hash.as_str())?,
        Answer::LongText(s) => {
            let text = match tx.get(parent, key)? {
                Some((Value::Object(ObjType::Text), id)) => id,
                _ => tx.put_object(parent, key, ObjType::Text)?,
            };
            tx.update_text(&text, s)?;
        }
        Answer::Counter(n) => {
            let now = match current {
                Some(Answer::Counter(c)) => *c,
                _ => 0,
            };
            if *n != now {
                tx.increment(parent, key, n - now)?;
            }
        }
        Answer::Choices(want) => {
            let set = match tx.get(parent, key)? {
                Some((Value::Object(ObjType::Map), id)) => id,
                _ => tx.put_object(parent, key, ObjType::Map)?,
            };
            let have: Vec<String> = tx.keys(&set).collect();
            for h in &have {
                if !want.contains(h) {
                    tx.delete(&set, h.as_str())?;
                }
            }
            for w in want {
                if !have.contains(w) {
                    tx.put(&set, w.as_str(), true)?;
                }
            }
        }
        Answer::Signature(s) => {
            let m = tx.put_object(parent, key, ObjType::Map)?;
            tx.put(&m, "user", s.user.as_str())?;
            if let Some(n) = &s.signer {
                tx.put(&m, "signer", n.as_str())?;
            }
            if let Some(i) = &s.image {
                tx.put(&m, "image", i.as_str())?;
            }
        }
    }
    Ok(())
}
