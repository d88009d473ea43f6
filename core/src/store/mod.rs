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
mod crypt;
mod forms;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::ChangeHash;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use aside::SetAside;
pub use crypt::StoreKey;
pub use schema::{SchemaError, VERSION as SCHEMA_VERSION};

use crate::ids::{RecordId, SchoolId};
use crate::record::{Clock, Editor, NewRecord, Record, RecordError, Status};
use crate::template::{Template, TemplateError};

/// Largest attachment the store accepts (photos of documents, signature strokes).
pub const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

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

/// What a list of records shows, without loading any document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub id: RecordId,
    pub template_id: String,
    pub template_version: u32,
    pub school_id: String,
    pub status: Status,
    pub created_by: String,
    pub date: Option<String>,
    pub updated_at: i64,
    /// Has changes the server has not acknowledged.
    pub dirty: bool,
}

/// Which records to list; every set field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub school: Option<SchoolId>,
    pub template: Option<String>,
    pub status: Option<Status>,
    /// Anyone who wrote to the record.
    pub author: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds on the record's date.
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub dirty_only: bool,
    pub limit: Option<u32>,
}

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

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Checks the file's integrity; `Err` carries the reason it is unusable.
fn check_integrity(conn: &Connection) -> std::result::Result<(), String> {
    let verdict: rusqlite::Result<String> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match verdict {
        Ok(v) if v == "ok" => Ok(()),
        Ok(v) => Err(v),
        Err(e) => Err(e.to_string()),
    }
}

/// Moves a damaged store file (and its WAL and shared-memory files) aside.
fn move_aside(path: &Path, now: i64) -> Result<PathBuf> {
    let mut target = PathBuf::from(format!("{}.corrupt-{now}", path.display()));
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.corrupt-{now}-{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::rename(&side, &to).map_err(|source| StoreError::Io { path: side.clone(), source })?;
        }
    }
    Ok(target)
}

fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(ChangeHash).collect()
}

