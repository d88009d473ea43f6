//! A record on disk: a compacted snapshot plus the chunks of changes saved since, folded back
//! into the snapshot by compaction; merging bytes from elsewhere; and what the server has
//! acknowledged.

use automerge::ChangeHash;
use rusqlite::{params, OptionalExtension};

use super::{Result, Store, StoreError};
use crate::ids::RecordId;
use crate::record::{Editor, Record, RecordError};

pub(super) fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

pub(super) fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(ChangeHash).collect()
}

impl Store {
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
}
