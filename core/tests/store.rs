//! The device store: durable incremental saves, listing, compaction, merging, attachments, and a
//! damaged file moved aside and salvaged.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::{content_hash, RecordFilter, Store, StoreError, StoreOptions, MAX_ATTACHMENT};
use shidao_core::template::FieldKind;
use shidao_core::{DeviceId, Editor, FieldRef, RecordId, Role, SchoolId, Status, UserId};

fn editor(user: &str, role: Role) -> Editor {
    Editor { user: UserId::new(user).unwrap(), device: DeviceId::new(format!("dev-{user}")).unwrap(), role }
}

fn school(s: &str) -> SchoolId {
    SchoolId::new(s).unwrap()
}

#[test]
fn saves_are_incremental_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let who = editor("insp", Role::Inspector);
    let id;
    let expected;
    {
        let store = Store::open(&path).unwrap();
        let mut r = store.create("inspection-visit", &school("s1"), &who).unwrap();
        id = r.id().clone();
        store.edit(&mut r, |r| fill_completely(r, 2, &mut Rng::new(5))).unwrap();
        let f = r.template().top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();
        for i in 0..10 {
            store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&f), 0, 0, &format!("第{i}条。"))).unwrap();
        }
        expected = r.read();
    }
    let store = Store::open(&path).unwrap();
    let r = store.load(&id, &who).unwrap();
    assert_eq!(r.read(), expected);
}

#[test]
fn a_refused_edit_writes_nothing() {
    let store = Store::open_in_memory().unwrap();
    let who = editor("insp", Role::Inspector);
    let mut r = store.create("inspection-visit", &school("s1"), &who).unwrap();
    let before = store.record_bytes(r.id()).unwrap();
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::Date).unwrap().id().to_string();
    let err = store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&f), Answer::Date("yesterday".into()))).unwrap_err();
    assert!(err.to_string().contains(&f), "{err}");
    assert_eq!(store.record_bytes(r.id()).unwrap(), before);
}

#[test]
fn listing_by_school_template_status_author_and_date() {
    let store = Store::open_in_memory().unwrap();
    let a = editor("a", Role::Inspector);
    let b = editor("b", Role::Expert);
    let mut ids = Vec::new();
    for i in 0..6 {
        let s = school(if i % 2 == 0 { "s-even" } else { "s-odd" });
        let mut r = store.create("classroom-observation", &s, if i < 3 { &a } else { &b }).unwrap();
        store.edit(&mut r, |r| r.set_answer(&FieldRef::top("lesson_date"), Answer::Date(format!("2026-10-0{}", i + 1)))).unwrap();
        ids.push(r.id().clone());
    }
    let g = store.create("guidance-log", &school("s-even"), &b).unwrap();
    let by = |f: RecordFilter| store.list(&f).unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>();

    assert_eq!(by(RecordFilter { school: Some(school("s-even")), ..Default::default() }).len(), 4);
    assert_eq!(by(RecordFilter { template: Some("guidance-log".into()), ..Default::default() }), vec![g.id().clone()]);
    assert_eq!(by(RecordFilter { author: Some("a".into()), ..Default::default() }).len(), 3);
    let dated = by(RecordFilter { date_from: Some("2026-10-02".into()), date_to: Some("2026-10-03".into()), ..Default::default() });
    assert_eq!(dated.len(), 2);
    assert!(dated.contains(&ids[1]) && dated.contains(&ids[2]));
    assert_eq!(by(RecordFilter { status: Some(Status::Submitted), ..Default::default() }).len(), 0);
    // A second author on a record makes it appear under them too.
    let mut r = store.load(&ids[0], &b).unwrap();
    store.edit(&mut r, |r| r.set_answer(&FieldRef::top("lesson_date"), Answer::Date("2026-10-09".into()))).unwrap();
    assert_eq!(by(RecordFilter { author: Some("b".into()), ..Default::default() }).len(), 5);
}

#[test]
fn compaction_folds_chunks_without_losing_another_copys_edits() {
    let opts = StoreOptions { compact_after: 4, ..Default::default() };
    let store = Store::open_in_memory_with(opts).unwrap();
    let a = editor("a", Role::Inspector);
    let mut one = store.create("inspection-visit", &school("s"), &a).unwrap();
    let mut two = store.load(one.id(), &a).unwrap();
    let f = one.template().top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();
    for i in 0..10 {
        store.edit(&mut one, |r| r.splice_text(&FieldRef::top(&f), 0, 0, &format!("a{i} "))).unwrap();
        store.edit(&mut two, |r| r.splice_text(&FieldRef::top(&f), 0, 0, &format!("b{i} "))).unwrap();
    }
    let back = store.load(one.id(), &a).unwrap();
    let Some(Answer::LongText(text)) = back.answer(&FieldRef::top(&f)).unwrap().answer else { panic!() };
    for i in 0..10 {
        assert!(text.contains(&format!("a{i} ")) && text.contains(&format!("b{i} ")), "lost an edit: {text}");
    }
}

