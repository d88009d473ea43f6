//! Records through the public API: every template filled to a clean validation, refusals that
//! name the field, merges that lose nobody's edit, review rules, history and scores.

use std::sync::Arc;

use shidao_core::record::{Answer, IssueKind, Status};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::template::{builtin, FieldKind, BUILTIN_IDS};
use shidao_core::{Clock, DeviceId, Editor, FieldRef, NewRecord, Record, RecordError, RecordId, Role, SchoolId, UserId};

/// 2026-11-22 10:00 in China.
const NOW: i64 = 1_795_312_800;

fn editor(user: &str, role: Role) -> Editor {
    Editor { user: UserId::new(user).unwrap(), device: DeviceId::new(format!("dev-{user}")).unwrap(), role }
}

fn new_record(template: &str, who: &Editor, at: i64) -> Record {
    let t = builtin(template).unwrap();
    let new = NewRecord { id: RecordId::random(), school: SchoolId::new("ouhai-01").unwrap() };
    Record::create(t, new, who.clone(), Clock::fixed(at)).unwrap()
}

fn filler(template: &str) -> Editor {
    let role = builtin(template).unwrap().def.filled_by[0];
    editor("filler", role)
}

#[test]
fn every_template_fills_completely_and_validates_clean() {
    for id in BUILTIN_IDS {
        let who = filler(id);
        let mut r = new_record(id, &who, NOW);
        fill_completely(&mut r, 2, &mut Rng::new(7)).unwrap();
        let report = r.validate();
        assert!(report.is_clean(), "{id} does not validate clean: {:#?}", report.issues);
        let view = r.read();
        let answered = view.answers.len();
        let fields = r.template().fields.iter().filter(|f| f.kind().holds_answer() && f.kind() != FieldKind::Repeat).count();
        assert!(answered > 0 && answered * 2 >= fields, "{id}: only {answered} answers for {fields} fields");
        // Scores compute once the form is full (a score over hidden fields, such as the second
        // observer's when the lesson is not double coded, may stay empty).
        assert!(view.scores.is_empty() || view.scores.iter().any(|s| s.value.is_some()), "{id}: no score computed");
        r.submit().unwrap_or_else(|e| panic!("{id} cannot be submitted: {e}"));
        assert_eq!(r.status(), Status::Submitted);
    }
}

#[test]
fn every_template_refuses_an_invalid_answer_naming_the_field() {
    for id in BUILTIN_IDS {
        let who = filler(id);
        let mut r = new_record(id, &who, NOW);
        let before = r.heads();
        let t = r.template().clone();
        let f = t
            .top_fields()
            .find(|f| matches!(f.kind(), FieldKind::SingleChoice | FieldKind::Rating | FieldKind::Integer | FieldKind::Date))
            .unwrap_or_else(|| panic!("{id} has no field to test"));
        let bad = match f.kind() {
            FieldKind::SingleChoice => Answer::Choice("no-such-option".into()),
            FieldKind::Rating => Answer::Rating(99),
            FieldKind::Integer => Answer::Text("many".into()),
            _ => Answer::Date("2026-02-30".into()),
        };
        let err = r.set_answer(&FieldRef::top(f.id()), bad).expect_err("must be refused");
        let msg = err.to_string();
        assert!(msg.contains(f.id()), "{id}: message does not name the field: {msg}");
        assert!(matches!(err, RecordError::Invalid(_)), "{id}: {err:?}");
        assert_eq!(r.heads(), before, "{id}: a refused edit changed the record");
    }
}

#[test]
fn constraints_refuse_with_the_templates_message() {
    let who = editor("insp", Role::Inspector);
    let mut r = new_record("classroom-observation", &who, NOW);
    let t = r.template().clone();
    let f = t.fields.iter().find(|f| f.constraint.is_some() && f.parent == shidao_core::template::Parent::Top);
    let Some(f) = f else { return };
    // Try values until the constraint refuses one, and check the message is the template's.
    for a in [Answer::Integer(-5), Answer::Integer(100_000), Answer::Decimal(-1.0)] {
        if let Err(RecordError::Invalid(e)) = r.set_answer(&FieldRef::top(f.id()), a) {
            assert_eq!(e.field, f.id());
            return;
        }
    }
}

