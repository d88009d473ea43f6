//! Backups of the central store and its attachments, taken while the relay serves, and their
//! restore.
//!
//! A backup is a folder holding `store.db` (a consistent snapshot of the central store),
//! `attachments/` (every stored file the snapshot names, by hash) and `manifest.json` (what it
//! holds, with the SHA-256 of `store.db`). It is written as `<name>.partial` and renamed to
//! `<name>` only once everything in it was written, synced to disk and verified, so a folder
//! without the suffix is always a complete backup; a `.partial` one is what an interrupted
//! backup left and the next backup removes.
//!
//! The snapshot is `VACUUM INTO` on a read-only connection of its own: one statement in one read
//! transaction, so in WAL mode it sees exactly the transactions committed before it began and
//! never takes the relay's writer connection or blocks its writes. (The online backup API copies
//! in steps and starts over whenever another connection writes between them, which under steady
//! syncing may never finish unless done in one step; `VACUUM INTO` needs no extra feature of
//! rusqlite, writes a compact file, and refuses to overwrite one that exists.)
//!
//! Verification, of a new backup and of one about to be restored: the file hashes to the
//! manifest, `PRAGMA integrity_check` says ok, its schema version and record count are the
//! manifest's, every record's document loads as a record of its programme's forms (as the relay
//! loads them in [`crate::sync`]), and every stored file the database names is present, hashes to
//! its name, and the count and bytes are the manifest's.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The database file inside a backup.
pub const DB_FILE: &str = "store.db";
/// The attachments folder inside a backup.
pub const ATTACHMENTS: &str = "attachments";
/// The manifest inside a backup.
pub const MANIFEST: &str = "manifest.json";
/// The suffix of a backup being written.
pub const PARTIAL: &str = ".partial";
/// The manifest format this server writes and reads.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(pub String);

type Result<T> = std::result::Result<T, BackupError>;

fn err(msg: impl Into<String>) -> BackupError {
    BackupError(msg.into())
}

fn io_err(doing: impl std::fmt::Display, path: &Path, e: std::io::Error) -> BackupError {
    let full = if e.kind() == std::io::ErrorKind::StorageFull { " (the disk is full)" } else { "" };
    err(format!("{doing} {}: {e}{full}", path.display()))
}

/// What a backup holds; `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// When the snapshot was taken: Unix seconds and UTC (`2026-12-01T22:30:00Z`).
    pub created_at: i64,
    pub created: String,
    pub schema_version: i64,
    pub records: u64,
    pub attachments: u64,
    pub attachment_bytes: u64,
    pub db_file: String,
    pub db_bytes: u64,
    pub db_sha256: String,
}

/// The attachments folder of the central store at `db`: `<stem>-attachments` beside it.
pub fn attachments_dir_of(db: &Path) -> PathBuf {
    let dir = db.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = db.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "shidao".into());
    dir.join(format!("{stem}-attachments"))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date of a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The folder name of a scheduled backup taken at `secs`: `20261201T223000Z`.
pub fn folder_name(secs: i64) -> String {
    utc(secs).replace(['-', ':'], "")
}

/// Hashes a file while copying it to `to` (created new), syncing the copy; returns hash and size.
fn copy_hashing(from: &Path, to: &Path) -> Result<(String, u64)> {
    let mut src = std::fs::File::open(from).map_err(|e| io_err("cannot read", from, e))?;
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).open(to).map_err(|e| io_err("cannot create", to, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| io_err("cannot read", from, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(|e| io_err("cannot write", to, e))?;
        size += n as u64;
    }
    dst.sync_all().map_err(|e| io_err("cannot sync", to, e))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// SHA-256 and size of a file.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err("cannot read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_err("cannot sync the folder", dir, e))
}

fn read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok(conn)
}

/// What [`check_db`] found in a database file.
struct DbFacts {
    schema_version: i64,
    records: u64,
    /// Every stored file the database names: hash and size.
    files: Vec<(String, u64)>,
}

