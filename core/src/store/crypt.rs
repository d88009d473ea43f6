//! Encryption at rest: the store's key, keying a connection, and rewriting a whole file under a
//! new key (a plain store encrypted on first open, `rekey`).
//!
//! What must stay true:
//! - The key is the first statement on every connection the core opens on an encrypted file,
//!   and a read of `sqlite_master` proves it right before anything else runs; a wrong key
//!   leaves the file untouched.
//! - A file is rewritten beside itself (`<store>.rewrite`), synced, and renamed over the
//!   original, so a crash at any moment leaves either the old file or the new one whole; a
//!   leftover rewrite file is an unfinished attempt and is removed at the next open.
//! - The key is never logged, never written to disk by the core, and wiped from memory when
//!   dropped (the SQL text that carries it too).
//!
//! Everything the core writes is inside SQLite's files (the store, its WAL and shared-memory
//! files, the rewrite file while it exists): records, listing columns, attachments, set-aside
//! changes. SQLCipher encrypts every page of them; the core writes no other file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode};
use zeroize::{Zeroize, Zeroizing};

/// The 256-bit key of an encrypted store, as the app's keystore holds it (Android Keystore, iOS
/// Keychain). Wiped from memory when dropped; its `Debug` shows nothing of it.
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// A key from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<StoreKey> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(StoreKey(bytes))
    }

    /// A key from bytes handed over by an app; the bytes are wiped either way. `None` unless
    /// there are exactly 32.
    pub fn from_vec(bytes: Vec<u8>) -> Option<StoreKey> {
        let bytes = Zeroizing::new(bytes);
        StoreKey::from_slice(&bytes)
    }

    /// The key as SQLCipher's raw-key literal (`x'<64 hex digits>'`): used as is, no key
    /// derivation at open. Wiped when dropped.
    fn literal(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(3 + 2 * Self::LEN));
        s.push_str("x'");
        for b in self.0 {
            // Capacity is reserved above: the string never reallocates (no stray copy).
            let _ = write!(s, "{b:02x}");
        }
        s.push('\'');
        s
    }
}

impl From<[u8; 32]> for StoreKey {
    fn from(bytes: [u8; 32]) -> Self {
        StoreKey(bytes)
    }
}

impl Clone for StoreKey {
    fn clone(&self) -> Self {
        StoreKey(self.0)
    }
}

impl Drop for StoreKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(redacted)")
    }
}

/// Keys a fresh connection (its first statement) and proves the key by reading `sqlite_master`.
/// `Ok(false)`: the key does not open this file (or its first page is damaged).
pub(super) fn apply_key(conn: &Connection, key: &StoreKey) -> rusqlite::Result<bool> {
    let mut sql = Zeroizing::new(String::with_capacity(64 + 2 * StoreKey::LEN));
    sql.push_str("PRAGMA key = \"");
    sql.push_str(&key.literal());
    sql.push_str("\";");
    conn.execute_batch(&sql)?;
    // SQLCipher would otherwise print its own lines for a wrong key or a damaged page to stderr
    // (logcat on Android); the store's errors say what happened.
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(true),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The first 16 bytes of every plain SQLite file (an encrypted one starts with random salt).
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What is at a store's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// Nothing, or an empty file: a new store.
    New,
    /// A plain SQLite file.
    Plain,
    /// Anything else: an encrypted store (or a file that is no store at all).
    Other,
}

pub(super) fn file_kind(path: &Path) -> std::io::Result<FileKind> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileKind::New),
        Err(e) => return Err(e),
    };
    let mut head = Vec::with_capacity(16);
    f.by_ref().take(16).read_to_end(&mut head)?;
    Ok(if head.is_empty() {
        FileKind::New
    } else if head.as_slice() == PLAIN_HEADER {
        FileKind::Plain
    } else {
        FileKind::Other
    })
}

/// Where a store's file is rewritten before it replaces the original.
pub(super) fn rewrite_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rewrite", path.display()))
}

fn side_files(path: &Path) -> [PathBuf; 4] {
    let p = path.display();
    [path.to_path_buf(), format!("{p}-journal").into(), format!("{p}-wal").into(), format!("{p}-shm").into()]
}

/// Removes what an interrupted rewrite left (the original is whole: the rename never happened).
pub(super) fn remove_leftover(path: &Path) -> std::io::Result<()> {
    for f in side_files(&rewrite_path(path)) {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies every table, index and the schema version of `src`'s main database into a new file
/// at `dest`, encrypted with `key` (`sqlcipher_export`). The caller syncs it ([`sync_file`]).
pub(super) fn export_encrypted(src: &Connection, dest: &Path, key: &StoreKey) -> rusqlite::Result<()> {
    let dest_str = dest.to_str().ok_or_else(|| rusqlite::Error::InvalidPath(dest.to_path_buf()))?;
    src.execute("ATTACH DATABASE ?1 AS shidao_rewrite KEY ?2", rusqlite::params![dest_str, key.literal().as_str()])?;
    let copied = (|| {
        src.query_row("SELECT sqlcipher_export('shidao_rewrite')", [], |_| Ok(()))?;
        let version: i64 = src.query_row("PRAGMA main.user_version", [], |r| r.get(0))?;
        src.execute_batch(&format!("PRAGMA shidao_rewrite.user_version = {version};"))
    })();
    let detached = src.execute_batch("DETACH DATABASE shidao_rewrite");
    copied?;
    detached
}

pub(super) fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().read(true).write(true).open(path)?.sync_all()
}

/// Renames the rewritten file over the original and syncs the folder, so the rename itself is
/// on disk before the caller goes on.
pub(super) fn replace(rewritten: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(rewritten, path)?;
    // A folder can be opened and synced on Unix (Android, iOS, Linux); elsewhere the rename is
    // left to the file system.
    #[cfg(unix)]
    {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_shows_in_debug_and_is_exactly_32_bytes() {
        let key = StoreKey::from([0xab; 32]);
        assert_eq!(format!("{key:?}"), "StoreKey(redacted)");
        assert!(!format!("{key:?}").contains("ab"));
        assert!(StoreKey::from_slice(&[1; 31]).is_none());
        assert!(StoreKey::from_slice(&[1; 33]).is_none());
        assert!(StoreKey::from_slice(&[1; 32]).is_some());
        assert_eq!(key.literal().as_str(), format!("x'{}'", "ab".repeat(32)));
    }
}
