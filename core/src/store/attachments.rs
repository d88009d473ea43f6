//! Attached files (photos of documents, signature strokes): kept once by content hash, and
//! noted once the server holds them.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Result, Store, StoreError};

/// Largest attachment the store accepts (photos of documents, signature strokes).
pub const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

/// The SHA-256 of some bytes as lowercase hex: the name of an attachment.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
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
}