/// Integrity, schema version, records (each document loads) and the stored files named.
fn check_db(path: &Path) -> Result<DbFacts> {
    let conn = read_only(path)?;
    let sql = |e: rusqlite::Error| err(format!("{}: {e}", path.display()));
    let integrity: Vec<String> =
        conn.prepare("PRAGMA integrity_check").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect()).map_err(sql)?;
    if integrity != ["ok"] {
        return Err(err(format!("{} fails its integrity check: {}", path.display(), integrity.join("; "))));
    }
    let schema_version = shidao_core::migrate::version(&conn).map_err(sql)?;
    if schema_version != crate::db::VERSION {
        return Err(err(format!("{} has schema version {schema_version}; this server has {}", path.display(), crate::db::VERSION)));
    }
    let mut records = 0u64;
    {
        let mut stmt = conn
            .prepare(
                "SELECT r.id, s.programme_id, d.doc FROM records r LEFT JOIN documents d ON d.record_id = r.id
                 LEFT JOIN schools s ON s.id = r.school_id ORDER BY r.id",
            )
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let id: String = row.get(0).map_err(sql)?;
            let programme: Option<String> = row.get(1).map_err(sql)?;
            let doc: Option<Vec<u8>> = row.get(2).map_err(sql)?;
            let bad = |why: String| err(format!("{}: record {id}: {why}", path.display()));
            let doc = doc.ok_or_else(|| bad("its document is missing".into()))?;
            let programme = programme.ok_or_else(|| bad("its school is missing".into()))?;
            let doc = automerge::Automerge::load(&doc).map_err(|e| bad(format!("its document does not load: {e}")))?;
            shidao_core::Record::from_doc(doc, crate::forms::resolver(&conn, &programme), crate::sync::reader(), shidao_core::Clock::fixed(0))
                .map_err(|e| bad(format!("its document is not a record: {e}")))?;
            records += 1;
        }
    }
    let files: Vec<(String, u64)> = conn
        .prepare("SELECT hash, size FROM attachments ORDER BY hash")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect())
        .map_err(sql)?;
    for (hash, _) in &files {
        crate::attachments::check_hash(hash).map_err(|_| err(format!("{}: stored file name {hash:?} is not a SHA-256", path.display())))?;
    }
    Ok(DbFacts { schema_version, records, files })
}

/// Takes a backup of the central store `db` (attachments in `attachments`) into the folder
/// `dest`, which must not exist; written as `dest.partial` (an old one is removed first) and
/// renamed once verified. On failure the partial folder is removed and `dest` does not exist.
pub fn backup(db: &Path, attachments: &Path, dest: &Path, now: i64) -> Result<Manifest> {
    if dest.exists() {
        return Err(err(format!("backup folder {} already exists; name a new one", dest.display())));
    }
    if !db.is_file() {
        return Err(err(format!("central store {} does not exist", db.display())));
    }
    let partial = partial_of(dest);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io_err("cannot remove the unfinished backup", &partial, e))?;
    }
    let result = write_backup(db, attachments, dest, &partial, now);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

fn partial_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(PARTIAL);
    dest.with_file_name(name)
}

/// The previous complete backup beside `dest` (the newest by name), whose attachments a new one
/// may share by hard link.
fn previous_beside(dest: &Path) -> Option<PathBuf> {
    let parent = dest.parent()?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != dest && !p.to_string_lossy().ends_with(PARTIAL) && p.join(MANIFEST).is_file())
        .collect();
    names.sort();
    names.pop()
}