#[test]
fn observation_total_score_and_band() {
    let who = editor("insp", Role::Inspector);
    let mut r = new_record("classroom-observation", &who, NOW);
    let t = r.template().clone();
    let total = t.scores.iter().find(|s| s.def.id == "total").expect("a total score");
    assert_eq!(total.def.weights.iter().map(|w| w.weight).sum::<f64>(), 100.0, "the items add up to 100 points");
    assert!(total.def.weights.iter().any(|w| w.field == "r_board"), "教师基本功 is part of the total");
    // The way a Chinese 评价表 scores: every item at one level gives that level's points, so an
    // ordinary lesson (一般 throughout) passes with 70 and a good one scores 85.
    for (level, points, band) in [(5, 95.0, "优秀"), (4, 85.0, "良好"), (3, 70.0, "合格"), (2, 50.0, "待改进"), (1, 30.0, "待改进")] {
        for w in &total.def.weights {
            r.set_answer(&FieldRef::top(&w.field), Answer::Rating(level)).unwrap();
        }
        let s = r.scores().into_iter().find(|s| s.id == "total").unwrap();
        assert_eq!(s.value, Some(points), "every item at level {level}");
        assert_eq!(s.band.unwrap().zh, band, "every item at level {level}");
    }
    // Mixed levels: each item earns its level's share of its own weight.
    r.set_answer(&FieldRef::top("r_participation"), Answer::Rating(5)).unwrap();
    let s = r.scores().into_iter().find(|s| s.id == "total").unwrap();
    assert_eq!(s.value, Some(30.0 + 15.0 * (0.95 - 0.30)));
    let licc = r.scores().into_iter().find(|s| s.id == "licc_student_learning").unwrap();
    assert_eq!(licc.value, Some((95.0 + 30.0) / 2.0), "LICC dimensions score the same way");
}

#[test]
fn concurrent_edits_keep_every_author() {
    let a = editor("insp-a", Role::Inspector);
    let b = editor("insp-b", Role::Inspector);
    let mut ra = new_record("inspection-visit", &a, NOW);
    let mut rb = ra.fork(b.clone());
    let t = ra.template().clone();
    let text = t.top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    let long = t.top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();

    // Both set the same one-line text: a conflict with both authors.
    ra.set_answer(&FieldRef::top(&text), Answer::Text("甲的记录".into())).unwrap();
    rb.set_answer(&FieldRef::top(&text), Answer::Text("乙的记录".into())).unwrap();
    // Both write into the co-written text: both survive.
    ra.splice_text(&FieldRef::top(&long), 0, 0, "甲：课堂秩序良好。").unwrap();
    rb.splice_text(&FieldRef::top(&long), 0, 0, "乙：作业批改及时。").unwrap();

    ra.merge(&rb).unwrap();
    rb.merge(&ra).unwrap();
    assert_eq!(ra.read(), rb.read(), "both copies read the same");

    let v = ra.answer(&FieldRef::top(&text)).unwrap();
    assert_eq!(v.conflicts.len(), 2);
    let mut authors: Vec<String> = v.conflicts.iter().map(|c| c.by.as_ref().unwrap().user.clone()).collect();
    authors.sort();
    assert_eq!(authors, ["insp-a", "insp-b"]);
    let values: Vec<Answer> = v.conflicts.iter().filter_map(|c| c.answer.clone()).collect();
    assert!(values.contains(&Answer::Text("甲的记录".into())) && values.contains(&Answer::Text("乙的记录".into())));
    assert!(ra.validate().issues.iter().any(|i| i.kind == IssueKind::Conflict && i.field.field == text));

    let Some(Answer::LongText(merged)) = ra.answer(&FieldRef::top(&long)).unwrap().answer else { panic!("no text") };
    assert!(merged.contains("甲：课堂秩序良好。") && merged.contains("乙：作业批改及时。"), "{merged}");

    // Picking one value resolves the conflict, recorded as the picker's edit.
    ra.set_answer(&FieldRef::top(&text), Answer::Text("乙的记录".into())).unwrap();
    let v = ra.answer(&FieldRef::top(&text)).unwrap();
    assert!(v.conflicts.is_empty());
    assert_eq!(v.by.unwrap().user, "insp-a");
}

