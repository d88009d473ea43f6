//! One sync round on the server: apply what a device pushed (each record checked by the rules
//! and stored or refused on its own), then page out what the device lacks.
//!
//! What must stay true:
//! - A push is acknowledged only after its transaction committed (`synchronous=FULL`).
//! - A refused record stores nothing: each record is applied inside its own savepoint.
//! - Replays change nothing: changes the server already has are not new, so they are neither
//!   logged nor counted.
//! - A device never receives a record outside its scope.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use automerge::{Automerge, ReadDoc};
use rusqlite::{params, Connection, OptionalExtension};
use shidao_core::record::{peek_school, rules, Record, RecordError, Status};
use shidao_core::sync::protocol::{
    Outcome, Pull, Push, PushResult, SetAsideReport, SyncRequest, SyncResponse, DEFAULT_PULL_BYTES, MAX_APP_CHARS, PROTOCOL,
};
use shidao_core::template::{builtin_templates, Role, Template};
use shidao_core::{Clock, DeviceId, Editor, RecordId, UserId};

use crate::accounts::{self, Device, Scope};
use crate::{forms, projection};
use crate::error::{AppError, AppResult};

/// Most form definitions one request may ask for (a programme publishes tens).
const MAX_WANTED_FORMS: usize = 1000;

/// Largest page of pulled changes a device may ask for.
const MAX_PULL_BYTES: u64 = 8 * 1024 * 1024;

/// The identity the server reads records as (it never writes them).
pub fn reader() -> Editor {
    Editor {
        user: UserId::new("server").unwrap_or_else(|_| unreachable!("a valid id")),
        device: DeviceId::new("server").unwrap_or_else(|_| unreachable!("a valid id")),
        role: Role::Admin,
    }
}

/// The built-in library's version of a form: for readers that hold only built-in records (tests,
/// fuzz checks). Records are read with their programme's registry ([`forms::resolver`]).
pub fn template_of(id: &str, version: u32) -> Option<Arc<Template>> {
    builtin_templates().iter().find(|t| t.id() == id && t.version() == version).cloned()
}

/// A refusal of one record: a machine-readable code and a reason.
struct Refusal {
    code: &'static str,
    reason: String,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into() }
}

enum Applied {
    Stored,
    Unchanged,
    ResendAll(String),
}