fn write_backup(db: &Path, attachments: &Path, dest: &Path, partial: &Path, now: i64) -> Result<Manifest> {
    std::fs::create_dir_all(partial).map_err(|e| io_err("cannot create the backup folder", partial, e))?;
    let files_dir = partial.join(ATTACHMENTS);
    std::fs::create_dir(&files_dir).map_err(|e| io_err("cannot create", &files_dir, e))?;

    // 1. The snapshot, from a read-only connection of its own.
    let db_copy = partial.join(DB_FILE);
    let target = db_copy.to_str().ok_or_else(|| err(format!("backup path {} is not UTF-8", db_copy.display())))?;
    let source = read_only(db)?;
    source.execute("VACUUM INTO ?1", [target]).map_err(|e| {
        let full = matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull)) ;
        err(format!("copying {} into {}: {e}{}", db.display(), db_copy.display(), if full { " (the disk is full)" } else { "" }))
    })?;
    drop(source);
    std::fs::File::open(&db_copy).and_then(|f| f.sync_all()).map_err(|e| io_err("cannot sync", &db_copy, e))?;

    // 2. Check it, and learn the stored files it names.
    let facts = check_db(&db_copy)?;

    // 3. Those files, each hashed as it is copied (or shared with the previous backup when
    //    that copy still hashes right).
    let previous = previous_beside(dest).map(|p| p.join(ATTACHMENTS));
    let mut bytes = 0u64;
    for (hash, size) in &facts.files {
        let to = files_dir.join(hash);
        let linked = previous.as_ref().map(|p| p.join(hash)).filter(|p| p.is_file()).is_some_and(|old| {
            matches!(hash_file(&old), Ok((h, _)) if &h == hash) && std::fs::hard_link(&old, &to).is_ok()
        });
        let got = if linked {
            *size
        } else {
            let from = attachments.join(hash);
            let (h, got) = copy_hashing(&from, &to)?;
            if &h != hash {
                return Err(err(format!("stored file {} does not hash to its name (it hashes to {h}); the attachments folder is damaged", from.display())));
            }
            got
        };
        if got != *size {
            return Err(err(format!("stored file {hash} has {got} bytes; the store says {size}")));
        }
        bytes += got;
    }
    sync_dir(&files_dir)?;

    // 4. The manifest, then the folder under its final name.
    let (db_sha256, db_bytes) = hash_file(&db_copy)?;
    let manifest = Manifest {
        format: FORMAT,
        created_at: now,
        created: utc(now),
        schema_version: facts.schema_version,
        records: facts.records,
        attachments: facts.files.len() as u64,
        attachment_bytes: bytes,
        db_file: DB_FILE.into(),
        db_bytes,
        db_sha256,
    };
    let path = partial.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| err(format!("manifest: {e}")))?;
    let mut f = std::fs::File::create(&path).map_err(|e| io_err("cannot create", &path, e))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io_err("cannot write", &path, e))?;
    sync_dir(partial)?;
    std::fs::rename(partial, dest).map_err(|e| io_err("cannot complete the backup as", dest, e))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(manifest)
}

