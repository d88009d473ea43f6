//! What must hold after any fault run: every edit acknowledged to a device is in the central
//! store; after a final sync every edit is on every device in scope; all copies of every record
//! are identical; devices hold nothing outside their scope; every store passes its integrity
//! check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use shidao_core::record::Answer;
use shidao_core::store::{RecordFilter, Store};
use shidao_core::{Clock, Editor, FieldRef, Record, RecordId};

/// One edit a device made: a unique token spliced into a long-text field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub device: String,
    pub record: RecordId,
    pub field: String,
    pub token: String,
    /// A sync that completed after the edit told the device the server has it.
    pub acked: bool,
}

/// Every edit of a run, in the order made.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub edits: Vec<Edit>,
}

impl Ledger {
    pub fn made(&mut self, device: &str, record: &RecordId, field: &str, token: String) {
        self.edits.push(Edit { device: device.into(), record: record.clone(), field: field.into(), token, acked: false });
    }

    /// A sync of `device` that started after its first `upto` edits completed without refusals.
    pub fn ack(&mut self, device: &str, upto: usize) {
        for e in self.edits.iter_mut().filter(|e| e.device == device).take(upto) {
            e.acked = true;
        }
    }

    pub fn count_of(&self, device: &str) -> usize {
        self.edits.iter().filter(|e| e.device == device).count()
    }

    pub fn acked(&self) -> usize {
        self.edits.iter().filter(|e| e.acked).count()
    }

    pub fn merge(&mut self, other: Ledger) {
        self.edits.extend(other.edits);
    }
}

/// The first long-text field of a template: where fault runs splice their tokens.
pub fn long_text(t: &shidao_core::Template) -> String {
    t.top_fields()
        .find(|f| f.kind() == shidao_core::template::FieldKind::LongText)
        .expect("a long-text field")
        .id()
        .to_string()
}

/// The text of a long-text (or text) answer.
pub fn text_of(r: &Record, field: &str) -> String {
    match r.answer(&FieldRef::top(field)).map(|a| a.answer) {
        Ok(Some(Answer::LongText(t) | Answer::Text(t))) => t,
        _ => String::new(),
    }
}

/// Every record of the central store file, loaded.
pub fn central_records(db: &Path) -> BTreeMap<RecordId, Record> {
    let conn = rusqlite::Connection::open(db).expect("open central store");
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity check");
    assert_eq!(ok, "ok", "central store damaged");
    let mut stmt = conn.prepare("SELECT record_id, doc FROM documents").expect("documents");
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))).expect("query");
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, bytes) = row.expect("row");
        let doc = automerge::Automerge::load(&bytes).unwrap_or_else(|e| panic!("central copy of {id} unreadable: {e}"));
        let rec = Record::from_doc(doc, shidao_server::sync::template_of, shidao_server::sync::reader(), Clock::system())
            .unwrap_or_else(|e| panic!("central copy of {id} is not a record: {e}"));
        out.insert(RecordId::new(id).expect("id"), rec);
    }
    out
}

/// Checks that every acknowledged edit is in the central store; returns how many were checked.
pub fn acknowledged_are_central(db: &Path, ledger: &Ledger) -> usize {
    let central = central_records(db);
    let mut checked = 0;
    for e in ledger.edits.iter().filter(|e| e.acked) {
        let r = central.get(&e.record).unwrap_or_else(|| panic!("record {} of acknowledged edit {} is not central", e.record, e.token));
        assert!(text_of(r, &e.field).contains(&e.token), "acknowledged edit {} of {} lost from the central store", e.token, e.device);
        checked += 1;
    }
    checked
}

/// A device as the checker sees it: its store, who uses it, and the schools in its scope.
pub struct DeviceView<'a> {
    pub name: String,
    pub store: &'a Store,
    pub editor: &'a Editor,
    pub schools: BTreeSet<String>,
}

/// What the convergence check found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Converged {
    pub records: usize,
    pub copies: usize,
    pub edits_checked: usize,
    pub lost: usize,
}

/// After a final sync of every device: every edit (acknowledged or not) is in the central store
/// and in every copy in scope, every copy is identical to the central one (same changes, same
/// answers with the same authors), and no device holds a record outside its scope.
pub fn converged(db: &Path, devices: &[DeviceView<'_>], ledger: &Ledger) -> Converged {
    let central = central_records(db);
    let mut out = Converged { records: central.len(), ..Converged::default() };
    for e in &ledger.edits {
        let r = central.get(&e.record).unwrap_or_else(|| panic!("record {} is not central", e.record));
        assert!(text_of(r, &e.field).contains(&e.token), "edit {} of {} is not central after the final sync", e.token, e.device);
        out.edits_checked += 1;
    }
    for d in devices {
        d.store.check().unwrap_or_else(|e| panic!("store of {} damaged: {e}", d.name));
        let held: BTreeSet<RecordId> =
            d.store.list(&RecordFilter::default()).expect("list").into_iter().map(|s| s.id).collect();
        for (id, c) in &central {
            let school = c.school().map(|s| s.to_string()).unwrap_or_default();
            let in_scope = d.schools.contains(&school);
            if !in_scope {
                assert!(!held.contains(id), "{} holds {id} of {school}, outside its scope", d.name);
                continue;
            }
            let mine = d.store.load(id, d.editor).unwrap_or_else(|e| panic!("{} lacks {id}: {e}", d.name));
            let (a, b): (BTreeSet<_>, BTreeSet<_>) = (mine.heads().into_iter().collect(), c.heads().into_iter().collect());
            assert_eq!(a, b, "{}'s copy of {id} has other changes than the central one", d.name);
            assert_eq!(mine.read().answers, c.read().answers, "{}'s copy of {id} reads differently", d.name);
            out.copies += 1;
        }
        for e in ledger.edits.iter().filter(|e| held.contains(&e.record)) {
            let mine = d.store.load(&e.record, d.editor).expect("load");
            assert!(text_of(&mine, &e.field).contains(&e.token), "edit {} missing on {}", e.token, d.name);
        }
    }
    out
}
