//! `FormRecord`: one record opened for one editor. Each edit is checked against its field, then
//! written to the store before the call returns; a refused edit changes nothing.
//!
//! The record sits in its own mutex. A panic in the middle of an edit may leave this in-memory
//! copy different from the disk, so a poisoned record refuses further calls and asks the app to
//! open the record again (the disk holds every acknowledged edit).

use std::sync::{Arc, Mutex, MutexGuard};

use shidao_core::{Record, RowId};

use crate::error::{guard, Result, ShidaoError};
use crate::field::FieldEditor;
use crate::store::Shared;
use crate::types::{field_answer, field_ref, record_view, AnswerValue, FieldAnswer, HistoryEntry, RecordStatus, RecordView};

/// A record (a filled form) opened by `ShidaoStore.create_record` or `open_record`. Fields are
/// named by id; a sub-field of a repeat group also takes the id of its row (`row`).
#[derive(uniffi::Object)]
pub struct FormRecord {
    shared: Arc<Shared>,
    record: Mutex<Record>,
    id: String,
}

impl std::fmt::Debug for FormRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormRecord").field("id", &self.id).finish()
    }
}

impl FormRecord {
    pub(crate) fn wrap(shared: Arc<Shared>, record: Record) -> Arc<Self> {
        let id = record.id().to_string();
        Arc::new(FormRecord { shared, record: Mutex::new(record), id })
    }

    fn record(&self) -> Result<MutexGuard<'_, Record>> {
        self.record.lock().map_err(|_| ShidaoError::Other {
            reason: format!("record {} was left in an unknown state by an internal error: open it again", self.id),
        })
    }

    /// Reads the record (no lock on the store), inside the panic guard.
    pub(crate) fn read_with<T>(&self, f: impl FnOnce(&Record) -> Result<T>) -> Result<T> {
        guard(|| f(&*self.record()?))
    }

    /// Runs one core edit and stores it (record, then store locked), then tells the listener.
    /// Callers run it inside the panic guard.
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Record) -> shidao_core::record::Result<T>) -> Result<T> {
        let out = {
            let mut record = self.record()?;
            let store = self.shared.store();
            // After a set-aside the record went back to the server's state: edit that one.
            if !store.is_current(&record)? {
                *record = store.load(record.id(), record.editor())?;
            }
            store.edit(&mut record, f)?
        };
        self.shared.notify(&self.id);
        Ok(out)
    }
}

#[uniffi::export]
impl FormRecord {
    /// The record's id.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The id of the template the record was made from.
    pub fn template_id(&self) -> Result<String> {
        self.read_with(|r| Ok(r.template().id().to_string()))
    }

    pub fn status(&self) -> Result<RecordStatus> {
        self.read_with(|r| Ok(r.status()))
    }

    /// The whole record as a screen needs it: answers with authors and conflicts, rows, review
    /// steps, validation (messages in `lang`), computed values and scores.
    pub fn read(&self, lang: String) -> Result<RecordView> {
        self.read_with(|r| Ok(record_view(r.read(), r.template(), &lang)))
    }

    /// Reads the record again from the store, taking in what was merged into it since it was
    /// opened (another tablet's copy, a sync): call it when the change listener names this record.
    pub fn reload(&self) -> Result<()> {
        guard(|| {
            let mut record = self.record()?;
            let fresh = self.shared.store().load(record.id(), record.editor())?;
            *record = fresh;
            Ok(())
        })
    }

    /// Binds one field (in `row`, for a repeat group's field) for repeated edits: its typed
    /// setters take a number, flag or level with no string to convert, which makes each edit
    /// cheaper from Kotlin and Swift. Bind one per input widget. `InvalidAnswer` when the
    /// template has no such field.
    #[uniffi::method(default(row = None))]
    pub fn field(self: Arc<Self>, field: String, row: Option<String>) -> Result<Arc<FieldEditor>> {
        FieldEditor::bind(self, field, row)
    }

    /// One field's answer, last author and conflicts.
    #[uniffi::method(default(row = None))]
    pub fn answer(&self, field: String, lang: String, row: Option<String>) -> Result<FieldAnswer> {
        self.read_with(|r| Ok(field_answer(r.answer(&field_ref(field, row)?)?, r.template(), &lang)))
    }

    /// Every change that set, cleared or edited a field, oldest first, with its author.
    #[uniffi::method(default(row = None))]
    pub fn history(&self, field: String, row: Option<String>) -> Result<Vec<HistoryEntry>> {
        self.read_with(|r| Ok(r.history(&field_ref(field, row)?)?.into_iter().map(Into::into).collect()))
    }

    /// The comment of the latest return, while the record is returned for correction.
    pub fn return_comment(&self) -> Result<Option<String>> {
        self.read_with(|r| Ok(r.return_comment()))
    }

    /// Sets an answer. A value that does not fit the field (kind, option, scale level, bounds,
    /// format, a constraint that can be judged now) fails with `InvalidAnswer` naming the field.
    #[uniffi::method(default(row = None))]
    pub fn set_answer(&self, field: String, answer: AnswerValue, row: Option<String>) -> Result<()> {
        guard(|| {
            let at = field_ref(field, row)?;
            self.edit(|r| r.set_answer(&at, answer.into()))
        })
    }

