//! Attachments (photos, signature strokes) travel apart from records, by content hash.
//!
//! `HEAD /v1/attachments/{hash}` says how many bytes the server holds (`upload-offset`), so a cut
//! upload resumes there; `PUT` with `upload-offset` and `upload-length` appends a piece; once all
//! bytes are in, they must hash to the name or the upload is discarded. The same file uploaded
//! twice is stored once. A device may download a file that a record in its scope refers to, or
//! that its user uploaded.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::accounts::{Device, Scope};
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

fn paths(dir: &Path, hash: &str) -> (PathBuf, PathBuf) {
    (dir.join(hash), dir.join(format!("{hash}.part")))
}

/// Bytes held so far and whether the file is complete; `None` when the server has none of it.
pub fn status(conn: &Connection, hash: &str) -> AppResult<Option<(u64, u64, bool)>> {
    check_hash(hash)?;
    Ok(conn
        .query_row("SELECT received, size, complete FROM attachments WHERE hash = ?1", [hash], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, bool>(2)?))
        })
        .optional()?)
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
    let (done_path, part_path) = paths(dir, hash);
    let tx = conn.unchecked_transaction()?;
    let held = match status(&tx, hash)? {
        Some((_, _, true)) => return Ok(length),
        Some((received, size, false)) => {
            if size != length {
                return Err(AppError::Conflict(format!("upload of {hash} started with length {size}, not {length}")));
            }
            received
        }
        None => {
            tx.execute(
                "INSERT INTO attachments (hash, size, received, complete, mime, uploaded_by, created_at) VALUES (?1, ?2, 0, 0, ?3, ?4, ?5)",
                params![hash, length as i64, mime, device.user, now],
            )?;
            0
        }
    };
    if offset != held {
        return Err(AppError::Conflict(format!("upload of {hash} continues at byte {held}, not {offset}")));
    }
    if held + piece.len() as u64 > length {
        return Err(AppError::BadRequest(format!("piece runs past the declared length {length}")));
    }
    let io = |e: std::io::Error| AppError::io(format!("attachment {hash}"), e);
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&part_path).map_err(io)?;
    file.seek(SeekFrom::Start(held)).map_err(io)?;
    file.write_all(piece).map_err(io)?;
    file.sync_data().map_err(io)?;
    let received = held + piece.len() as u64;
    if received == length {
        let bytes = std::fs::read(&part_path).map_err(io)?;
        if hex::encode(Sha256::digest(&bytes)) != hash {
            let _ = std::fs::remove_file(&part_path);
            tx.execute("DELETE FROM attachments WHERE hash = ?1", [hash])?;
            tx.commit()?;
            return Err(AppError::BadRequest(format!("the uploaded bytes do not hash to {hash}; upload discarded")));
        }
        std::fs::rename(&part_path, &done_path).map_err(io)?;
        tx.execute("UPDATE attachments SET received = ?2, complete = 1 WHERE hash = ?1", params![hash, received as i64])?;
    } else {
        tx.execute("UPDATE attachments SET received = ?2 WHERE hash = ?1", params![hash, received as i64])?;
    }
    tx.commit()?;
    Ok(received)
}

/// The bytes and type of a complete file, if this device may read it.
pub fn read(conn: &Connection, dir: &Path, device: &Device, scope: &Scope, hash: &str) -> AppResult<(Vec<u8>, String)> {
    check_hash(hash)?;
    let row: Option<(String, String, bool)> = conn
        .query_row("SELECT mime, uploaded_by, complete FROM attachments WHERE hash = ?1", [hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((mime, uploaded_by, true)) = row else {
        return Err(AppError::NotFound(format!("attachment {hash} is not on the server")));
    };
    let mut allowed = uploaded_by == device.user;
    if !allowed {
        let mut stmt = conn.prepare_cached(
            "SELECT r.school_id FROM record_files f JOIN records r ON r.id = f.record_id WHERE f.hash = ?1",
        )?;
        let schools: Vec<String> = stmt.query_map([hash], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        allowed = schools.iter().any(|s| scope.contains(s));
    }
    if !allowed {
        // Same answer as a missing file: nobody learns what exists outside their scope.
        return Err(AppError::NotFound(format!("attachment {hash} is not on the server")));
    }
    let bytes = std::fs::read(paths(dir, hash).0).map_err(|e| AppError::Internal(format!("attachment {hash}: {e}")))?;
    Ok((bytes, mime))
}
