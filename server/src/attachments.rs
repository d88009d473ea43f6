//! Attachments (photos, signature strokes) travel apart from records, by content hash.
//!
//! A file is stored once per SHA-256, but the hash is a name, not a key: the server answers about
//! a stored file only to a user who has proved they hold its bytes (a *holder*: someone who
//! uploaded them whole and saw them hash to the name) or who may read it (see [`may_read`]). To
//! everyone else a stored file looks absent.
//!
//! `HEAD /v1/attachments/{hash}` says how many bytes the server holds for this user
//! (`upload-offset`), so a cut upload resumes there; `PUT` with `upload-offset` and
//! `upload-length` appends a piece. Each user uploads into a part file of their own, so nobody
//! can spoil another's upload or the stored file; once all bytes are in, they must hash to the
//! name or the upload is discarded. A complete upload makes the user a holder; the bytes are
//! kept only if the server had none (the same file uploaded twice is stored once).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use shidao_core::template::Role;

use crate::accounts::{self, Device, Scope};
use crate::error::{AppError, AppResult};

/// Largest file accepted, as on the devices.
pub const MAX_ATTACHMENT: u64 = shidao_core::store::MAX_ATTACHMENT as u64;

pub fn check_hash(hash: &str) -> AppResult<()> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(AppError::BadRequest("an attachment is named by its SHA-256: 64 lowercase hex digits".into()))
    }
}

/// The stored file of `hash`.
fn stored_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(hash)
}

/// The name of `user`'s part file for `hash` (the user id hashed, so any id makes a safe name).
fn part_name(hash: &str, user: &str) -> String {
    let who = hex::encode(Sha256::digest(user.as_bytes()));
    format!("{hash}.{}.part", &who[..32])
}

/// What a HEAD answers: bytes held, the declared length, and whether the file is complete.
pub type Status = (u64, u64, bool);

/// A user's upload in progress: bytes received, declared length, part file name.
struct Upload {
    received: u64,
    size: u64,
    part: String,
}

fn upload_of(conn: &Connection, hash: &str, user: &str) -> AppResult<Option<Upload>> {
    Ok(conn
        .prepare_cached("SELECT received, size, part FROM attachment_uploads WHERE hash = ?1 AND user_id = ?2")?
        .query_row(params![hash, user], |r| {
            Ok(Upload { received: r.get::<_, i64>(0)? as u64, size: r.get::<_, i64>(1)? as u64, part: r.get(2)? })
        })
        .optional()?)
}

