//! The device store: records and attachments in one SQLite file on the tablet.
//!
//! What must stay true:
//! - An edit acknowledged to the caller is on disk: each save is one transaction in WAL mode with
//!   `synchronous=FULL` (by default), so neither a killed app nor a power cut loses it.
//! - Saves are incremental: a record's row holds a compacted snapshot, and each save appends only
//!   the new changes as a chunk; compaction folds chunks back into the snapshot from what is on
//!   disk (never from one in-memory copy, which might lack another copy's chunks).
//! - Nothing is thrown away: a database file that cannot be read is moved aside (never deleted)
//!   and the error says where; [`Store::salvage`] copies every readable record out of it.
//! - Records not yet acknowledged by the server are marked dirty until sync says otherwise.
//! - An encrypted store ([`Store::open_encrypted`]) is unreadable without its key: every page of
//!   the file and its WAL is encrypted by SQLCipher (see `crypt.rs`); the core writes no other
//!   file.

mod aside;
mod attachments;
mod chunks;
mod crypt;
mod file;
mod forms;
mod listing;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

pub use aside::SetAside;
pub use attachments::{content_hash, MAX_ATTACHMENT};
use chunks::{decode_heads, encode_heads};
pub use listing::{RecordFilter, RecordSummary};
pub use crypt::StoreKey;
pub use schema::{SchemaError, VERSION as SCHEMA_VERSION};

use crate::ids::{RecordId, SchoolId};
use crate::record::{Clock, Editor, NewRecord, Record, RecordError};
use crate::template::{Template, TemplateError};


/// How hard a save waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a power cut (`synchronous=FULL`).
    #[default]
    Full,
    /// Survives the app being killed, not a power cut (`synchronous=NORMAL`).
    Normal,
}

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Fold a record's chunks into its snapshot once it has this many.
    pub compact_after: u32,
    pub clock: Clock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { durability: Durability::Full, compact_after: 16, clock: Clock::system() }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store file {path} is damaged and was moved aside to {moved_to} (nothing was deleted; \
         records in it can be recovered with salvage): {reason}"
    )]
    Corrupt { path: PathBuf, moved_to: PathBuf, reason: String },
    #[error("record {0} is not in this store")]
    NotFound(RecordId),
    #[error("record {0} was put back to the relay's state after a refusal (the refused changes are set aside): open it again")]
    Stale(RecordId),
    #[error("template {0} v{1} is not known to this store")]
    UnknownTemplate(String, u32),
    #[error("attachment {0} is not in this store")]
    AttachmentNotFound(String),
    #[error("attachment of {size} bytes is larger than the limit of {MAX_ATTACHMENT} bytes")]
    AttachmentTooLarge { size: usize },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("storage: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The key does not open this encrypted store (or the file's first page is damaged); the
    /// file is as it was.
    #[error("the store file {0} does not open with this key (a wrong key, or a plain open of an encrypted store's copy); the file is untouched")]
    WrongKey(PathBuf),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;


/// What [`Store::salvage`] recovered from a damaged file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalvageReport {
    pub recovered: Vec<RecordId>,
    /// Records whose bytes could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// A record's rows: the snapshot, the chunks after it, and the last chunk number.
struct Raw {
    snapshot: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    seq: i64,
    generation: i64,
}

/// The device's store.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    /// The key of an encrypted store (kept for `rekey` and `salvage`; never written anywhere).
    key: Option<StoreKey>,
    opts: StoreOptions,
    forms: forms::Catalogue,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("encrypted", &self.key.is_some()).finish()
    }
}

impl Store {
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn clock(&self) -> &Clock {
        &self.opts.clock
    }

    fn resolver(&self) -> impl Fn(&str, u32) -> Option<Arc<Template>> + '_ {
        move |id, v| self.template(id, Some(v))
    }

    /// Creates a record of the newest version of a template and stores it.
    pub fn create(&self, template: &str, school: &SchoolId, editor: &Editor) -> Result<Record> {
        let t = self.template(template, None).ok_or_else(|| StoreError::UnknownTemplate(template.into(), 0))?;
        let new = NewRecord { id: RecordId::random(), school: school.clone() };
        let mut record = Record::create(t, new, editor.clone(), self.opts.clock.clone())?;
        self.save(&mut record)?;
        Ok(record)
    }

    /// Loads a record for `editor` to read or edit.
    pub fn load(&self, id: &RecordId, editor: &Editor) -> Result<Record> {
        let raw = self.raw(id)?;
        let mut parts: Vec<&[u8]> = vec![&raw.snapshot];
        parts.extend(raw.chunks.iter().map(Vec::as_slice));
        let mut record = Record::load(parts, self.resolver(), editor.clone(), self.opts.clock.clone())?;
        record.stored = Some(record.heads());
        record.stored_seq = Some(raw.seq);
        record.generation = Some(raw.generation);
        Ok(record)
    }

    /// A record's rows as stored, read in one transaction so snapshot and chunks agree.
    fn raw(&self, id: &RecordId) -> Result<Raw> {
        let tx = self.conn.unchecked_transaction()?;
        let (snapshot, seq, generation): (Vec<u8>, i64, i64) = tx
            .prepare_cached("SELECT snapshot, chunk_seq, generation FROM records WHERE id = ?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let chunks = tx
            .prepare_cached("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq")?
            .query_map([id.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
        tx.commit()?;
        Ok(Raw { snapshot, chunks, seq, generation })
    }

    /// Every byte of a record as stored (snapshot then chunks): what sync sends and what a
    /// backup copies.
    pub fn record_bytes(&self, id: &RecordId) -> Result<Vec<u8>> {
        let raw = self.raw(id)?;
        let mut bytes = raw.snapshot;
        for c in raw.chunks {
            bytes.extend_from_slice(&c);
        }
        Ok(bytes)
    }

    /// Whether the store holds this record.
    pub fn contains(&self, id: &RecordId) -> Result<bool> {
        Ok(self.conn.query_row("SELECT 1 FROM records WHERE id = ?1", [id.as_str()], |_| Ok(())).optional()?.is_some())
    }

    /// A value kept about this store (sync cursor, reference data, device identity).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM store_meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO store_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.conn.execute("DELETE FROM store_meta WHERE key = ?1", [key])?;
        Ok(())
    }
}
