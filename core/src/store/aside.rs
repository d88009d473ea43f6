//! Setting refused changes aside: what a device does when the relay refuses a record by its
//! rules, so that a refusal never traps the record and nothing anyone wrote is lost.
//!
//! The refused changes are this device's changes the relay does not hold. They are kept whole in
//! `set_aside` (their Automerge bytes, the fields they touched, the review steps they took, the
//! refusal), the record is put back to the relay's state (what it acknowledged, plus what it
//! sent), and every answer they changed that the rules still allow on that state is written
//! again as a new change, which the next round pushes. Review steps (submit, approve, return)
//! are never re-taken for the person: they were acts on a state that is gone.
//!
//! What must stay true:
//! - Nothing is deleted: every refused change is in `set_aside` before the record is replaced,
//!   in the same transaction.
//! - Termination: when the refused changes are exactly the ones a set-aside wrote again, they
//!   are set aside without being written again, so two rounds at most settle a record.
//! - A copy of the record loaded before the set-aside cannot be saved (its generation is old).

use std::collections::{BTreeSet, HashSet};

use automerge::{Automerge, ChangeHash, PatchAction, Prop};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{decode_heads, encode_heads, Result, Store, StoreError};
use crate::ids::{RecordId, RowId};
use crate::record::{Editor, FieldRef, Record, RecordError, RecordView};
use crate::template::FieldKind;

const REAPPLIED: &str = "sync.reapplied.";

fn hex(heads: &[ChangeHash]) -> String {
    let mut h: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    h.sort();
    h.join(",")
}

/// Refused changes kept on the device, with why and what they touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub id: i64,
    pub record: String,
    /// When it was set aside (store clock, seconds).
    pub at: i64,
    /// The relay's refusal code and reason.
    pub code: String,
    pub reason: String,
    /// The answers the refused changes touched (`field` or `field@row`).
    pub fields: Vec<String>,
    /// The review steps they took (`submit`, `return`, `approve`).
    pub acts: Vec<String>,
    /// The answers written again on the relay's state as new changes (they go with the next
    /// round); the rest stays set aside only.
    pub reapplied: Vec<String>,
}

impl SetAside {
    /// The touched answers that were not written again: what the person has to look at.
    pub fn kept_aside(&self) -> Vec<String> {
        self.fields.iter().filter(|f| !self.reapplied.contains(f)).cloned().collect()
    }
}

/// The columns [`entry_of`] reads, in its order.
const ENTRY_COLUMNS: &str = "id, record_id, at, code, reason, fields, acts, reapplied";

/// A `set_aside` row (selected as [`ENTRY_COLUMNS`]) as an entry.
fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<SetAside> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(SetAside {
        id: r.get(0)?,
        record: r.get(1)?,
        at: r.get(2)?,
        code: r.get(3)?,
        reason: r.get(4)?,
        fields: list(r.get(5)?),
        acts: list(r.get(6)?),
        reapplied: list(r.get(7)?),
    })
}

/// What the refused changes did, read from the patches between the relay's state and the copy.
fn touched(doc: &Automerge, base: &[ChangeHash]) -> (Vec<FieldRef>, Vec<String>) {
    let mut fields = BTreeSet::new();
    let mut acts = Vec::new();
    for patch in doc.diff(base, &doc.get_heads()) {
        let mut keys: Vec<String> =
            patch.path.iter().filter_map(|(_, p)| if let Prop::Map(k) = p { Some(k.clone()) } else { None }).collect();
        match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => keys.push(key.clone()),
            PatchAction::Increment { prop: Prop::Map(k), .. } => keys.push(k.clone()),
            _ => {}
        }
        match keys.as_slice() {
            [status] if status == "status" && patch.path.is_empty() => {
                if let PatchAction::PutMap { value, .. } = &patch.action {
                    let act = match value.0.as_str() {
                        Some("submitted") => "submit",
                        Some("returned") => "return",
                        Some("approved") => "approve",
                        other => other.unwrap_or("status"),
                    };
                    acts.push(act.to_string());
                }
            }
            [answers, _group, rows, row, sub, ..] if answers == "answers" && rows == "rows" => {
                if let Ok(row) = RowId::new(row.clone()) {
                    fields.insert(FieldRef::in_row(sub, &row));
                }
            }
            [answers, field, ..] if answers == "answers" => {
                fields.insert(FieldRef::top(field));
            }
            _ => {}
        }
    }
    acts.dedup();
    (fields.into_iter().collect(), acts)
}