/// Runs one sync round for `device`. Everything happens in one transaction; the caller commits.
pub fn handle(conn: &mut Connection, device: &Device, req: SyncRequest, clock: &Clock) -> AppResult<SyncResponse> {
    if req.protocol != PROTOCOL {
        return Err(AppError::BadRequest(format!("protocol {} is not supported; this server speaks {PROTOCOL}", req.protocol)));
    }
    if req.request_id.is_empty() || req.request_id.len() > 100 {
        return Err(AppError::BadRequest("request_id must be 1–100 characters".into()));
    }
    if req.set_aside.len() > 100 {
        return Err(AppError::BadRequest(format!("set_aside reports {} entries; at most 100 a request", req.set_aside.len())));
    }
    if let Some(app) = &req.app {
        if app.chars().count() > MAX_APP_CHARS || app.chars().any(char::is_control) {
            return Err(AppError::BadRequest(format!("app must be at most {MAX_APP_CHARS} printable characters")));
        }
    }
    if req.want_forms.len() > MAX_WANTED_FORMS {
        return Err(AppError::BadRequest(format!("want_forms lists {} forms; at most {MAX_WANTED_FORMS}", req.want_forms.len())));
    }
    let mut seen = HashSet::new();
    for p in &req.push {
        if !seen.insert(p.record.as_str()) {
            return Err(AppError::BadRequest(format!("record {} is pushed twice in one request", p.record)));
        }
    }
    let now = clock.now();
    // IMMEDIATE: the round writes (the device's app, its pushes), and a deferred transaction that
    // read first would fail at its first write with "database is locked" (no wait) whenever
    // another connection wrote in between (a sign-in's last-seen time, a backup's bookkeeping).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let scope = accounts::scope(&tx, device.user.as_str(), device.role, device.programme.as_deref())?;
    if let Some(app) = &req.app {
        tx.prepare_cached("UPDATE devices SET app = ?2 WHERE id = ?1 AND app IS NOT ?2")?.execute(params![device.id, app])?;
    }

    let mut results = Vec::with_capacity(req.push.len());
    let mut accepted = 0;
    for push in &req.push {
        // Cached statements: parsing these four anew for every record cost 6 % of a push.
        tx.prepare_cached("SAVEPOINT push")?.execute([])?;
        let outcome = apply_push(&tx, device, &scope, push, now);
        match outcome {
            Ok(applied) => {
                tx.prepare_cached("RELEASE push")?.execute([])?;
                accepted += 1;
                let (outcome, code, reason) = match applied {
                    Applied::Stored | Applied::Unchanged => (Outcome::Accepted, None, None),
                    Applied::ResendAll(why) => (Outcome::ResendAll, Some("missing_history".to_string()), Some(why)),
                };
                results.push(PushResult { record: push.record.clone(), outcome, code, reason });
            }
            Err(Err(r)) => {
                tx.prepare_cached("ROLLBACK TO push")?.execute([])?;
                tx.prepare_cached("RELEASE push")?.execute([])?;
                tracing::info!(record = %push.record, device = %device.id, code = r.code, reason = %r.reason, "push refused");
                results.push(PushResult {
                    record: push.record.clone(),
                    outcome: Outcome::Refused,
                    code: Some(r.code.to_string()),
                    reason: Some(r.reason),
                });
            }
            Err(Ok(e)) => {
                tx.prepare_cached("ROLLBACK TO push")?.execute([])?;
                tx.prepare_cached("RELEASE push")?.execute([])?;
                return Err(e);
            }
        }
    }

    // Changes the device set aside: kept for reviewers, for records in its scope.
    for report in &req.set_aside {
        keep_set_aside(&tx, device, &scope, report, now)?;
    }

    // Pull: from 0 when the scope changed since the device's last sync.
    let cursor = if req.scope.as_deref() == Some(scope.version.as_str()) { req.cursor } else { 0 };
    let limit = req.max_pull_bytes.unwrap_or(DEFAULT_PULL_BYTES).clamp(1024, MAX_PULL_BYTES);
    let (pull, next, more) = page(&tx, device, &scope, cursor, limit)?;
    let reference = accounts::reference(&tx, device, &scope)?;
    let stale = req.reference.as_deref() != Some(reference.version.as_str());
    // Definitions: those the device asked for, and, when its reference data is out of date (so
    // it cannot have asked), those of the pulled records' forms that are not built in: a record
    // never arrives without its form.
    let mut wanted = req.want_forms.clone();
    if stale {
        wanted.extend(forms::pulled_forms(&tx, &pull, &reference.templates)?);
    }
    let forms = forms::definitions(&tx, &wanted, &reference.templates)?;
    let reference = stale.then_some(reference);

    tx.execute(
        "INSERT OR IGNORE INTO sync_requests (request_id, device_id, at, pushed, accepted) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![req.request_id, device.id, now, req.push.len() as i64, accepted],
    )?;
    tx.commit()?;
    Ok(SyncResponse { protocol: PROTOCOL, cursor: next, more, scope: scope.version, results, pull, reference, forms, server_time: now })
}