#[test]
fn counters_add_up_and_choices_and_rows_merge() {
    let a = editor("obs-a", Role::Expert);
    let b = editor("obs-b", Role::Expert);
    let mut ra = new_record("classroom-observation", &a, NOW);
    let mut rb = ra.fork(b);
    let t = ra.template().clone();
    let counter = t.top_fields().find(|f| f.kind() == FieldKind::Counter).unwrap().id().to_string();
    let multi = t.top_fields().find(|f| f.kind() == FieldKind::MultipleChoice && f.def.options.len() >= 2).unwrap().clone();
    let repeat = t.top_fields().find(|f| f.kind() == FieldKind::Repeat).unwrap().id().to_string();

    for _ in 0..3 {
        ra.increment(&FieldRef::top(&counter), 1).unwrap();
    }
    for _ in 0..2 {
        rb.increment(&FieldRef::top(&counter), 1).unwrap();
    }
    let o1 = multi.def.options[0].value.clone();
    let o2 = multi.def.options[1].value.clone();
    ra.set_answer(&FieldRef::top(multi.id()), Answer::Choices(vec![o1.clone()])).unwrap();
    rb.set_answer(&FieldRef::top(multi.id()), Answer::Choices(vec![o2.clone()])).unwrap();
    let row_a = ra.add_row(&repeat, None).unwrap();
    let row_b = rb.add_row(&repeat, None).unwrap();

    ra.merge(&rb).unwrap();
    rb.merge(&ra).unwrap();
    assert_eq!(ra.answer(&FieldRef::top(&counter)).unwrap().answer, Some(Answer::Counter(5)));
    assert_eq!(ra.answer(&FieldRef::top(multi.id())).unwrap().answer, Some(Answer::Choices(vec![o1, o2])));
    let rows = ra.row_ids(&repeat).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.contains(&row_a) && rows.contains(&row_b));
    assert_eq!(rows, rb.row_ids(&repeat).unwrap(), "row order is the same everywhere");

    // Reorder and remove keep ids stable.
    ra.move_row(&repeat, &rows[1], 0).unwrap();
    assert_eq!(ra.row_ids(&repeat).unwrap(), vec![rows[1].clone(), rows[0].clone()]);
    ra.remove_row(&repeat, &rows[0]).unwrap();
    assert_eq!(ra.row_ids(&repeat).unwrap(), vec![rows[1].clone()]);
}

#[test]
fn review_rules_and_the_sealed_record() {
    let insp = editor("insp", Role::Inspector);
    let sup = editor("sup", Role::Supervisor);
    let mut r = new_record("guidance-log", &editor("exp", Role::Expert), NOW);
    // A supervisor cannot approve a draft, and an expert cannot return one.
    let mut as_sup = r.fork(sup.clone());
    assert!(matches!(as_sup.approve(None), Err(RecordError::NotAllowed { .. })));
    // An incomplete record cannot be submitted; the error says what is missing.
    let err = r.submit().expect_err("incomplete");
    assert!(matches!(err, RecordError::NotReady(_)), "{err}");
    fill_completely(&mut r, 1, &mut Rng::new(3)).unwrap();
    r.submit().unwrap();
    // The author cannot edit a submitted record; an inspector cannot review.
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    assert!(matches!(r.set_answer(&FieldRef::top(&f), Answer::Text("x".into())), Err(RecordError::NotAllowed { .. })));
    let mut as_insp = r.fork(insp);
    assert!(as_insp.return_for_correction("no").is_err());
    // The supervisor returns it with a comment; the author edits and resubmits.
    let mut as_sup = r.fork(sup.clone());
    assert!(matches!(as_sup.return_for_correction("  "), Err(RecordError::CommentRequired)));
    as_sup.return_for_correction("请补充下次跟进的时间").unwrap();
    r.merge(&as_sup).unwrap();
    assert_eq!(r.status(), Status::Returned);
    assert_eq!(r.return_comment().as_deref(), Some("请补充下次跟进的时间"));
    r.set_answer(&FieldRef::top(&f), Answer::Text("已补充".into())).unwrap();
    r.submit().unwrap();
    // Approval seals it for everyone.
    let mut as_sup = r.fork(sup);
    as_sup.approve(Some("同意")).unwrap();
    assert!(matches!(as_sup.set_answer(&FieldRef::top(&f), Answer::Text("y".into())), Err(RecordError::Sealed(_))));
    let actions: Vec<String> = as_sup.review_log().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["submit", "return", "submit", "approve"]);
}