/// The SHA-256 of some bytes as lowercase hex: the name of an attachment.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`. A file that is not a readable store is moved aside
    /// and [`StoreError::Corrupt`] says where; opening again then starts an empty store.
    pub fn open_with(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        Store::open_inner(path.as_ref(), None, opts)
    }

    /// Opens (or creates) the store at `path` encrypted with `key`, with default options.
    pub fn open_encrypted(path: impl AsRef<Path>, key: &StoreKey) -> Result<Store> {
        Store::open_encrypted_with(path, key, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path` encrypted with `key` (SQLCipher). A plain store at
    /// `path` is encrypted first, in a copy beside it that then replaces it (a crash leaves the
    /// old or the new file whole). A key that does not open the file is
    /// [`StoreError::WrongKey`], and the file is left as it is.
    pub fn open_encrypted_with(path: impl AsRef<Path>, key: &StoreKey, opts: StoreOptions) -> Result<Store> {
        Store::open_inner(path.as_ref(), Some(key), opts)
    }

    fn open_inner(path: &Path, key: Option<&StoreKey>, opts: StoreOptions) -> Result<Store> {
        let path = path.to_path_buf();
        let io = |source| StoreError::Io { path: path.clone(), source };
        // An interrupted rewrite (encryption, rekey) never replaced the store: drop what it left.
        crypt::remove_leftover(&path).map_err(io)?;
        if let Some(key) = key
            && crypt::file_kind(&path).map_err(io)? == crypt::FileKind::Plain
        {
            Store::encrypt_plain(&path, key, &opts)?;
        }
        let existed = path.exists();
        let attempt = (|| -> Result<(Connection, forms::Catalogue)> {
            let mut conn = Store::connect(&path, key, opts.durability)?;
            if existed {
                check_integrity(&conn).map_err(|reason| StoreError::Corrupt {
                    path: path.clone(),
                    moved_to: PathBuf::new(),
                    reason,
                })?;
            }
            schema::init(&mut conn)?;
            let forms = forms::Catalogue::load(&conn)?;
            Ok((conn, forms))
        })();
        let (conn, forms) = match attempt {
            Ok(c) => c,
            Err(StoreError::Corrupt { reason, .. }) => return Err(Store::corrupt(&path, reason, &opts)),
            Err(StoreError::Sql(e)) if is_corruption(&e) => return Err(Store::corrupt(&path, e.to_string(), &opts)),
            Err(StoreError::Schema(SchemaError::Sql(e))) if is_corruption(&e) => {
                return Err(Store::corrupt(&path, e.to_string(), &opts));
            }
            Err(e) => return Err(e),
        };
        Ok(Store { conn, path: Some(path), key: key.cloned(), opts, forms })
    }

    /// A configured connection to the file at `path`; with a key, keyed before anything else
    /// runs on it, and [`StoreError::WrongKey`] if the key does not open it.
    fn connect(path: &Path, key: Option<&StoreKey>, durability: Durability) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if let Some(key) = key
            && !crypt::apply_key(&conn, key)?
        {
            return Err(StoreError::WrongKey(path.to_path_buf()));
        }
        configure(&conn, durability)?;
        Ok(conn)
    }

    /// Encrypts the plain store at `path` with `key`: an encrypted copy beside it, synced, then
    /// renamed over it. A damaged plain file is moved aside as `open` does.
    fn encrypt_plain(path: &Path, key: &StoreKey, opts: &StoreOptions) -> Result<()> {
        let rewrite = crypt::rewrite_path(path);
        let attempt = (|| -> Result<()> {
            // CREATE: the file exists; the flag lets the attached copy be created.
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            check_integrity(&conn).map_err(|reason| StoreError::Corrupt { path: path.to_path_buf(), moved_to: PathBuf::new(), reason })?;
            // Folds the WAL into the file and removes it (this needs the only connection): no
            // plain WAL may outlive the plain file, nor be replayed onto the encrypted one.
            conn.pragma_update(None, "journal_mode", "DELETE")?;
            crypt::export_encrypted(&conn, &rewrite, key)?;
            conn.close().map_err(|(_, e)| e)?;
            crypt::sync_file(&rewrite).map_err(|source| StoreError::Io { path: rewrite.clone(), source })?;
            crypt::replace(&rewrite, path).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })
        })();
        if attempt.is_err() {
            let _ = crypt::remove_leftover(path);
        }
        match attempt {
            Err(StoreError::Corrupt { reason, .. }) => Err(Store::corrupt(path, reason, opts)),
            Err(StoreError::Sql(e)) if is_corruption(&e) => Err(Store::corrupt(path, e.to_string(), opts)),
            other => other,
        }
    }

    /// Whether this store is encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Encrypts the store with `new_key` (a plain store is encrypted; an encrypted one takes the
    /// new key). The whole file is written anew beside the old one, synced, and renamed over it:
    /// a crash leaves the store whole under the old key or under the new one, every record in
    /// it. Needs the only connection to the file (another open store on it makes this fail,
    /// with nothing changed). A store in memory is left as it is.
    pub fn rekey(&mut self, new_key: &StoreKey) -> Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let rewrite = crypt::rewrite_path(&path);
        crypt::remove_leftover(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        let written = (|| -> Result<()> {
            // Out of WAL mode (exclusive: fails while another connection is open), so no WAL
            // stays beside the file that replaces this one.
            self.conn.pragma_update(None, "journal_mode", "DELETE")?;
            crypt::export_encrypted(&self.conn, &rewrite, new_key)?;
            crypt::sync_file(&rewrite).map_err(|source| StoreError::Io { path: rewrite.clone(), source })
        })();
        if let Err(e) = written {
            let _ = crypt::remove_leftover(&path);
            let _ = configure(&self.conn, self.opts.durability);
            return Err(e);
        }
        let old = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        let closed = old.close().map_err(|(_, e)| StoreError::from(e));
        let replaced = closed.and_then(|()| {
            crypt::replace(&rewrite, &path).map_err(|source| StoreError::Io { path: path.clone(), source })
        });
        if let Err(e) = replaced {
            // The old file is still the store: reopen it as it was.
            let _ = crypt::remove_leftover(&path);
            self.conn = Store::connect(&path, self.key.as_ref(), self.opts.durability)?;
            return Err(e);
        }
        self.conn = Store::connect(&path, Some(new_key), self.opts.durability)?;
        self.key = Some(new_key.clone());
        Ok(())
    }

    fn corrupt(path: &Path, reason: String, opts: &StoreOptions) -> StoreError {
        match move_aside(path, opts.clock.now()) {
            Ok(moved_to) => StoreError::Corrupt { path: path.to_path_buf(), moved_to, reason },
            Err(e) => e,
        }
    }

    /// A store in memory, for tests and previews.
    pub fn open_in_memory() -> Result<Store> {
        Store::open_in_memory_with(StoreOptions::default())
    }

    pub fn open_in_memory_with(opts: StoreOptions) -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::init(&mut conn)?;
        let forms = forms::Catalogue::load(&conn)?;
        Ok(Store { conn, path: None, key: None, opts, forms })
    }

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

    /// Writes the record's unsaved changes durably. Returns once they are on disk.
    pub fn save(&self, record: &mut Record) -> Result<()> {
        let heads = record.heads();
        if record.stored.as_deref() == Some(heads.as_slice()) {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        if record.stored.is_none() && !self.contains(record.id())? {
            tx.prepare_cached(
                "INSERT INTO records (id, template_id, template_version, school_id, status, created_by,
                    record_date, updated_at, snapshot, dirty, heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10)",
            )?
            .execute(params![
                record.id().as_str(),
                record.template().id(),
                record.template().version(),
                record.school().map(|s| s.to_string()).unwrap_or_default(),
                record.status().as_str(),
                record.created_by().map(|u| u.to_string()).unwrap_or_default(),
                record.date(),
                record.updated_at().unwrap_or(0),
                record.save(),
                encode_heads(&heads),
            ])?;
            record.stored_seq = Some(0);
            record.generation = Some(0);
        } else {
            let bytes = record.save_after(record.stored.as_deref().unwrap_or(&[]));
            self.append_chunk(&tx, record, &bytes)?;
        }
        tx.prepare_cached("INSERT OR IGNORE INTO record_authors (record_id, user_id) VALUES (?1, ?2)")?
            .execute(params![record.id().as_str(), record.editor().user.as_str()])?;
        tx.commit()?;
        record.stored = Some(heads);
        Ok(())
    }

    /// Appends change bytes to a stored record, refreshes its listing columns, and compacts it
    /// when its chunks reach the threshold: from this copy when it holds everything on disk
    /// (cheap), otherwise from disk.
    fn append_chunk(&self, tx: &rusqlite::Transaction<'_>, record: &mut Record, bytes: &[u8]) -> Result<()> {
        let id_owned = record.id().clone();
        let id = id_owned.as_str();
        // A copy of an older generation (loaded before a set-aside) would bring the set-aside
        // changes back: it matches no row, and the caller is told to open the record again.
        let seq: i64 = tx
            .prepare_cached(
                "UPDATE records SET chunk_seq = chunk_seq + 1, status = ?2, record_date = ?3,
                    updated_at = MAX(updated_at, ?4), dirty = 1, heads = ?5
                 WHERE id = ?1 AND (?6 IS NULL OR generation = ?6) RETURNING chunk_seq",
            )?
            .query_row(
                params![
                    id,
                    record.status().as_str(),
                    record.date(),
                    record.updated_at().unwrap_or(0),
                    encode_heads(&record.heads()),
                    record.generation
                ],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::Stale(id_owned.clone()))?;
        tx.prepare_cached("INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, ?2, ?3)")?
            .execute(params![id, seq, bytes])?;
        record.stored_seq = record.stored_seq.filter(|known| *known + 1 == seq).map(|_| seq);
        let pending: i64 = tx
            .prepare_cached("SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        if pending >= i64::from(self.opts.compact_after) {
            let snapshot = match record.stored_seq {
                Some(_) => record.save(),
                None => self.folded(tx, record.id())?,
            };
            tx.prepare_cached("UPDATE records SET snapshot = ?2 WHERE id = ?1")?.execute(params![id, snapshot])?;
            tx.prepare_cached("DELETE FROM record_chunks WHERE record_id = ?1")?.execute([id])?;
        }
        Ok(())
    }

    /// The snapshot and chunks on disk folded into one compacted document.
    fn folded(&self, tx: &rusqlite::Transaction<'_>, id: &RecordId) -> Result<Vec<u8>> {
        let snapshot: Vec<u8> = tx.query_row("SELECT snapshot FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
        let mut stmt = tx.prepare_cached("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq")?;
        let chunks: Vec<u8> = stmt
            .query_map([id.as_str()], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .concat();
        let mut doc = automerge::Automerge::load(&snapshot).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        if !chunks.is_empty() {
            doc.load_incremental(&chunks).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        }
        Ok(doc.save())
    }

    /// Runs an edit and saves it: the edit is durable when this returns `Ok`; when the edit is
    /// refused nothing is written.
    pub fn edit<T>(&self, record: &mut Record, f: impl FnOnce(&mut Record) -> crate::record::Result<T>) -> Result<T> {
        let out = f(record)?;
        self.save(record)?;
        Ok(out)
    }

    /// Folds a record's chunks into its snapshot, from what is on disk.
    pub fn compact(&self, id: &RecordId) -> Result<()> {
        let pending: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1", [id.as_str()], |r| r.get(0))?;
        if pending == 0 {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        let snapshot = self.folded(&tx, id)?;
        tx.execute("UPDATE records SET snapshot = ?2 WHERE id = ?1", params![id.as_str(), snapshot])?;
        tx.execute("DELETE FROM record_chunks WHERE record_id = ?1", [id.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    /// Merges bytes of a record from elsewhere (a sync, another device's backup) into the store,
    /// creating the record if it is new. Returns its id. Bytes that are not a record change
    /// nothing.
    pub fn merge_remote(&self, bytes: &[u8], editor: &Editor) -> Result<RecordId> {
        let incoming = Record::load([bytes], self.resolver(), editor.clone(), self.opts.clock.clone())?;
        let id = incoming.id().clone();
        if !self.contains(&id)? {
            let mut incoming = incoming;
            self.save(&mut incoming)?;
            return Ok(id);
        }
        let mut mine = self.load(&id, editor)?;
        let before = mine.heads();
        mine.merge(&incoming)?;
        if mine.heads() != before {
            let tx = self.conn.unchecked_transaction()?;
            let bytes = mine.save_after(&before);
            self.append_chunk(&tx, &mut mine, &bytes)?;
            for user in mine.contributors() {
                tx.execute("INSERT OR IGNORE INTO record_authors (record_id, user_id) VALUES (?1, ?2)", params![id.as_str(), user])?;
            }
            tx.commit()?;
        }
        Ok(id)
    }

    /// Applies changes pulled from the server to a record (creating it when they hold its whole
    /// history). A record that had nothing unsent stays clean, acknowledged up to its new heads.
    pub fn apply_from_server(&self, id: &RecordId, bytes: &[u8], editor: &Editor) -> Result<bool> {
        if !self.contains(id)? {
            let mut record = Record::load([bytes], self.resolver(), editor.clone(), self.opts.clock.clone())
                .map_err(|e| match e {
                    RecordError::Corrupt(_) => RecordError::MissingHistory(id.clone()),
                    other => other,
                })?;
            if record.id() != id {
                return Err(RecordError::Corrupt(format!("pulled bytes for {id} hold record {}", record.id())).into());
            }
            self.save(&mut record)?;
            self.mark_synced(id, &record.heads())?;
            return Ok(true);
        }
        let was_dirty: bool = self.conn.query_row("SELECT dirty FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
        let mut mine = self.load(id, editor)?;
        let before = mine.heads();
        mine.apply_changes(bytes)?;
        if mine.heads() == before {
            return Ok(false);
        }
        let tx = self.conn.unchecked_transaction()?;
        let bytes = mine.save_after(&before);
        self.append_chunk(&tx, &mut mine, &bytes)?;
        for user in mine.contributors() {
            tx.execute("INSERT OR IGNORE INTO record_authors (record_id, user_id) VALUES (?1, ?2)", params![id.as_str(), user])?;
        }
        if !was_dirty {
            tx.execute("UPDATE records SET dirty = 0, synced_heads = ?2 WHERE id = ?1", params![id.as_str(), encode_heads(&mine.heads())])?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Records with changes the server has not acknowledged, oldest change first, with the heads
    /// the server is known to have (`None`: send everything).
    pub fn unsynced(&self) -> Result<Vec<(RecordId, Option<Vec<ChangeHash>>)>> {
        let mut stmt = self.conn.prepare_cached("SELECT id, synced_heads FROM records WHERE dirty = 1 ORDER BY updated_at, id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, heads) = row?;
            let Ok(id) = RecordId::new(id) else { continue };
            let heads = heads.map(|b| decode_heads(&b));
            out.push((id, heads));
        }
        Ok(out)
    }

    /// The changes of a record after `since` (everything when `None`), and its current heads.
    pub fn changes_since(&self, id: &RecordId, since: Option<&[ChangeHash]>) -> Result<(Vec<u8>, Vec<ChangeHash>)> {
        if since.is_none() {
            // Everything: compacted first (the snapshot is compressed, chunks are not), so a
            // record travels in its smallest form; the stored bytes then load as one record.
            let heads: Option<Vec<u8>> =
                self.conn.query_row("SELECT heads FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0)).optional()?.flatten();
            if let Some(heads) = heads {
                self.compact(id)?;
                return Ok((self.record_bytes(id)?, decode_heads(&heads)));
            }
        }
        let raw = self.raw(id)?;
        let mut doc = automerge::Automerge::load(&raw.snapshot).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        let chunks = raw.chunks.concat();
        if !chunks.is_empty() {
            doc.load_incremental(&chunks).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        }
        let heads = doc.get_heads();
        let bytes = match since {
            Some(h) if h.iter().all(|x| doc.get_change_meta_by_hash(x).is_some()) => doc.save_after(h),
            _ => doc.save(),
        };
        Ok((bytes, heads))
    }

    /// Forgets what the server acknowledged for a record, so the next sync sends all of it.
    pub fn resend_all(&self, id: &RecordId) -> Result<()> {
        self.conn.execute("UPDATE records SET synced_heads = NULL, dirty = 1 WHERE id = ?1", [id.as_str()])?;
        Ok(())
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

    /// Lists records without loading their documents, newest first.
    pub fn list(&self, filter: &RecordFilter) -> Result<Vec<RecordSummary>> {
        let mut sql = String::from(
            "SELECT id, template_id, template_version, school_id, status, created_by, record_date, updated_at, dirty
             FROM records WHERE 1 = 1",
        );
        let mut args: Vec<String> = Vec::new();
        let mut cond = |sql: &mut String, clause: &str, v: String| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &filter.school {
            cond(&mut sql, " AND school_id = ?", s.to_string());
        }
        if let Some(t) = &filter.template {
            cond(&mut sql, " AND template_id = ?", t.clone());
        }
        if let Some(s) = filter.status {
            cond(&mut sql, " AND status = ?", s.as_str().to_string());
        }
        if let Some(a) = &filter.author {
            cond(&mut sql, " AND id IN (SELECT record_id FROM record_authors WHERE user_id = ?)", a.clone());
        }
        if let Some(d) = &filter.date_from {
            cond(&mut sql, " AND record_date >= ?", d.clone());
        }
        if let Some(d) = &filter.date_to {
            cond(&mut sql, " AND record_date <= ?", d.clone());
        }
        if filter.dirty_only {
            sql.push_str(" AND dirty = 1");
        }
        sql.push_str(" ORDER BY updated_at DESC, id");
        if let Some(n) = filter.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, template_id, template_version, school_id, status, created_by, date, updated_at, dirty) = row?;
            let Ok(id) = RecordId::new(id) else { continue };
            out.push(RecordSummary {
                id,
                template_id,
                template_version,
                school_id,
                status: Status::parse(&status).unwrap_or(Status::Draft),
                created_by,
                date,
                updated_at,
                dirty,
            });
        }
        Ok(out)
    }

    /// Number of records in the store.
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Marks a record as acknowledged by the server up to `heads`; it stays dirty if it changed
    /// since.
    pub fn mark_synced(&self, id: &RecordId, heads: &[ChangeHash]) -> Result<()> {
        let stored: Option<Option<Vec<u8>>> =
            self.conn.query_row("SELECT heads FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0)).optional()?;
        let current = match stored {
            None => return Err(StoreError::NotFound(id.clone())),
            Some(Some(h)) => h,
            // Saved before heads were kept: read them from the document once.
            Some(None) => encode_heads(&self.changes_since(id, Some(&[]))?.1),
        };
        let acknowledged = encode_heads(heads);
        self.conn.execute(
            "UPDATE records SET synced_heads = ?2, dirty = ?3, heads = ?4 WHERE id = ?1",
            params![id.as_str(), acknowledged, acknowledged != current, current],
        )?;
        Ok(())
    }

    /// Stores the bytes of a file and returns its content hash; the same bytes are kept once.
    pub fn put_attachment(&self, bytes: &[u8], mime: &str) -> Result<String> {
        if bytes.len() > MAX_ATTACHMENT {
            return Err(StoreError::AttachmentTooLarge { size: bytes.len() });
        }
        let hash = content_hash(bytes);
        self.conn.execute(
            "INSERT OR IGNORE INTO attachments (hash, mime, size, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash, mime, bytes.len() as i64, bytes, self.opts.clock.now()],
        )?;
        Ok(hash)
    }

    /// The bytes and type of a stored file.
    pub fn attachment(&self, hash: &str) -> Result<(Vec<u8>, String)> {
        self.conn
            .query_row("SELECT bytes, mime FROM attachments WHERE hash = ?1", [hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| StoreError::AttachmentNotFound(hash.to_string()))
    }

    /// Attachments not yet known to be on the server.
    pub fn attachments_to_upload(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash FROM attachments WHERE NOT EXISTS
                (SELECT 1 FROM store_meta WHERE key = 'sync.uploaded.' || attachments.hash) ORDER BY created_at, hash",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Notes that the server holds an attachment completely.
    pub fn mark_uploaded(&self, hash: &str) -> Result<()> {
        self.set_meta(&format!("sync.uploaded.{hash}"), "1")
    }

    /// Copies every readable record out of a damaged store file (one that [`Store::open`] moved
    /// aside) into this store, merging with what is here. The damaged file is left as it is.
    /// A plain file is read as such; any other is read with this store's key (an encrypted
    /// store's damaged file has the same key), see [`Store::salvage_with_key`] for another.
    pub fn salvage(&self, damaged: &Path, editor: &Editor) -> Result<SalvageReport> {
        let plain = crypt::file_kind(damaged).map_err(|source| StoreError::Io { path: damaged.to_path_buf(), source })?
            == crypt::FileKind::Plain;
        self.salvage_from(damaged, if plain { None } else { self.key.as_ref() }, editor)
    }

    /// [`Store::salvage`] of an encrypted file under `key`; [`StoreError::WrongKey`] if the key
    /// does not open it (or its first page is unreadable).
    pub fn salvage_with_key(&self, damaged: &Path, key: &StoreKey, editor: &Editor) -> Result<SalvageReport> {
        self.salvage_from(damaged, Some(key), editor)
    }

    fn salvage_from(&self, damaged: &Path, key: Option<&StoreKey>, editor: &Editor) -> Result<SalvageReport> {
        let mut report = SalvageReport::default();
        let src = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        if let Some(key) = key
            && !crypt::apply_key(&src, key)?
        {
            return Err(StoreError::WrongKey(damaged.to_path_buf()));
        }
        let ids: Vec<String> = match src.prepare("SELECT id FROM records") {
            Ok(mut stmt) => match stmt.query_map([], |r| r.get::<_, String>(0)) {
                Ok(rows) => rows.filter_map(|r| r.ok()).collect(),
                Err(e) => {
                    report.unreadable.push(("*".into(), e.to_string()));
                    return Ok(report);
                }
            },
            Err(e) => {
                report.unreadable.push(("*".into(), e.to_string()));
                return Ok(report);
            }
        };
        for id in ids {
            let read = || -> std::result::Result<Vec<u8>, String> {
                let mut bytes: Vec<u8> = src
                    .query_row("SELECT snapshot FROM records WHERE id = ?1", [&id], |r| r.get(0))
                    .map_err(|e| e.to_string())?;
                // Chunks are optional extras: take what can be read.
                if let Ok(mut stmt) = src.prepare("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq") {
                    if let Ok(rows) = stmt.query_map([&id], |r| r.get::<_, Vec<u8>>(0)) {
                        for c in rows.flatten() {
                            bytes.extend_from_slice(&c);
                        }
                    }
                }
                Ok(bytes)
            };
            match read().and_then(|b| self.merge_remote(&b, editor).map_err(|e| e.to_string())) {
                Ok(rid) => report.recovered.push(rid),
                Err(e) => report.unreadable.push((id, e)),
            }
        }
        Ok(report)
    }

    /// Whether `record` is of the record's current generation in the store (a copy loaded before
    /// a set-aside is not, and cannot be saved; load it again).
    pub fn is_current(&self, record: &Record) -> Result<bool> {
        let Some(g) = record.generation else { return Ok(true) };
        let now: Option<i64> = self
            .conn
            .prepare_cached("SELECT generation FROM records WHERE id = ?1")?
            .query_row([record.id().as_str()], |r| r.get(0))
            .optional()?;
        Ok(now.is_none_or(|n| n == g))
    }

    /// Checks the file's integrity now (the same check `open` runs).
    pub fn check(&self) -> std::result::Result<(), String> {
        check_integrity(&self.conn)
    }
}