/// Keeps a device's report of changes it set aside, once (a replay changes nothing); a report
/// about a record the relay lacks or outside the device's scope is left out.
fn keep_set_aside(conn: &Connection, device: &Device, scope: &Scope, r: &SetAsideReport, now: i64) -> AppResult<()> {
    let school: Option<String> =
        conn.prepare_cached("SELECT school_id FROM records WHERE id = ?1")?.query_row([&r.record], |row| row.get(0)).optional()?;
    if !school.is_some_and(|s| scope.contains(&s)) {
        tracing::info!(record = %r.record, device = %device.id, "set-aside report about a record outside the scope, left out");
        return Ok(());
    }
    let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|e| unreachable!("strings serialise: {e}"));
    conn.prepare_cached(
        "INSERT OR IGNORE INTO set_asides (record_id, device_id, user_id, at, code, reason, fields, acts, reapplied, changes, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![r.record, device.id, device.user, r.at, r.code, r.reason, list(&r.fields), list(&r.acts), list(&r.reapplied), r.changes, now])?;
    Ok(())
}

/// The changes after `cursor` in the device's scope and not pushed by it, up to `limit` bytes.
fn page(conn: &Connection, device: &Device, scope: &Scope, cursor: u64, limit: u64) -> AppResult<(Vec<Pull>, u64, bool)> {
    let max_seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, record_id, school_id, device_id, bytes FROM changes WHERE seq > ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([cursor as i64])?;
    let mut by_record: BTreeMap<String, (i64, Vec<u8>)> = BTreeMap::new();
    let mut size = 0u64;
    let mut next = cursor;
    let mut more = false;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let school: String = row.get(2)?;
        let from: String = row.get(3)?;
        if from == device.id.as_str() || !scope.contains(&school) {
            next = seq as u64;
            continue;
        }
        let bytes: Vec<u8> = row.get(4)?;
        if size > 0 && size + bytes.len() as u64 > limit {
            more = true;
            break;
        }
        size += bytes.len() as u64;
        let record: String = row.get(1)?;
        let entry = by_record.entry(record).or_insert_with(|| (seq, Vec::new()));
        entry.1.extend_from_slice(&bytes);
        next = seq as u64;
    }
    if !more {
        next = next.max(max_seq as u64).max(cursor);
    }
    // In log order, so a record's creation comes before records that link to it.
    let mut pulls: Vec<(i64, Pull)> =
        by_record.into_iter().map(|(record, (first, changes))| (first, Pull { record, changes })).collect();
    pulls.sort_by_key(|(first, _)| *first);
    Ok((pulls.into_iter().map(|(_, p)| p).collect(), next, more))
}

