//! The store's file: opening (and moving a damaged file aside), encryption and rekeying, the
//! integrity check, and salvaging the records of a damaged file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema::{self, SchemaError};
use super::{crypt, forms, Durability, Result, SalvageReport, Store, StoreError, StoreKey, StoreOptions};
use crate::record::Editor;

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

pub(super) fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
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

    /// Checks the file's integrity now (the same check `open` runs).
    pub fn check(&self) -> std::result::Result<(), String> {
        check_integrity(&self.conn)
    }
}