#[test]
fn signatures_are_the_editors_own() {
    let who = editor("insp", Role::Inspector);
    let mut r = new_record("inspection-visit", &who, NOW);
    let sig = r.template().fields.iter().find(|f| f.kind() == FieldKind::Signature && f.parent == shidao_core::template::Parent::Top).unwrap().id().to_string();
    let forged = Answer::Signature(shidao_core::record::SignatureRef { user: "someone-else".into(), signer: None, image: None });
    let err = r.set_answer(&FieldRef::top(&sig), forged).expect_err("forged");
    assert!(err.to_string().contains("cannot sign as someone-else"), "{err}");
    r.sign(&FieldRef::top(&sig), Some("李校长".into()), None).unwrap();
    let Some(Answer::Signature(s)) = r.answer(&FieldRef::top(&sig)).unwrap().answer else { panic!() };
    assert_eq!((s.user.as_str(), s.signer.as_deref()), ("insp", Some("李校长")));
}

#[test]
fn history_of_a_field_lists_every_edit_with_its_author() {
    let a = editor("a", Role::Inspector);
    let b = editor("b", Role::Inspector);
    let mut ra = new_record("inspection-visit", &a, NOW);
    let t = ra.template().clone();
    let f = t.top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    ra.set_answer(&FieldRef::top(&f), Answer::Text("一".into())).unwrap();
    let mut rb = ra.fork(b);
    rb.set_answer(&FieldRef::top(&f), Answer::Text("二".into())).unwrap();
    ra.merge(&rb).unwrap();
    ra.clear_answer(&FieldRef::top(&f)).unwrap();
    let h = ra.history(&FieldRef::top(&f)).unwrap();
    let seen: Vec<(String, Option<Answer>)> = h.into_iter().map(|e| (e.by.user, e.answer)).collect();
    assert_eq!(
        seen,
        vec![
            ("a".to_string(), Some(Answer::Text("一".into()))),
            ("b".to_string(), Some(Answer::Text("二".into()))),
            ("a".to_string(), None),
        ]
    );
}

#[test]
fn records_round_trip_through_bytes_and_refuse_garbage() {
    let who = editor("x", Role::Principal);
    let mut r = new_record("classroom-observation", &who, NOW);
    fill_completely(&mut r, 2, &mut Rng::new(1)).unwrap();
    let bytes = r.save();
    let templates = |id: &str, v: u32| builtin(id).filter(|t| t.version() == v);
    let back = Record::load([bytes.as_slice()], templates, who.clone(), Clock::fixed(NOW)).unwrap();
    assert_eq!(back.read(), r.read());
    let err = Record::load([&b"not a record"[..]], templates, who.clone(), Clock::fixed(0)).unwrap_err();
    assert!(matches!(err, RecordError::Corrupt(_)), "{err}");
    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() / 2);
    assert!(Record::load([truncated.as_slice()], templates, who.clone(), Clock::fixed(0)).is_err());
    let none = |_: &str, _: u32| -> Option<Arc<shidao_core::Template>> { None };
    assert!(matches!(Record::load([bytes.as_slice()], none, who, Clock::fixed(0)), Err(RecordError::UnknownTemplate { .. })));
}
