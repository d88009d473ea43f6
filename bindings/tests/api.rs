//! The exported API called from Rust (no FFI): the error an app gets in each situation, and the
//! change listener. The Kotlin and Python scripts (tests/foreign.rs) walk the whole app path.

use std::sync::{Arc, Mutex};

use shidao_bindings::{
    AnswerValue, ChangeListener, DeviceId, Editor, RecordFilter, RecordStatus, Role, ShidaoError, ShidaoStore, UserId,
};

fn inspector() -> Editor {
    Editor { user: UserId::new("insp-01").expect("id"), device: DeviceId::new("tablet-a").expect("id"), role: Role::Inspector }
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl ChangeListener for Seen {
    fn on_record_changed(&self, record_id: String) {
        self.0.lock().expect("not poisoned").push(record_id);
    }
}

#[test]
fn each_situation_gives_the_error_an_app_can_act_on() -> Result<(), ShidaoError> {
    let store = ShidaoStore::open_in_memory()?;
    let rec = store.create_record("classroom-observation".into(), "ouhai-033".into(), inspector())?;

    // 1. A value out of bounds names the field.
    let e = rec.set_answer("period".into(), AnswerValue::Integer { value: 99 }, None).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, reason } if field == "period" && reason.contains("maximum")), "{e:?}");

    // 2. A sub-field without its row, and a row that does not exist.
    let e = rec.set_answer("snap_minute".into(), AnswerValue::Integer { value: 5 }, None).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "snap_minute"), "{e:?}");
    let e = rec.remove_row("snapshots".into(), "nope".into()).expect_err("must be refused");
    assert!(matches!(e, ShidaoError::NotFound { .. }), "{e:?}");
    let e = rec.set_answer("snap_minute".into(), AnswerValue::Integer { value: 5 }, Some("bad row!".into())).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "row"), "{e:?}");

    // 3. Submitting an empty form is not allowed, and says what is missing.
    let e = rec.submit().expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::NotAllowed { reason } if reason.contains("problem")), "{e:?}");
    assert_eq!(rec.status()?, RecordStatus::Draft);

    // 4. A principal cannot create an inspection visit; a bad school id is refused.
    let principal = Editor { role: Role::Principal, ..inspector() };
    let e = store.create_record("inspection-visit".into(), "ouhai-033".into(), principal).expect_err("must be refused");
    assert!(matches!(e, ShidaoError::NotAllowed { .. }), "{e:?}");
    let e = store.create_record("inspection-visit".into(), "一中".into(), inspector()).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "school"), "{e:?}");

    // 5. Unknown records, templates and files.
    assert!(matches!(store.open_record("nope".into(), inspector()), Err(ShidaoError::NotFound { .. })));
    assert!(matches!(store.template("nope".into(), "zh".into()), Err(ShidaoError::NotFound { .. })));
    assert!(matches!(store.create_record("nope".into(), "s1".into(), inspector()), Err(ShidaoError::NotFound { .. })));
    assert!(matches!(store.attachment("00".repeat(32)), Err(ShidaoError::NotFound { .. })));

    // 6. A file over the size limit is a bad answer for its field.
    let visit = store.create_record("inspection-visit".into(), "ouhai-033".into(), inspector())?;
    let big = vec![0u8; 20 * 1024 * 1024 + 1];
    let e = visit.attach_file("walk_photo".into(), big, "image/jpeg".into(), "big.jpg".into(), None).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "walk_photo"), "{e:?}");

    // 7. A panic inside a call comes back as `Other`, and the store goes on working.
    let e = store.debug_panic("test".into()).expect_err("must be refused");
    assert!(matches!(&e, ShidaoError::Other { reason } if reason == "internal error: test"), "{e:?}");
    assert_eq!(store.count_records()?, 2);
    rec.set_answer("period".into(), AnswerValue::Integer { value: 3 }, None)?;
    Ok(())
}

#[test]
fn a_damaged_store_file_is_moved_aside_and_reported() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shidao.db");
    std::fs::write(&path, vec![0x5a; 8192])?;
    let e = ShidaoStore::open(path.display().to_string()).err().ok_or("a damaged file must not open")?;
    assert!(matches!(&e, ShidaoError::Storage { reason } if reason.contains("moved aside")), "{e:?}");
    let moved = std::fs::read_dir(dir.path())?.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(moved, "the damaged file is kept beside the new one");
    let store = ShidaoStore::open(path.display().to_string())?;
    assert_eq!(store.count_records()?, 0);
    Ok(())
}