    /// Clears an answer (the clear has an author too).
    #[uniffi::method(default(row = None))]
    pub fn clear_answer(&self, field: String, row: Option<String>) -> Result<()> {
        guard(|| {
            let at = field_ref(field, row)?;
            self.edit(|r| r.clear_answer(&at))
        })
    }

    /// Adds `by` (may be negative) to a counter; taps on several tablets add up.
    #[uniffi::method(default(row = None))]
    pub fn increment(&self, field: String, by: i64, row: Option<String>) -> Result<()> {
        guard(|| {
            let at = field_ref(field, row)?;
            self.edit(|r| r.increment(&at, by))
        })
    }

    /// Edits a long text: deletes `delete` characters at `pos`, then inserts `insert` there.
    /// Positions count Unicode code points (a Chinese character is one). Two people typing in
    /// the same text both keep their words.
    #[uniffi::method(default(row = None))]
    pub fn splice_text(&self, field: String, pos: u32, delete: u32, insert: String, row: Option<String>) -> Result<()> {
        guard(|| {
            let at = field_ref(field, row)?;
            self.edit(|r| r.splice_text(&at, pos as usize, delete as usize, &insert))
        })
    }

    /// Signs a signature field as the editor; `signer` names the person signing when they have no
    /// account (the observed teacher), `image_hash` the stored stroke image (`put_attachment`).
    #[uniffi::method(default(signer = None, image_hash = None, row = None))]
    pub fn sign(&self, field: String, signer: Option<String>, image_hash: Option<String>, row: Option<String>) -> Result<()> {
        guard(|| {
            let at = field_ref(field, row)?;
            self.edit(|r| r.sign(&at, signer, image_hash))
        })
    }

    /// Stores a file and sets it as the answer of an attachment field; returns the answer set.
    #[uniffi::method(default(row = None))]
    pub fn attach_file(&self, field: String, bytes: Vec<u8>, mime: String, name: String, row: Option<String>) -> Result<AnswerValue> {
        guard(|| {
            let at = field_ref(field.clone(), row)?;
            let size = bytes.len() as u64;
            // A file over the size limit is a bad answer for this field.
            let hash = self.shared.store().put_attachment(&bytes, &mime).map_err(|e| match ShidaoError::from(e) {
                ShidaoError::InvalidAnswer { reason, .. } => ShidaoError::InvalidAnswer { field, reason },
                other => other,
            })?;
            let answer = AnswerValue::Attachment { hash, name, mime, size };
            let set = answer.clone();
            self.edit(|r| r.set_answer(&at, set.into()))?;
            Ok(answer)
        })
    }

    /// Adds a row to a repeat group at `index` (the end when `None`); returns the row's id, which
    /// stays the same across reorders and merges.
    #[uniffi::method(default(index = None))]
    pub fn add_row(&self, repeat: String, index: Option<u32>) -> Result<String> {
        guard(|| self.edit(|r| r.add_row(&repeat, index.map(|i| i as usize))).map(|row| row.to_string()))
    }

    /// Moves a row to position `to`.
    pub fn move_row(&self, repeat: String, row: String, to: u32) -> Result<()> {
        guard(|| {
            let row = RowId::new(row)?;
            self.edit(|r| r.move_row(&repeat, &row, to as usize))
        })
    }

    /// Removes a row and its answers.
    pub fn remove_row(&self, repeat: String, row: String) -> Result<()> {
        guard(|| {
            let row = RowId::new(row)?;
            self.edit(|r| r.remove_row(&repeat, &row))
        })
    }

    /// Submits the record: by someone who fills this form, from draft or returned, with no
    /// missing answer and no failed constraint (else `NotAllowed`, naming the first problem).
    pub fn submit(&self) -> Result<()> {
        guard(|| self.edit(|r| r.submit()))
    }

    /// Sends a submitted record back with a comment saying what to correct (supervisors, admins).
    pub fn return_for_correction(&self, comment: String) -> Result<()> {
        guard(|| self.edit(|r| r.return_for_correction(&comment)))
    }

    /// Approves a submitted record (supervisors, admins); it is sealed from then on.
    #[uniffi::method(default(comment = None))]
    pub fn approve(&self, comment: Option<String>) -> Result<()> {
        guard(|| self.edit(|r| r.approve(comment.as_deref())))
    }
}

/// Measurement only (feature `bench`, built by `bench/edit_cost.sh`, never by an app).
#[cfg(feature = "bench")]
#[uniffi::export]
impl FormRecord {
    /// Makes `n` edits of an integer field in Rust, through the same `set_answer` the binding
    /// calls (guard, locks, conversion, core, store), values 1..=12 in turn; returns the
    /// nanoseconds each took. The Kotlin side times its own calls to `set_answer` between these
    /// loops, so the difference is the cost of crossing the boundary, measured at the same moment.
    pub fn bench_set_integer_in_rust(&self, field: String, n: u32) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let (field, answer) = (field.clone(), AnswerValue::Integer { value: i64::from(i % 12) + 1 });
            let t = std::time::Instant::now();
            self.set_answer(field, answer, None)?;
            out.push(t.elapsed().as_nanos() as u64);
        }
        Ok(out)
    }
}