/// Applies one pushed record; `Err(Err(refusal))` refuses it, `Err(Ok(e))` fails the request.
fn apply_push(
    conn: &Connection,
    device: &Device,
    scope: &Scope,
    push: &Push,
    now: i64,
) -> Result<Applied, Result<AppError, Refusal>> {
    let sql = |e: rusqlite::Error| Ok(AppError::from(e));
    let id = RecordId::new(push.record.clone()).map_err(|e| Err(refuse("bad_record_id", e.to_string())))?;
    let existing: Option<(Vec<u8>, String, String)> = conn
        .prepare_cached("SELECT d.doc, r.school_id, r.status FROM records r JOIN documents d ON d.record_id = r.id WHERE r.id = ?1")
        .and_then(|mut s| s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(sql)?;

    // Someone else's record: refused before anything is read, whatever the bytes are.
    if let Some((_, school, _)) = &existing {
        if !scope.contains(school) {
            return Err(Err(refuse("out_of_scope", format!("record {id} is outside the scope of {}", device.user))));
        }
    }

    // 1. Bytes: must be Automerge changes (or a document) that apply cleanly.
    let mut doc = match &existing {
        Some((bytes, _, _)) => Automerge::load(bytes).map_err(|e| Ok(AppError::Internal(format!("stored record {id} unreadable: {e}"))))?,
        None => Automerge::new(),
    };
    let before = doc.get_heads();
    if let Some((_, _, status)) = &existing {
        if status == Status::Approved.as_str() {
            // Nothing may change a sealed record; a replay of what it already holds is fine.
            let mut probe = doc.clone();
            if probe.load_incremental(&push.changes).is_ok() && probe.get_heads() == before {
                return Ok(Applied::Unchanged);
            }
            return Err(Err(refuse("sealed", format!("record {id} is approved and sealed"))));
        }
    }
    doc.load_incremental(&push.changes)
        .map_err(|e| Err(refuse("corrupt", format!("the changes of record {id} cannot be read: {e}"))))?;
    if !doc.get_missing_deps(&[]).is_empty() {
        return Ok(Applied::ResendAll(format!("the server lacks earlier changes of record {id}; send all of it")));
    }
    let new: Vec<_> = doc.get_changes_meta(&before).into_iter().map(|m| m.into_owned()).collect();
    if new.is_empty() {
        return Ok(Applied::Unchanged);
    }

    // 2. Every new change is by this user on this device, from an actor bound to this device.
    let expected = format!("{}/{}", device.user, device.id);
    let mut actors = HashSet::new();
    for m in &new {
        let author = m.author.as_ref().map(|a| String::from_utf8_lossy(a.as_bytes()).to_string());
        if author.as_deref() != Some(expected.as_str()) {
            return Err(Err(refuse(
                "foreign_author",
                format!("a change claims author {:?}; this device may only push changes by {expected}", author.unwrap_or_default()),
            )));
        }
        actors.insert(m.actor.to_hex_string());
    }
    for actor in &actors {
        let bound: Option<String> = conn
            .prepare_cached("SELECT device_id FROM actors WHERE actor = ?1")
            .and_then(|mut s| s.query_row([actor], |r| r.get(0)).optional())
            .map_err(sql)?;
        match bound {
            Some(d) if d != device.id.as_str() => {
                return Err(Err(refuse("foreign_actor", format!("actor {actor} belongs to another device"))));
            }
            Some(_) => {}
            None => {
                conn.prepare_cached("INSERT INTO actors (actor, device_id) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![actor, device.id]))
                    .map_err(sql)?;
            }
        }
    }

    // 3. It must be a record of a form its programme published, about a school in scope.
    let school = match &existing {
        Some((_, school, _)) => school.clone(),
        None => peek_school(&doc).map_err(|e| Err(refuse("not_a_record", format!("record {id}: {e}"))))?.to_string(),
    };
    if !scope.contains(&school) {
        return Err(Err(refuse("out_of_scope", format!("school {school} is outside the scope of {}", device.user))));
    }
    let Some(programme) = forms::programme_of_school(conn, &school).map_err(Ok)? else {
        return Err(Err(refuse("unknown_school", format!("school {school} does not exist"))));
    };
    let templates = forms::resolver(conn, &programme);
    // The record takes the document itself: read, judged and saved from there, never copied.
    let record = Record::from_doc(doc, &templates, reader(), Clock::fixed(now)).map_err(|e| match e {
        RecordError::UnknownTemplate { template, version } => Err(refuse(
            "unknown_template",
            format!("form {template} v{version} is not published in programme {programme}"),
        )),
        other => Err(refuse("not_a_record", format!("record {id}: {other}"))),
    })?;
    if record.id() != &id {
        return Err(Err(refuse("wrong_record", format!("the pushed document is record {}, not {id}", record.id()))));
    }
    let doc_school = record.school().map(|s| s.to_string()).unwrap_or_default();
    if !scope.contains(&doc_school) {
        return Err(Err(refuse("out_of_scope", format!("school {doc_school} is outside the scope of {}", device.user))));
    }
    let created = existing.is_none();
    if created {
        // A retired version takes no new records; one made before the retirement still counts.
        let made = new.iter().filter(|m| m.deps.is_empty()).map(|m| m.timestamp).min().unwrap_or(now);
        let template = record.template();
        if let Some(at) = forms::retired_at(conn, &programme, template.id(), template.version()).map_err(Ok)? {
            if made > at {
                return Err(Err(refuse(
                    "retired_form",
                    format!("form {} v{} was retired; new records use the programme's current version", template.id(), template.version()),
                )));
            }
        }
    }
    // 4. The rule book, in the core: every new change judged at the state it was made on.
    let doc = record.doc();
    rules::judge_push(doc, &before, rules::Pusher { user: device.user.as_str(), role: device.role }, &templates)
        .map_err(|r| Err(refuse(r.code, r.reason)))?;

    // 5. Store: the compacted document, the log entry, the projection — in this savepoint.
    let view = record.read();
    let heads = serde_json::to_string(&doc.get_heads().iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .map_err(|e| Ok(AppError::Internal(format!("record heads: {e}"))))?;
    conn.prepare_cached(
        "INSERT INTO records (id, template_id, template_version, school_id, created_by, status, record_date, heads, last_seq, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, record_date = excluded.record_date,
            heads = excluded.heads, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.as_str(),
            view.template,
            view.version,
            school,
            view.created_by,
            view.status.as_str(),
            record.date(),
            heads,
            now
        ])
    })
    .map_err(sql)?;
    let saved = doc.save();
    conn.prepare_cached("INSERT INTO documents (record_id, doc) VALUES (?1, ?2) ON CONFLICT (record_id) DO UPDATE SET doc = excluded.doc")
        .and_then(|mut s| s.execute(params![id.as_str(), saved]))
        .map_err(sql)?;
    // A new record's log entry is its compacted document (the same changes, smaller).
    let bytes = if before.is_empty() { saved } else { doc.save_after(&before) };
    conn.prepare_cached(
        "INSERT INTO changes (record_id, school_id, bytes, change_count, user_id, device_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), school, bytes, new.len() as i64, device.user, device.id, now]))
    .map_err(sql)?;
    conn.prepare_cached("UPDATE records SET last_seq = last_insert_rowid() WHERE id = ?1")
        .and_then(|mut s| s.execute([id.as_str()]))
        .map_err(sql)?;
    projection::project(conn, &record, &view, created).map_err(sql)?;
    Ok(Applied::Stored)
}

/// Applies one record's changes made on the server's own pages (a supervisor's pick or review),
/// under the same rules and into the same log as a tablet's push.
///
/// With `audit` (an action name and a detail), a stored change is also recorded in the audit
/// log, in the same transaction, with the record's status before and after.
pub fn apply_one(conn: &mut Connection, device: &Device, push: &Push, now: i64, audit: Option<(&str, Option<&str>)>) -> AppResult<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let scope = accounts::scope(&tx, device.user.as_str(), device.role, device.programme.as_deref())?;
    let state = |tx: &Connection| -> AppResult<Option<(String, String)>> {
        Ok(tx
            .query_row(
                "SELECT r.status, s.programme_id FROM records r JOIN schools s ON s.id = r.school_id WHERE r.id = ?1",
                [&push.record],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    };
    let before = if audit.is_some() { state(&tx)? } else { None };
    match apply_push(&tx, device, &scope, push, now) {
        Ok(applied @ (Applied::Stored | Applied::Unchanged)) => {
            if let (Some((action, detail)), Applied::Stored) = (audit, applied) {
                let after = state(&tx)?;
                let status = |s: &Option<(String, String)>| s.as_ref().map(|(status, _)| serde_json::json!({ "status": status }));
                crate::audit::append(
                    &tx,
                    now,
                    &crate::audit::Entry {
                        actor: device.user.as_str(),
                        actor_role: Some(device.role.as_str()),
                        action,
                        target: Some(&push.record),
                        programme: after.as_ref().map(|(_, p)| p.as_str()),
                        before: status(&before),
                        after: status(&after),
                        detail,
                        source: None,
                    },
                )?;
            }
            tx.commit()?;
            Ok(())
        }
        Ok(Applied::ResendAll(why)) => Err(AppError::Conflict(why)),
        Err(Err(r)) => Err(AppError::Forbidden(format!("{}: {}", r.code, r.reason))),
        Err(Ok(e)) => Err(e),
    }
}