/// Writes the refused copy's answer for `at` onto `base` when it differs and the rules allow it.
fn reapply_one(base: &mut Record, refused: &Record, at: &FieldRef) -> std::result::Result<bool, RecordError> {
    let field = base.template().field(&at.field).cloned().ok_or_else(|| RecordError::UnknownField(at.field.clone()))?;
    if field.kind() == FieldKind::Repeat {
        // The rows: those added come back with their ids, those removed go again.
        let want = refused.row_ids(&at.field)?;
        let have = base.row_ids(&at.field)?;
        let mut changed = false;
        for row in &want {
            if !have.contains(row) {
                base.add_row_as(&at.field, None, row.clone())?;
                changed = true;
            }
        }
        for row in &have {
            if !want.contains(row) {
                base.remove_row(&at.field, row)?;
                changed = true;
            }
        }
        return Ok(changed);
    }
    if let Some(row) = &at.row {
        if let Some(group) = base.template().fields.iter().find(|g| base.template().sub_fields(g.id()).any(|s| s.id() == at.field)) {
            let group = group.id().to_string();
            if !base.row_ids(&group)?.contains(row) {
                if !refused.row_ids(&group)?.contains(row) {
                    return Ok(false);
                }
                base.add_row_as(&group, None, row.clone())?;
            }
        }
    }
    let want = refused.answer(at)?.answer;
    let have = base.answer(at)?.answer;
    if want == have {
        return Ok(false);
    }
    match want {
        Some(a) => base.set_answer(at, a)?,
        None => base.clear_answer(at)?,
    }
    Ok(true)
}

impl Store {
    /// Sets aside this device's changes of a record that the relay refused by its rules, puts
    /// the record back to the relay's state and writes again the answers still allowed there.
    /// Returns `None` when there was nothing to set aside (the record is left as it is).
    pub fn set_aside(&self, id: &RecordId, code: &str, reason: &str, editor: &Editor) -> Result<Option<SetAside>> {
        let raw = self.raw(id)?;
        let mut doc = Automerge::load(&raw.snapshot).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        let chunks = raw.chunks.concat();
        if !chunks.is_empty() {
            doc.load_incremental(&chunks).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        }
        let synced: Option<Vec<u8>> =
            self.conn.query_row("SELECT synced_heads FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
        let synced = synced.map(|b| decode_heads(&b));
        let all = doc.get_changes_meta(&[]);
        // What the relay holds: the history it acknowledged (for a record it never took, the
        // creation), and every change by someone else (those came from the relay).
        let mut held: HashSet<ChangeHash> = HashSet::new();
        let mut stack: Vec<ChangeHash> = match &synced {
            Some(h) => h.clone(),
            None => all.iter().filter(|m| m.deps.is_empty()).map(|m| m.hash).collect(),
        };
        while let Some(h) = stack.pop() {
            if held.insert(h) {
                if let Some(m) = doc.get_change_meta_by_hash(&h) {
                    stack.extend(m.deps.iter().copied());
                }
            }
        }
        let mine = editor.author();
        let mut refused: HashSet<ChangeHash> = HashSet::new();
        loop {
            let before = refused.len();
            for m in &all {
                if held.contains(&m.hash) || refused.contains(&m.hash) {
                    continue;
                }
                let own = m.author.as_ref().is_some_and(|a| a.as_bytes() == mine.as_bytes());
                if own || m.deps.iter().any(|d| refused.contains(d)) {
                    refused.insert(m.hash);
                }
            }
            if refused.len() == before {
                break;
            }
        }
        if refused.is_empty() {
            return Ok(None);
        }
        let kept: Vec<ChangeHash> = all.iter().map(|m| m.hash).filter(|h| !refused.contains(h)).collect();
        let deps_of_kept: HashSet<ChangeHash> =
            all.iter().filter(|m| !refused.contains(&m.hash)).flat_map(|m| m.deps.iter().copied()).collect();
        let base_heads: Vec<ChangeHash> = kept.iter().copied().filter(|h| !deps_of_kept.contains(h)).collect();
        let bytes = doc.save_after(&base_heads);
        let (fields, acts) = touched(&doc, &base_heads);

        let resolver = self.resolver();
        let clock = self.opts.clock.clone();
        let full = Record::from_doc(doc.clone(), &resolver, editor.clone(), clock.clone())?;
        let base_doc = doc.fork_at(&base_heads).map_err(RecordError::from)?;
        let mut base = Record::from_doc(base_doc, &resolver, editor.clone(), clock)?;
        // Written again only once: refused changes that a set-aside wrote are not rewritten.
        let reapplied_before = self.meta(&format!("{REAPPLIED}{id}"))?;
        let current = hex(&doc.get_heads());
        let again = reapplied_before.as_deref() != Some(current.as_str());
        let mut reapplied = Vec::new();
        if again {
            for at in &fields {
                if let Ok(true) = reapply_one(&mut base, &full, at) {
                    reapplied.push(at.path());
                }
            }
        }
                let entry = SetAside {
            id: 0,
            record: id.to_string(),
            at: self.opts.clock.now(),
            code: code.to_string(),
            reason: reason.to_string(),
            fields: fields.iter().map(FieldRef::path).collect(),
            acts,
            reapplied,
        };

        // One transaction: the set-aside row, then the record replaced by the new generation.
        let tx = self.conn.unchecked_transaction()?;
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO set_aside (record_id, at, code, reason, fields, acts, reapplied, base_heads, heads, changes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id.as_str(),
                entry.at,
                code,
                reason,
                json(&entry.fields),
                json(&entry.acts),
                json(&entry.reapplied),
                encode_heads(&base_heads),
                encode_heads(&doc.get_heads()),
                bytes
            ],
        )?;
        let entry = SetAside { id: tx.last_insert_rowid(), ..entry };
        let heads = base.heads();
        // The relay holds the base when it acknowledged part of the record; a record it never
        // took stays unsent, and waits for the next edit when nothing was written again.
        let relay_has_base = synced.is_some();
        let dirty = !relay_has_base || heads != base_heads;
        tx.execute(
            "UPDATE records SET snapshot = ?2, chunk_seq = chunk_seq + 1, generation = generation + 1, status = ?3,
                record_date = ?4, heads = ?5, dirty = ?6, synced_heads = ?7
             WHERE id = ?1",
            params![
                id.as_str(),
                base.save(),
                base.status().as_str(),
                base.date(),
                encode_heads(&heads),
                dirty,
                relay_has_base.then(|| encode_heads(&base_heads)),
            ],
        )?;
        tx.execute("DELETE FROM record_chunks WHERE record_id = ?1", [id.as_str()])?;
        tx.commit()?;
        if entry.reapplied.is_empty() {
            self.delete_meta(&format!("{REAPPLIED}{id}"))?;
        } else {
            self.set_meta(&format!("{REAPPLIED}{id}"), &hex(&heads))?;
        }
        Ok(Some(entry))
    }