#[test]
fn merging_remote_bytes_and_refusing_garbage() {
    let phone = Store::open_in_memory().unwrap();
    let tablet = Store::open_in_memory().unwrap();
    let a = editor("a", Role::Inspector);
    let b = editor("b", Role::Inspector);
    let mut r = phone.create("inspection-visit", &school("s"), &a).unwrap();
    phone.edit(&mut r, |r| fill_completely(r, 1, &mut Rng::new(9))).unwrap();
    let id = tablet.merge_remote(&phone.record_bytes(r.id()).unwrap(), &b).unwrap();
    assert_eq!(&id, r.id());
    assert_eq!(tablet.load(&id, &b).unwrap().read(), phone.load(&id, &a).unwrap().read());
    // Merging the same bytes again changes nothing.
    let before = tablet.record_bytes(&id).unwrap();
    tablet.merge_remote(&phone.record_bytes(r.id()).unwrap(), &b).unwrap();
    assert_eq!(tablet.record_bytes(&id).unwrap(), before);
    // Garbage is refused and changes nothing.
    assert!(tablet.merge_remote(b"\x85\x6f\x4a\x83garbage", &b).is_err());
    assert_eq!(tablet.count().unwrap(), 1);
}

#[test]
fn attachments_are_kept_once_by_hash_and_bounded() {
    let store = Store::open_in_memory().unwrap();
    let photo = b"\xff\xd8\xff jpeg bytes".to_vec();
    let h1 = store.put_attachment(&photo, "image/jpeg").unwrap();
    let h2 = store.put_attachment(&photo, "image/jpeg").unwrap();
    assert_eq!(h1, h2);
    assert_eq!(h1, content_hash(&photo));
    assert_eq!(store.attachment(&h1).unwrap(), (photo, "image/jpeg".to_string()));
    assert!(matches!(store.attachment(&"0".repeat(64)), Err(StoreError::AttachmentNotFound(_))));
    let big = vec![0u8; MAX_ATTACHMENT + 1];
    assert!(matches!(store.put_attachment(&big, "image/jpeg"), Err(StoreError::AttachmentTooLarge { .. })));
}

#[test]
fn a_damaged_store_is_moved_aside_and_its_records_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let who = editor("exp", Role::Expert);
    let mut ids = Vec::new();
    {
        let store = Store::open(&path).unwrap();
        for _ in 0..20 {
            let mut r = store.create("guidance-log", &school("s"), &who).unwrap();
            store.edit(&mut r, |r| fill_completely(r, 1, &mut Rng::new(2))).unwrap();
            ids.push(r.id().clone());
        }
    }
    // Damage the file: overwrite a stretch in the middle of the data pages.
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let err = Store::open(&path).unwrap_err();
    let StoreError::Corrupt { moved_to, .. } = &err else { panic!("expected Corrupt, got {err}") };
    assert!(err.to_string().contains("moved aside"), "{err}");
    assert!(moved_to.exists(), "the damaged file is kept");
    assert!(!path.exists());

    // Opening again starts an empty store; salvage brings back whatever can be read.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    let report = store.salvage(moved_to, &who).unwrap();
    assert!(!report.recovered.is_empty(), "nothing salvaged: {report:?}");
    assert!(report.recovered.len() + report.unreadable.len() <= ids.len());
    for id in &report.recovered {
        assert!(ids.contains(id), "salvaged a record that was never there: {id}");
        assert!(store.load(id, &who).unwrap().validate().is_clean(), "salvaged record {id} is incomplete");
    }
}

#[test]
fn not_a_database_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    std::fs::write(&path, b"this is not sqlite at all, but it is somebody's file").unwrap();
    let err = Store::open(&path).unwrap_err();
    let StoreError::Corrupt { moved_to, .. } = err else { panic!("expected Corrupt") };
    assert_eq!(std::fs::read(&moved_to).unwrap(), b"this is not sqlite at all, but it is somebody's file");
}

/// The child half of the killed-writer test: edits a record in a loop, printing each edit's
/// number once the store acknowledged it.
fn writer_child(path: &str, id: &str) {
    let who = editor("writer", Role::Expert);
    let store = Store::open(path).unwrap();
    let mut r = store.load(&RecordId::new(id).unwrap(), &who).unwrap();
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();
    let out = std::io::stdout();
    for i in 0.. {
        store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&f), 0, 0, &format!("<{i}>"))).unwrap();
        let mut o = out.lock();
        writeln!(o, "ack {i}").unwrap();
        o.flush().unwrap();
    }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_edit() {
    if let (Ok(path), Ok(id)) = (std::env::var("SHIDAO_WRITER_DB"), std::env::var("SHIDAO_WRITER_RECORD")) {
        writer_child(&path, &id);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let who = editor("writer", Role::Expert);
    let id = {
        let store = Store::open(&path).unwrap();
        store.create("guidance-log", &school("s"), &who).unwrap().id().clone()
    };
    let f = shidao_core::builtin("guidance-log").unwrap().top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["a_killed_writer_loses_no_acknowledged_edit", "--exact", "--nocapture", "--test-threads=1"])
            .env("SHIDAO_WRITER_DB", &path)
            .env("SHIDAO_WRITER_RECORD", id.as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let want = 40 + round * 37;
        let mut last = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ack ") {
                last = Some(n.parse::<u64>().unwrap());
                if last == Some(want) {
                    break;
                }
            }
        }
        // SIGKILL mid-burst: the child is still writing.
        child.kill().unwrap();
        child.wait().unwrap();
        let last = last.expect("the child acknowledged edits");
        let store = Store::open(&path).unwrap();
        let r = store.load(&id, &who).unwrap();
        let Some(Answer::LongText(text)) = r.answer(&FieldRef::top(&f)).unwrap().answer else { panic!("no text") };
        for i in 0..=last {
            assert!(text.contains(&format!("<{i}>")), "round {round}: acknowledged edit {i} lost");
        }
    }
}