#[test]
fn the_listener_hears_creates_edits_and_merges() -> Result<(), ShidaoError> {
    let a = ShidaoStore::open_in_memory()?;
    let b = ShidaoStore::open_in_memory()?;
    let seen = Arc::new(Seen::default());
    a.set_change_listener(Some(seen.clone()))?;

    // 1. A record made and edited on tablet A is heard twice.
    let rec = a.create_record("classroom-observation".into(), "ouhai-033".into(), inspector())?;
    rec.increment("q_recall".into(), 1, None)?;
    // 2. A refused edit is not heard.
    let _ = rec.increment("q_recall".into(), -5, None);
    assert_eq!(*seen.0.lock().expect("lock"), vec![rec.id(), rec.id()]);

    // 3. Tablet B takes a copy and taps the counter; A merges B's copy and hears it.
    let expert = Editor { user: UserId::new("exp-07").expect("id"), device: DeviceId::new("tablet-b").expect("id"), role: Role::Expert };
    let id = b.merge_record(a.record_bytes(rec.id())?, expert.clone())?;
    b.open_record(id.clone(), expert)?.increment("q_recall".into(), 2, None)?;
    a.merge_record(b.record_bytes(id.clone())?, inspector())?;
    assert_eq!(seen.0.lock().expect("lock").len(), 3);

    // 4. The open record sees the merged taps once reloaded.
    assert_eq!(rec.answer("q_recall".into(), "zh".into(), None)?.answer, Some(AnswerValue::Counter { value: 1 }));
    rec.reload()?;
    assert_eq!(rec.answer("q_recall".into(), "zh".into(), None)?.answer, Some(AnswerValue::Counter { value: 3 }));
    let listed = a.list_records(RecordFilter { dirty_only: true, ..Default::default() })?;
    assert_eq!(listed.len(), 1);

    // 5. Without a listener nothing is called.
    a.set_change_listener(None)?;
    rec.increment("q_recall".into(), 1, None)?;
    assert_eq!(seen.0.lock().expect("lock").len(), 3);
    Ok(())
}

