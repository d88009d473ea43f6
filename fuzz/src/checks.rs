//! What each fuzz target checks, shared by the libFuzzer targets (`fuzz/fuzz_targets/`) and the
//! regression test that replays saved inputs in the ordinary test run
//! (`tests/tests/fuzz_regressions.rs`). A check panics when the promise breaks: bad input must
//! be refused with an error, never crash, never store anything, never lose an edit.

use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Author, Automerge, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use shidao_core::expr::{EValue, Env, Expr};
use shidao_core::sync::protocol::{self, Outcome, Push, SyncRequest, SyncResponse, PROTOCOL};
use shidao_core::template::Role;
use shidao_core::{Clock, DeviceId, Editor, NewRecord, Record, RecordId, SchoolId, Template, UserId};
use shidao_server::{accounts, db, sync};

/// Reads an input a byte at a time; past the end it yields zeros, so every input is usable.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.byte() as usize % n }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// Up to `max` bytes as a string (lossy).
    pub fn text(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        let end = (self.pos + n).min(self.data.len());
        let s = String::from_utf8_lossy(self.data.get(self.pos..end).unwrap_or_default()).into_owned();
        self.pos = end.max(self.pos);
        s
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data.get(self.pos..).unwrap_or_default();
        self.pos = self.data.len();
        r
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Sync request and response decoding.

/// Any body, compressed or not, decodes to a message or a clear error; a decoded message encodes
/// and decodes back to itself.
pub fn protocol(data: &[u8]) {
    for gzip in [false, true] {
        if let Ok(req) = protocol::decode::<SyncRequest>(data, gzip) {
            let again: SyncRequest = protocol::decode(&protocol::encode(&req).expect("encode"), true).expect("re-decode request");
            assert_eq!(again, req, "a request changes through encode/decode");
        }
        if let Ok(resp) = protocol::decode::<SyncResponse>(data, gzip) {
            let again: SyncResponse = protocol::decode(&protocol::encode(&resp).expect("encode"), true).expect("re-decode response");
            assert_eq!(again, resp, "a response changes through encode/decode");
        }
    }
}

/// Any body in the binary envelope decodes to a message or a clear error, as sent (deflate) and
/// once compressed here (so that the bytes reach the CBOR reader too); a decoded message encodes
/// and decodes back to itself (a request less its pushes' heads, which the binary envelope leaves
/// out), and a body that inflates beyond the limit is refused as too large.
pub fn envelope(data: &[u8]) {
    use std::io::Write;
    let binary = protocol::Envelope::Binary;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).expect("compress");
    let wrapped = z.finish().expect("compress");
    for body in [data, wrapped.as_slice()] {
        if let Ok(req) = binary.decode::<SyncRequest>(body) {
            let again: SyncRequest = binary.decode(&binary.encode(&req).expect("encode")).expect("re-decode request");
            let mut sent = req.clone();
            sent.push.iter_mut().for_each(|p| p.heads.clear());
            assert_eq!(again, sent, "a request changes through the binary envelope");
        }
        if let Ok(resp) = binary.decode::<SyncResponse>(body) {
            let again: SyncResponse = binary.decode(&binary.encode(&resp).expect("encode")).expect("re-decode response");
            assert_eq!(again, resp, "a response changes through the binary envelope");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Template parsing.

/// Any text is a template or a clear error. A template that compiles can create a record, be
/// filled with every kind of answer it allows, and be read and validated.
pub fn template(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let Ok(t) = Template::from_json("fuzz.json", json) else { return };
    let t = Arc::new(t);
    let editor = editor("u1", "d1", Role::Inspector);
    let Ok(mut r) = Record::create(t, new_record(1), editor, Clock::fixed(1_700_000_000)) else { return };
    let mut rng = shidao_core::sample::Rng::new(data.len() as u64);
    let _ = shidao_core::sample::fill_completely(&mut r, 2, &mut rng);
    let view = r.read();
    let _ = r.validate();
    let bytes = r.save();
    let back = Record::load([bytes.as_slice()], |_, _| Some(r.template().clone()), r.editor().clone(), Clock::fixed(1))
        .expect("a saved record loads again");
    assert_eq!(back.read().answers.len(), view.answers.len(), "answers lost through save/load");
}

// ---------------------------------------------------------------------------------------------
// 3. Expression parsing and evaluation.

struct FuzzEnv(Vec<(String, EValue)>, EValue);

impl Env for FuzzEnv {
    fn lookup(&self, name: &str) -> EValue {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or(EValue::Empty)
    }
    fn current(&self) -> EValue {
        self.1.clone()
    }
    fn today(&self) -> String {
        "2026-03-01".into()
    }
}

fn value(inp: &mut Input) -> EValue {
    match inp.below(6) {
        0 => EValue::Empty,
        1 => EValue::Num(f64::from(inp.byte() as i8) / f64::from(inp.byte().max(1))),
        2 => EValue::Num([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308, 5e-324][inp.below(6)]),
        3 => EValue::Str(inp.text(12)),
        4 => EValue::Bool(inp.byte() & 1 == 1),
        _ => EValue::List((0..inp.below(4)).map(|_| EValue::Num(f64::from(inp.byte()))).collect()),
    }
}

/// Any source parses or fails with a message; a parsed expression evaluates to a value whatever
/// the answers it reads (empty, NaN, infinities, lists) and prints its references.
pub fn expression(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(src) = std::str::from_utf8(&data[..split]) else { return };
    let mut inp = Input::new(data.get(split + 1..).unwrap_or_default());
    let Ok(e) = Expr::parse(src) else { return };
    let names: Vec<String> = e.refs().iter().map(|s| s.to_string()).collect();
    let env = FuzzEnv(names.into_iter().map(|n| (n, value(&mut inp))).collect(), value(&mut inp));
    let _ = e.eval(&env);
    let _ = e.eval(&env).truthy();
}

// ---------------------------------------------------------------------------------------------
// 4. Ingestion of document and change bytes, on a device and on the server.

const TEMPLATES: [&str; 3] = ["classroom-observation", "inspection-visit", "guidance-log"];
const T0: i64 = 1_767_225_600; // 2026-01-01

fn editor(user: &str, device: &str, role: Role) -> Editor {
    Editor { user: UserId::new(user).expect("user id"), device: DeviceId::new(device).expect("device id"), role }
}

/// The editor of a relay device's changes.
fn device_editor(device: &accounts::Device, role: Role) -> Editor {
    Editor { user: device.user.clone(), device: device.id.clone(), role }
}

fn new_record(n: u8) -> NewRecord {
    NewRecord {
        id: RecordId::new(format!("00000000-0000-4000-8000-0000000000{n:02x}")).expect("record id"),
        school: SchoolId::new("s-a").expect("school id"),
    }
}

/// A central store with one school, an inspector's and a supervisor's device, and one record
/// the inspector pushed (left a draft, submitted, or approved by the supervisor).
struct Central {
    conn: rusqlite::Connection,
    inspector: accounts::Device,
    supervisor: accounts::Device,
    record: Record,
}

fn device_of(conn: &rusqlite::Connection, user: &str) -> accounts::Device {
    let code = accounts::new_enrol_code(conn, user, T0).expect("code");
    let (_, token, _) = accounts::enrol(conn, &code, "平板", T0).expect("enrol");
    accounts::authenticate(conn, &token, T0).expect("device")
}

fn push(conn: &mut rusqlite::Connection, device: &accounts::Device, record: &str, changes: Vec<u8>) -> SyncResponse {
    let req = SyncRequest {
        protocol: PROTOCOL,
        request_id: format!("req-{}", changes.len()),
        cursor: 0,
        scope: None,
        reference: None,
        push: vec![Push { record: record.to_string(), changes, heads: Vec::new() }],
        max_pull_bytes: None,
        want_forms: vec![],
        set_aside: vec![],
        app: None,
    };
    match sync::handle(conn, device, req, &Clock::fixed(T0 + 60)) {
        Ok(resp) => resp,
        Err(e) => panic!("a push of bad bytes failed the whole request instead of being refused: {e}"),
    }
}

fn stored(conn: &rusqlite::Connection, record: &str) -> Option<Vec<u8>> {
    conn.query_row("SELECT doc FROM documents WHERE record_id = ?1", [record], |r| r.get(0)).ok()
}

fn changes_logged(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).expect("count changes")
}

/// A central store in a given state, built once per template and state and saved to a file;
/// each input starts from a fresh copy of that file (building it anew costs a hundred times
/// more than copying it).
struct Base {
    file: std::path::PathBuf,
    inspector: accounts::Device,
    supervisor: accounts::Device,
    record: Vec<u8>,
    role: Role,
}

fn base(template: &'static str, state: u8) -> Arc<Base> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BASES: OnceLock<Mutex<HashMap<(&'static str, u8), Arc<Base>>>> = OnceLock::new();
    let mut bases = BASES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    bases.entry((template, state)).or_insert_with(|| Arc::new(Base::build(template, state))).clone()
}

/// Where the stores of the ingest check live: in memory-backed `/dev/shm` where there is one
/// (every push syncs to disk), else the temporary folder.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = root.join(format!("shidao-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Removes this process's scratch stores.
pub fn cleanup() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

impl Base {
    fn build(template: &str, state: u8) -> Base {
        let file = scratch_dir().join(format!("base-{template}-{state}.db"));
        let _ = std::fs::remove_file(&file);
        let mut conn = db::open(&file).expect("central store");
        accounts::add_programme(&conn, "p", "项目", None).expect("programme");
        accounts::add_school(&conn, "p", "s-a", "甲校", "优质", "").expect("school");
        accounts::add_school(&conn, "p", "s-b", "乙校", "潜质", "").expect("school");
        accounts::add_user(&conn, "insp", "视导员", Role::Inspector, Some("p"), &["s-a".into()], None, 0).expect("user");
        accounts::add_user(&conn, "exp", "专家", Role::Expert, Some("p"), &["s-a".into()], None, 0).expect("user");
        accounts::add_user(&conn, "sup", "督导", Role::Supervisor, Some("p"), &[], None, 0).expect("user");
        // The record's author: an expert keeps guidance logs, an inspector the rest.
        let role = if template == "guidance-log" { Role::Expert } else { Role::Inspector };
        let inspector = device_of(&conn, if role == Role::Expert { "exp" } else { "insp" });
        let supervisor = device_of(&conn, "sup");
        let t = shidao_core::builtin(template).expect("template");
        let ed = device_editor(&inspector, role);
        let mut record = Record::create(t, new_record(1), ed, Clock::fixed(T0)).expect("create");
        let mut rng = shidao_core::sample::Rng::new(u64::from(state));
        shidao_core::sample::fill_completely(&mut record, 1, &mut rng).expect("fill");
        if !state.is_multiple_of(3) {
            record.submit().expect("submit");
        }
        let id = record.id().to_string();
        let resp = push(&mut conn, &inspector, &id, record.save());
        assert_eq!(resp.results[0].outcome, Outcome::Accepted, "{:?}", resp.results[0]);
        if state % 3 == 2 {
            let mut sup = record.fork(device_editor(&supervisor, Role::Supervisor));
            let heads = sup.heads();
            sup.approve(None).expect("approve");
            let resp = push(&mut conn, &supervisor, &id, sup.save_after(&heads));
            assert_eq!(resp.results[0].outcome, Outcome::Accepted, "{:?}", resp.results[0]);
            record = sup.fork(record.editor().clone());
        }
        drop(conn); // the last connection checkpoints the WAL into the file
        Base { file, inspector, supervisor, record: record.save(), role }
    }
}

impl Central {
    fn new(template: &'static str, state: u8) -> Central {
        let b = base(template, state % 6);
        let file = scratch_dir().join(format!("input-{:?}.db", std::thread::current().id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        std::fs::copy(&b.file, &file).expect("copy the base store");
        let conn = db::open(&file).expect("central store");
        let ed = device_editor(&b.inspector, b.role);
        let record = Record::load([b.record.as_slice()], sync::template_of, ed, Clock::fixed(T0)).expect("base record");
        Central { conn, inspector: b.inspector.clone(), supervisor: b.supervisor.clone(), record }
    }

    /// Pushes `changes` for `record` from `device` and checks the result: refused changes store
    /// nothing; accepted ones leave a record every app can load, of the same school and
    /// template, with every earlier change kept and every new change by the pushing device.
    fn push_and_check(&mut self, use_supervisor: bool, record: &str, changes: Vec<u8>) {
        let device = if use_supervisor { self.supervisor.clone() } else { self.inspector.clone() };
        let before = stored(&self.conn, record);
        let logged = changes_logged(&self.conn);
        let resp = push(&mut self.conn, &device, record, changes);
        let after = stored(&self.conn, record);
        let result = &resp.results[0];
        if result.outcome != Outcome::Accepted {
            assert_eq!(before, after, "a refused push ({:?}) changed the stored record", result.code);
            assert_eq!(logged, changes_logged(&self.conn), "a refused push added to the change log");
            return;
        }
        let Some(bytes) = after else {
            // Accepted with nothing new to store (a replay) is only possible for a record that exists.
            assert!(before.is_none() && changes_logged(&self.conn) == logged, "accepted without a stored document");
            return;
        };
        let doc = Automerge::load(&bytes).expect("the stored document loads");
        let rec = Record::from_doc(doc.clone(), sync::template_of, sync::reader(), Clock::fixed(T0))
            .expect("an accepted record is a record");
        let _ = rec.read();
        let _ = rec.validate();
        assert_eq!(rec.id().as_str(), record, "the stored record has another id");
        if let Some(before) = before {
            let old = Automerge::load(&before).expect("the earlier document loads");
            let old_heads = old.get_heads();
            assert!(doc.get_changes(&[]).len() >= old.get_changes(&[]).len(), "changes were lost");
            for h in &old_heads {
                assert!(doc.get_change_by_hash(h).is_some(), "an earlier change is missing");
            }
            let new_changes = doc.get_changes_meta(&old_heads);
            if new_changes.is_empty() {
                return; // a replay of what the server holds: accepted, nothing changed
            }
            let old_rec = Record::from_doc(old, sync::template_of, sync::reader(), Clock::fixed(T0)).expect("old");
            assert_eq!(old_rec.school(), rec.school(), "the school of a record changed");
            assert_eq!(old_rec.template().id(), rec.template().id(), "the template of a record changed");
            assert_ne!(old_rec.status(), shidao_core::Status::Approved, "a sealed record changed");
            let expected = format!("{}/{}", device.user, device.id);
            for m in new_changes {
                let author = m.author.as_ref().map(|a| String::from_utf8_lossy(a.as_bytes()).to_string());
                assert_eq!(author.as_deref(), Some(expected.as_str()), "a change by someone else was accepted");
            }
        } else {
            assert!(rec.school().is_some_and(|s| s.as_str() == "s-a"), "a new record outside the device's schools was accepted");
        }
    }
}

/// The first bytes choose the template, the record's state and a mode: raw bytes (loaded as a
/// document, applied as changes on a device, pushed to the server as a new record and onto an
/// existing one), or a sequence of Automerge operations turned into real changes, as a crafted
/// client would, and pushed.
pub fn ingest(data: &[u8]) {
    let mut inp = Input::new(data);
    let template = TEMPLATES[inp.below(TEMPLATES.len())];
    let state = inp.byte();
    let mode = inp.byte();
    let mut central = Central::new(template, state);
    let id = central.record.id().to_string();
    if mode & 1 == 0 {
        let bytes = inp.rest().to_vec();
        // On a device: a damaged document or change is an error, never a crash.
        let lookup = |t: &str, v: u32| sync::template_of(t, v);
        if let Ok(r) = Record::load([bytes.as_slice()], lookup, central.record.editor().clone(), Clock::fixed(T0)) {
            let _ = r.read();
            let _ = r.validate();
        }
        let mut copy = central.record.fork(central.record.editor().clone());
        if copy.apply_changes(&bytes).is_ok() {
            let _ = copy.read();
            let _ = copy.validate();
        }
        // On the server: as a new record, and onto the existing one.
        central.push_and_check(mode & 2 == 2, "00000000-0000-4000-8000-0000000000ff", bytes.clone());
        central.push_and_check(mode & 2 == 2, &id, bytes);
    } else {
        let use_supervisor = mode & 2 == 2;
        let device = if use_supervisor { &central.supervisor } else { &central.inspector };
        let mut doc = central.record.doc().clone();
        let heads = doc.get_heads();
        craft(&mut doc, &mut inp, &format!("{}/{}", device.user, device.id));
        let changes = doc.save_after(&heads);
        let target = if mode & 4 == 4 { "00000000-0000-4000-8000-0000000000fe".to_string() } else { id };
        let changes = if target == central.record.id().as_str() { changes } else { doc.save() };
        central.push_and_check(use_supervisor, &target, changes);
    }
}

const KEYS: &[&str] = &[
    "meta", "status", "review", "answers", "files", "touched", "rows", "order", "id", "school", "template", "version",
    "created_by", "comment", "by", "at", "value", "signer", "image", "hash", "v", "text",
];

/// Applies operations read from the input to `doc` as one or more commits, each with an author
/// chosen from the input (the pushing device's, another's, or none).
fn craft(doc: &mut Automerge, inp: &mut Input, own: &str) {
    let mut objs: Vec<ObjId> = vec![ROOT];
    for key in ["meta", "answers", "files", "touched"] {
        if let Ok(Some((_, o))) = doc.get(ROOT, key) {
            objs.push(o);
        }
    }
    let mut commits = 0;
    while !inp.is_empty() && commits < 4 {
        commits += 1;
        let author = match inp.below(4) {
            0 | 1 => Some(own.to_string()),
            2 => Some("insp/someone-else".to_string()),
            _ => None,
        };
        doc.set_author(author.as_deref().map(|a| Author::from(a.as_bytes().to_vec())));
        let mut tx = doc.transaction();
        for _ in 0..inp.below(12) + 1 {
            let obj = objs[inp.below(objs.len())].clone();
            let key = match inp.below(3) {
                0 => inp.text(8),
                _ => KEYS[inp.below(KEYS.len())].to_string(),
            };
            let is_list = matches!(tx.object_type(&obj), Ok(ObjType::List | ObjType::Text));
            let len = tx.length(&obj);
            let scalar = match inp.below(6) {
                0 => ScalarValue::Str(inp.text(10).into()),
                1 => ScalarValue::Int(i64::from(inp.byte() as i8)),
                2 => ScalarValue::Counter((i64::from(inp.byte())).into()),
                3 => ScalarValue::Boolean(inp.byte() & 1 == 1),
                4 => ScalarValue::Timestamp(i64::from(inp.byte()) * 1_000_000),
                _ => ScalarValue::Str(["approved", "submitted", "returned", "draft", "s-b", "insp", "sup"][inp.below(7)].into()),
            };
            let res = match inp.below(6) {
                0 | 1 if !is_list => tx.put(&obj, key, scalar).map(|_| ()),
                0 | 1 => tx.insert(&obj, inp.below(len + 1), scalar).map(|_| ()),
                2 if !is_list => tx.delete(&obj, key),
                2 if len > 0 => tx.delete(&obj, inp.below(len)),
                3 => {
                    let ty = [ObjType::Map, ObjType::List, ObjType::Text][inp.below(3)];
                    let made = if is_list { tx.insert_object(&obj, inp.below(len + 1), ty) } else { tx.put_object(&obj, key, ty) };
                    made.map(|o| objs.push(o))
                }
                4 if !is_list => tx.increment(&obj, key, i64::from(inp.byte() as i8)),
                5 if matches!(tx.object_type(&obj), Ok(ObjType::Text)) => {
                    let pos = inp.below(len + 1);
                    let del = inp.below(len - pos + 1) as isize;
                    tx.splice_text(&obj, pos, del, &inp.text(6))
                }
                _ => Ok(()),
            };
            let _ = res;
        }
        tx.commit_with(CommitOptions::default().with_time(T0 + i64::from(inp.byte())));
    }
}