    /// Entries the relay has not yet acknowledged a report of, oldest first, with their refused
    /// changes (left out of a report beyond `max_change_bytes` in all, so a report stays small).
    pub fn unreported_set_asides(&self, max_change_bytes: usize) -> Result<Vec<(i64, crate::sync::protocol::SetAsideReport)>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS}, changes FROM set_aside WHERE reported_at IS NULL ORDER BY id LIMIT 100"))?;
        let rows = stmt.query_map([], |r| Ok((entry_of(r)?, r.get::<_, Vec<u8>>(8)?)))?;
        let mut budget = max_change_bytes;
        let mut out = Vec::new();
        for row in rows {
            let (e, mut changes) = row?;
            if changes.len() > budget {
                changes.clear();
            }
            budget -= changes.len();
            let report = crate::sync::protocol::SetAsideReport {
                record: e.record,
                at: e.at,
                code: e.code,
                reason: e.reason,
                fields: e.fields,
                acts: e.acts,
                reapplied: e.reapplied,
                changes,
            };
            out.push((e.id, report));
        }
        Ok(out)
    }

    /// Notes that the relay acknowledged the reports of these entries.
    pub fn mark_set_asides_reported(&self, ids: &[i64]) -> Result<()> {
        let now = self.opts.clock.now();
        let mut stmt = self.conn.prepare_cached("UPDATE set_aside SET reported_at = ?2 WHERE id = ?1")?;
        for id in ids {
            stmt.execute(rusqlite::params![id, now])?;
        }
        Ok(())
    }

    /// The changes set aside, newest first: of one record, or of every record.
    pub fn set_asides(&self, record: Option<&RecordId>) -> Result<Vec<SetAside>> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM set_aside WHERE ?1 IS NULL OR record_id = ?1 ORDER BY id DESC"))?;
        let rows = stmt.query_map([record.map(RecordId::as_str)], entry_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The record as the refused copy had it (the relay's state at the time plus the refused
    /// changes), to show or export what was set aside. Read only.
    pub fn set_aside_view(&self, entry: i64, editor: &Editor) -> Result<RecordView> {
        let (record, heads, changes): (String, Vec<u8>, Vec<u8>) = self
            .conn
            .query_row("SELECT record_id, heads, changes FROM set_aside WHERE id = ?1", [entry], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
            .ok_or_else(|| StoreError::Sql(rusqlite::Error::QueryReturnedNoRows))?;
        let id = RecordId::new(record).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        let mut doc = Automerge::load(&self.record_bytes(&id)?).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        doc.load_incremental(&changes).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        // The refused copy as it was: the relay's state then, and the changes set aside.
        let doc = doc.fork_at(&decode_heads(&heads)).map_err(RecordError::from)?;
        let record = Record::from_doc(doc, self.resolver(), editor.clone(), self.opts.clock.clone())?;
        Ok(record.read())
    }
}