/// Checks a backup folder whole: its manifest, database and files. Returns the manifest.
pub fn verify(src: &Path) -> Result<Manifest> {
    let path = src.join(MANIFEST);
    if src.to_string_lossy().ends_with(PARTIAL) {
        return Err(err(format!("{} is an unfinished backup", src.display())));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io_err("cannot read the manifest", &path, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| err(format!("manifest {}: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(err(format!("manifest {}: format {} is not {FORMAT}", path.display(), m.format)));
    }
    if m.db_file != DB_FILE {
        return Err(err(format!("manifest {}: db_file {:?} is not {DB_FILE:?}", path.display(), m.db_file)));
    }
    let db = src.join(DB_FILE);
    let (sha, size) = hash_file(&db)?;
    if sha != m.db_sha256 || size != m.db_bytes {
        return Err(err(format!("{} does not match the manifest: sha256 {sha} ({size} bytes), manifest {} ({} bytes)", db.display(), m.db_sha256, m.db_bytes)));
    }
    let facts = check_db(&db)?;
    if facts.schema_version != m.schema_version || facts.records != m.records {
        return Err(err(format!(
            "{} holds schema {} with {} records; the manifest says schema {} with {}",
            db.display(),
            facts.schema_version,
            facts.records,
            m.schema_version,
            m.records
        )));
    }
    let mut bytes = 0u64;
    for (hash, size) in &facts.files {
        let file = src.join(ATTACHMENTS).join(hash);
        if !file.is_file() {
            return Err(err(format!("stored file {} is missing from the backup", file.display())));
        }
        let (h, got) = hash_file(&file)?;
        if &h != hash || got != *size {
            return Err(err(format!("stored file {} is damaged: it hashes to {h} ({got} bytes), not to its name ({size} bytes)", file.display())));
        }
        bytes += got;
    }
    if facts.files.len() as u64 != m.attachments || bytes != m.attachment_bytes {
        return Err(err(format!(
            "{}: {} stored files of {bytes} bytes; the manifest says {} of {}",
            src.display(),
            facts.files.len(),
            m.attachments,
            m.attachment_bytes
        )));
    }
    Ok(m)
}

/// The lock a serving relay holds on its store (`<db>.lock`, released when the process ends),
/// which a restore takes too.
pub struct StoreLock {
    _file: std::fs::File,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the store's lock, or says who holds it.
pub fn lock_store(db: &Path, doing: &str) -> Result<StoreLock> {
    let path = lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("cannot open the lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(StoreLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(format!(
            "cannot {doing}: a relay (or a restore) is using the central store {} (it holds {}); stop it first",
            db.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("cannot lock", &path, e)),
    }
}

/// Restores the backup in `src` over the central store `db` (attachments into `attachments`).
/// Refused while a relay serves the store. The backup is verified whole first; then the files the
/// store lacks are copied in, the database is written beside the live one, synced, and renamed
/// over it (the old one kept as `<db>.before-restore-<time>`). Returns the manifest restored.
pub fn restore(src: &Path, db: &Path, attachments: &Path, now: i64) -> Result<(Manifest, Option<PathBuf>)> {
    let _lock = lock_store(db, "restore")?;
    let m = verify(src)?;
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = db.file_name().map(|n| n.to_string_lossy().to_string()).ok_or_else(|| err(format!("{} names no file", db.display())))?;

    // 1. Attachments: each file the backup holds that the store lacks (or holds damaged), via a
    //    temporary name, so a file under its hash is always whole.
    std::fs::create_dir_all(attachments).map_err(|e| io_err("cannot create", attachments, e))?;
    let from_dir = src.join(ATTACHMENTS);
    for entry in std::fs::read_dir(&from_dir).map_err(|e| io_err("cannot read", &from_dir, e))?.flatten() {
        let hash = entry.file_name().to_string_lossy().to_string();
        if crate::attachments::check_hash(&hash).is_err() {
            continue;
        }
        let live = attachments.join(&hash);
        if matches!(hash_file(&live), Ok((h, _)) if h == hash) {
            continue;
        }
        let tmp = attachments.join(format!("{hash}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        copy_hashing(&entry.path(), &tmp)?;
        std::fs::rename(&tmp, &live).map_err(|e| io_err("cannot rename into", &live, e))?;
    }
    sync_dir(attachments)?;

    // 2. The database beside the live one, synced.
    let tmp = dir.join(format!("{name}.restoring"));
    let _ = std::fs::remove_file(&tmp);
    let (sha, _) = copy_hashing(&src.join(DB_FILE), &tmp)?;
    if sha != m.db_sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!("{} changed while it was copied", src.join(DB_FILE).display())));
    }

    // 3. The live store's write-ahead log folded in (it belongs to the old file and must never
    //    be read against the new one), the old file kept aside, the new one renamed over it.
    let wal = dir.join(format!("{name}-wal"));
    let shm = dir.join(format!("{name}-shm"));
    let mut aside = None;
    if db.exists() {
        let folded = Connection::open(db)
            .and_then(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).map(|busy| (c, busy)))
            .map(|(c, busy)| {
                drop(c);
                busy == 0
            })
            .unwrap_or(false);
        let keep = dir.join(format!("{name}.before-restore-{}", folder_name(now)));
        std::fs::hard_link(db, &keep).or_else(|_| std::fs::copy(db, &keep).map(|_| ())).map_err(|e| io_err("cannot keep the old store as", &keep, e))?;
        if wal.exists() {
            if !folded {
                // The old store could not be opened (damaged): its log goes aside with it.
                let keep_wal = dir.join(format!("{name}.before-restore-{}-wal", folder_name(now)));
                std::fs::rename(&wal, &keep_wal).map_err(|e| io_err("cannot move aside", &wal, e))?;
            } else {
                std::fs::remove_file(&wal).map_err(|e| io_err("cannot remove", &wal, e))?;
            }
        }
        aside = Some(keep);
    }
    let _ = std::fs::remove_file(&shm);
    std::fs::rename(&tmp, db).map_err(|e| io_err("cannot rename the restored store to", db, e))?;
    sync_dir(&dir)?;
    // Opened once as the relay opens it: WAL mode on, schema current; the restore is the first
    // row the restored store's audit log gains.
    let conn = crate::db::open(db).map_err(|e| err(e.to_string()))?;
    let detail = format!(
        "from {} (taken {}): {} records, {} attachments{}",
        src.display(),
        m.created,
        m.records,
        m.attachments,
        aside.as_ref().map(|a| format!("; the store it replaced is kept as {}", a.display())).unwrap_or_default()
    );
    let entry = crate::audit::Entry { actor: crate::audit::CONSOLE, action: "store.restore", detail: Some(&detail), ..Default::default() };
    crate::audit::append(&conn, now, &entry).map_err(|e| err(format!("the restore could not be recorded in the audit log: {e}")))?;
    Ok((m, aside))
}

/// What `serve --backup-dir` does: a backup every `every` into `dir`, keeping the newest `keep`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

/// One scheduled backup: removes what interrupted backups left, writes a new one named by the
/// time, then removes the oldest complete ones beyond `keep`.
pub fn scheduled(db: &Path, attachments: &Path, schedule: &Schedule, now: i64) -> Result<(PathBuf, Manifest)> {
    std::fs::create_dir_all(&schedule.dir).map_err(|e| io_err("cannot create the backup folder", &schedule.dir, e))?;
    for entry in std::fs::read_dir(&schedule.dir).map_err(|e| io_err("cannot read", &schedule.dir, e))?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(PARTIAL) {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io_err("cannot remove the unfinished backup", &entry.path(), e))?;
        }
    }
    let mut dest = schedule.dir.join(folder_name(now));
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = schedule.dir.join(format!("{}-{n}", folder_name(now)));
    }
    let manifest = backup(db, attachments, &dest, now)?;
    let mut complete: Vec<PathBuf> = std::fs::read_dir(&schedule.dir)
        .map_err(|e| io_err("cannot read", &schedule.dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(PARTIAL) && p.join(MANIFEST).is_file())
        .collect();
    complete.sort();
    while complete.len() > schedule.keep {
        // Renamed first, so a backup half removed never looks complete (the next backup removes
        // what an interrupted removal left).
        let old = complete.remove(0);
        let going = partial_of(&old);
        std::fs::rename(&old, &going).map_err(|e| io_err("cannot remove the old backup", &old, e))?;
        std::fs::remove_dir_all(&going).map_err(|e| io_err("cannot remove the old backup", &going, e))?;
    }
    Ok((dest, manifest))
}

/// A duration such as `6h`, `30m`, `90s` or `1d` (a whole number and a unit).
pub fn parse_every(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{text}`: give a whole number and a unit, e.g. 6h, 30m, 90s, 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d (e.g. 6h, 30m)")),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err(format!("`{text}`: give a time above 0 and at most a year"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_written() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_251_800), "2026-12-02T22:50:00Z");
        assert_eq!(folder_name(951_782_400), "20000229T000000Z");
        assert_eq!(parse_every("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_every("30m"), Ok(Duration::from_secs(1800)));
        for bad in ["", "6", "h", "0m", "6 hours", "-1h", "400d"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