/// The size and type of a stored file.
fn stored(conn: &Connection, hash: &str) -> AppResult<Option<(u64, String)>> {
    Ok(conn
        .prepare_cached("SELECT size, mime FROM attachments WHERE hash = ?1")?
        .query_row([hash], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

fn is_holder(conn: &Connection, hash: &str, user: &str) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM attachment_holders WHERE hash = ?1 AND user_id = ?2")?
        .query_row(params![hash, user], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether `device`'s user may read the stored file `hash`: they hold it, or a record in their
/// scope refers to it AND one of its holders has that record's school in scope. (A record can
/// name any hash; the second half keeps a hash copied into one's own record from opening a file
/// that only other schools' people ever held.)
pub fn may_read(conn: &Connection, device: &Device, hash: &str) -> AppResult<bool> {
    if is_holder(conn, hash, device.user.as_str())? {
        return Ok(true);
    }
    let mine = accounts::scope(conn, device.user.as_str(), device.role, device.programme.as_deref())?;
    let schools: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT r.school_id FROM record_files f JOIN records r ON r.id = f.record_id WHERE f.hash = ?1",
        )?
        .query_map([hash], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?
        .into_iter()
        .filter(|s| mine.contains(s))
        .collect();
    if schools.is_empty() {
        return Ok(false);
    }
    let holders: Vec<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT u.id, u.role, u.programme_id FROM attachment_holders h JOIN users u ON u.id = h.user_id WHERE h.hash = ?1",
        )?
        .query_map([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (user, role, programme) in holders {
        let Some(role) = Role::parse(&role) else { continue };
        let theirs: Scope = accounts::scope(conn, &user, role, programme.as_deref())?;
        if schools.iter().any(|s| theirs.contains(s)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What the server holds of `hash` for this device's user: the whole file if they may know of
/// it ([`may_read`]), else their own upload in progress; `None` when neither.
pub fn status(conn: &Connection, device: &Device, hash: &str) -> AppResult<Option<Status>> {
    check_hash(hash)?;
    if let Some((size, _)) = stored(conn, hash)?
        && may_read(conn, device, hash)?
    {
        return Ok(Some((size, size, true)));
    }
    Ok(upload_of(conn, hash, device.user.as_str())?.map(|u| (u.received, u.size, false)))
}

/// Appends `piece` at `offset` of a file of `length` bytes. Returns the bytes held afterwards.
#[allow(clippy::too_many_arguments)]
pub fn append(
    conn: &Connection,
    dir: &Path,
    device: &Device,
    hash: &str,
    offset: u64,
    length: u64,
    mime: &str,
    piece: &[u8],
    now: i64,
) -> AppResult<u64> {
    check_hash(hash)?;
    if length == 0 || length > MAX_ATTACHMENT {
        return Err(AppError::TooLarge { limit: MAX_ATTACHMENT as usize });
    }
    if mime.len() > 100 || !mime.contains('/') {
        return Err(AppError::BadRequest("content-type of an attachment must be a MIME type".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| AppError::io("attachment folder", e))?;
    let user = device.user.as_str();
    let io = |e: std::io::Error| AppError::io(format!("attachment {hash}"), e);
    let tx = conn.unchecked_transaction()?;
    let is_stored = stored(&tx, hash)?.is_some();
    if is_stored && may_read(&tx, device, hash)? {
        // Nothing to send: drop what this user had started of it.
        if let Some(u) = upload_of(&tx, hash, user)? {
            tx.execute("DELETE FROM attachment_uploads WHERE hash = ?1 AND user_id = ?2", params![hash, user])?;
            let _ = std::fs::remove_file(dir.join(&u.part));
        }
        tx.commit()?;
        return Ok(length);
    }
    // Anyone else uploads into their own part file, whether or not the server has the file.
    let upload = match upload_of(&tx, hash, user)? {
        Some(u) if u.size != length => {
            return Err(AppError::Conflict(format!("upload of {hash} started with length {}, not {length}", u.size)));
        }
        Some(u) => u,
        None => {
            let part = part_name(hash, user);
            tx.execute(
                "INSERT INTO attachment_uploads (hash, user_id, size, received, mime, part, created_at) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                params![hash, user, length as i64, mime, part, now],
            )?;
            Upload { received: 0, size: length, part }
        }
    };
    let held = upload.received;
    if offset != held {
        return Err(AppError::Conflict(format!("upload of {hash} continues at byte {held}, not {offset}")));
    }
    if held + piece.len() as u64 > length {
        return Err(AppError::BadRequest(format!("piece runs past the declared length {length}")));
    }
    let part_path = dir.join(&upload.part);
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&part_path).map_err(io)?;
    // Whatever an earlier, failed write left past the acknowledged bytes goes.
    file.set_len(held).map_err(io)?;
    file.seek(SeekFrom::Start(held)).map_err(io)?;
    file.write_all(piece).map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);
    let received = held + piece.len() as u64;
    if received < length {
        tx.execute(
            "UPDATE attachment_uploads SET received = ?3 WHERE hash = ?1 AND user_id = ?2",
            params![hash, user, received as i64],
        )?;
        tx.commit()?;
        return Ok(received);
    }
    let bytes = std::fs::read(&part_path).map_err(io)?;
    tx.execute("DELETE FROM attachment_uploads WHERE hash = ?1 AND user_id = ?2", params![hash, user])?;
    if hex::encode(Sha256::digest(&bytes)) != hash {
        let _ = std::fs::remove_file(&part_path);
        tx.commit()?;
        return Err(AppError::BadRequest(format!("the uploaded bytes do not hash to {hash}; upload discarded")));
    }
    if is_stored {
        // The server had the file: it stays as it is, this user has proved they hold it.
        let _ = std::fs::remove_file(&part_path);
    } else {
        std::fs::rename(&part_path, stored_path(dir, hash)).map_err(io)?;
        tx.execute(
            "INSERT INTO attachments (hash, size, mime, uploaded_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash, length as i64, mime, user, now],
        )?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO attachment_holders (hash, user_id, since) VALUES (?1, ?2, ?3)",
        params![hash, user, now],
    )?;
    tx.commit()?;
    Ok(received)
}

/// The bytes and type of a stored file, if this device may read it ([`may_read`]).
pub fn read(conn: &Connection, dir: &Path, device: &Device, hash: &str) -> AppResult<(Vec<u8>, String)> {
    check_hash(hash)?;
    let missing = || AppError::NotFound(format!("attachment {hash} is not on the server"));
    let Some((_, mime)) = stored(conn, hash)? else { return Err(missing()) };
    if !may_read(conn, device, hash)? {
        // Same answer as a missing file: nobody learns what exists outside their scope.
        return Err(missing());
    }
    let bytes = std::fs::read(stored_path(dir, hash)).map_err(|e| AppError::Internal(format!("attachment {hash}: {e}")))?;
    Ok((bytes, mime))
}

/// An upload nobody has added a piece to for this long is abandoned (a tablet offline for
/// longer simply starts that upload again: it still has the bytes).
pub const ABANDONED_UPLOAD_SECS: i64 = 14 * 24 * 3600;

/// What [`sweep_abandoned`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub uploads: usize,
    pub bytes: u64,
}

/// Removes uploads idle for `idle_secs` or more at `now` (the last piece is the part file's
/// modification time; the upload's start when the file is missing), rows and part files, and
/// any other part file idle as long (one no upload names, left by a crash between file and row).
/// It runs under the store's connection, as every append does, so no piece lands meanwhile.
/// Stored files and uploads still in use are never touched. The next `HEAD` of a swept upload
/// says 0 bytes held, so its device sends the file again from the start.
pub fn sweep_abandoned(conn: &Connection, dir: &Path, now: i64, idle_secs: i64) -> AppResult<Swept> {
    let modified = |path: &Path| -> Option<(i64, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        let secs = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
        Some((secs, meta.len()))
    };
    let mut swept = Swept::default();
    let tx = conn.unchecked_transaction()?;
    let uploads: Vec<(String, String, String, i64)> = tx
        .prepare("SELECT hash, user_id, part, created_at FROM attachment_uploads")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (hash, user, part, created_at) in uploads {
        let path = dir.join(&part);
        let (last, size) = modified(&path).unwrap_or((created_at, 0));
        if now - last < idle_secs {
            continue;
        }
        tx.execute("DELETE FROM attachment_uploads WHERE hash = ?1 AND user_id = ?2", params![hash, user])?;
        match std::fs::remove_file(&path) {
            Ok(()) => swept.bytes += size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AppError::io(format!("removing the abandoned upload {part}"), e)),
        }
        swept.uploads += 1;
    }
    tx.commit()?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(swept); // no attachments folder yet
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".part") {
            continue;
        }
        if let Some((_, size)) = modified(&entry.path()).filter(|(last, _)| now - last >= idle_secs)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            swept.bytes += size;
            swept.uploads += 1;
        }
    }
    Ok(swept)
}