#[test]
fn a_bound_field_makes_the_same_edits_with_typed_setters() -> Result<(), ShidaoError> {
    let store = ShidaoStore::open_in_memory()?;
    let seen = Arc::new(Seen::default());
    store.set_change_listener(Some(seen.clone()))?;
    let rec = store.create_record("classroom-observation".into(), "ouhai-033".into(), inspector())?;
    let read = |field: &str, row: Option<String>| rec.answer(field.into(), "zh".into(), row).map(|a| a.answer);

    // 1. Every typed setter stores the answer `set_answer` would.
    rec.clone().field("period".into(), None)?.set_integer(3)?;
    rec.clone().field("duration".into(), None)?.set_duration(40)?;
    rec.clone().field("r_goal".into(), None)?.set_rating(4)?;
    rec.clone().field("double_coded".into(), None)?.set_bool(true)?;
    rec.clone().field("grade".into(), None)?.set_choice("g8".into())?;
    rec.clone().field("topic".into(), None)?.set_text("一次函数".into())?;
    let recall = rec.clone().field("q_recall".into(), None)?;
    recall.increment(2)?;
    recall.increment(1)?;
    let problems = rec.clone().field("problems".into(), None)?;
    problems.splice_text(0, 0, "提问少".into())?;
    problems.splice_text(2, 0, "偏".into())?;
    assert_eq!(read("period", None)?, Some(AnswerValue::Integer { value: 3 }));
    assert_eq!(read("duration", None)?, Some(AnswerValue::Duration { minutes: 40 }));
    assert_eq!(read("r_goal", None)?, Some(AnswerValue::Rating { value: 4 }));
    assert_eq!(read("double_coded", None)?, Some(AnswerValue::Bool { value: true }));
    assert_eq!(read("grade", None)?, Some(AnswerValue::Choice { value: "g8".into() }));
    assert_eq!(read("topic", None)?, Some(AnswerValue::Text { value: "一次函数".into() }));
    assert_eq!(read("q_recall", None)?, Some(AnswerValue::Counter { value: 3 }));
    assert_eq!(read("problems", None)?, Some(AnswerValue::LongText { value: "提问偏少".into() }));

    // 2. A field in a row; `set_answer` and `clear` through the bound field.
    let row = rec.add_row("snapshots".into(), None)?;
    let minute = rec.clone().field("snap_minute".into(), Some(row.clone()))?;
    assert_eq!((minute.field_id(), minute.row()), ("snap_minute".to_string(), Some(row.clone())));
    minute.set_integer(10)?;
    assert_eq!(read("snap_minute", Some(row.clone()))?, Some(AnswerValue::Integer { value: 10 }));
    rec.clone().field("snap_materials".into(), Some(row.clone()))?.set_answer(AnswerValue::Choices { values: vec!["board".into()] })?;
    rec.clone().field("topic".into(), None)?.clear()?;
    assert_eq!(read("topic", None)?, None);
    let heard = seen.0.lock().expect("lock").len();

    // 3. Refusals name the field, change nothing and are not heard.
    let period = rec.clone().field("period".into(), None)?;
    let e = period.set_integer(13).expect_err("out of bounds");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, reason } if field == "period" && reason.contains("maximum")), "{e:?}");
    let e = period.set_decimal(2.5).expect_err("wrong kind");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "period"), "{e:?}");
    let e = rec.clone().field("snap_minute".into(), None)?.set_integer(5).expect_err("no row");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "snap_minute"), "{e:?}");
    let e = rec.clone().field("no_such_field".into(), None).expect_err("unknown field");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "no_such_field"), "{e:?}");
    let e = rec.clone().field("snap_minute".into(), Some("bad row!".into())).expect_err("malformed row");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "row"), "{e:?}");
    let e = recall.increment(-10).expect_err("below zero");
    assert!(matches!(&e, ShidaoError::InvalidAnswer { field, .. } if field == "q_recall"), "{e:?}");
    assert_eq!(read("period", None)?, Some(AnswerValue::Integer { value: 3 }));
    assert_eq!(read("q_recall", None)?, Some(AnswerValue::Counter { value: 3 }));
    assert_eq!(seen.0.lock().expect("lock").len(), heard);

    // 4. What a bound field stored is on disk: a fresh open reads it.
    let again = store.open_record(rec.id(), inspector())?;
    assert_eq!(again.answer("snap_minute".into(), "zh".into(), Some(row))?.answer, Some(AnswerValue::Integer { value: 10 }));
    Ok(())
}

#[test]
fn templates_come_in_both_languages_with_nested_rows() -> Result<(), ShidaoError> {
    let store = ShidaoStore::open_in_memory()?;
    for lang in ["zh", "en"] {
        let all = store.templates(lang.into())?;
        assert_eq!(all.len(), 6);
        for t in &all {
            assert!(!t.title.is_empty() && !t.sections.is_empty());
            for f in t.sections.iter().flat_map(|s| &s.fields) {
                assert!(!f.label.is_empty(), "{}.{} has no {lang} label", t.id, f.id);
            }
        }
    }
    let visit = store.template("inspection-visit".into(), "en".into())?;
    let team = visit.sections.iter().flat_map(|s| &s.fields).find(|f| f.id == "team").ok_or(ShidaoError::Other { reason: "no team".into() })?;
    assert_eq!(team.sub_fields.len(), 4);
    assert!(team.sub_fields[0].required);
    Ok(())
}

#[test]
fn an_encrypted_store_refuses_a_wrong_key_and_rekeys() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shidao.db").display().to_string();
    let store = ShidaoStore::open_encrypted(path.clone(), vec![1; 32])?;
    assert!(store.is_encrypted()?);
    store.create_record("classroom-observation".into(), "s1".into(), inspector())?;
    let e = ShidaoStore::open_encrypted(path.clone(), vec![2; 32]).err().ok_or("a wrong key must not open the store")?;
    assert!(matches!(&e, ShidaoError::WrongKey { reason } if reason.contains("does not open with this key")), "{e:?}");
    let e = ShidaoStore::open_encrypted(path.clone(), vec![1; 31]).err().ok_or("a short key must be refused")?;
    assert!(matches!(&e, ShidaoError::WrongKey { reason } if reason.contains("32 bytes")), "{e:?}");
    store.rekey(vec![3; 32])?;
    drop(store);
    assert!(matches!(ShidaoStore::open_encrypted(path.clone(), vec![1; 32]), Err(ShidaoError::WrongKey { .. })));
    assert_eq!(ShidaoStore::open_encrypted(path, vec![3; 32])?.count_records()?, 1);
    Ok(())
}
