//! Scenario: two inspectors of one team fill the same visit record offline on their own tablets,
//! merge, and each sees the other's work, with the one field they both changed shown as a conflict
//! naming both of them.

use shidao_core::record::{Answer, IssueKind};
use shidao_core::store::{Store, StoreOptions};
use shidao_core::template::FieldKind;
use shidao_core::{Clock, FieldRef, Role};
use shidao_tests::{person, school};

#[test]
fn two_inspectors_fill_one_visit_record_offline() {
    let wang = person("wang-insp", Role::Inspector);
    let li = person("li-insp", Role::Inspector);
    let morning = Clock::fixed(1_795_312_800); // 2026-11-22 10:00
    let wang_tablet = Store::open_in_memory_with(StoreOptions { clock: morning.clone(), ..Default::default() }).unwrap();
    let li_tablet = Store::open_in_memory_with(StoreOptions { clock: Clock::fixed(1_795_313_400), ..Default::default() }).unwrap();

    // 1. Wang opens the visit record for 瓯海区实验中学 before the team leaves; Li's tablet gets a
    //    copy while both are still on the office network.
    let mut visit_w = wang_tablet.create("inspection-visit", &school("ouhai-syzx"), &wang).unwrap();
    let id = visit_w.id().clone();
    let t = visit_w.template().clone();
    let text_fields: Vec<String> = t.top_fields().filter(|f| f.kind() == FieldKind::LongText).map(|f| f.id().to_string()).collect();
    let findings = text_fields[0].clone();
    let date = t.def.date_field.clone().expect("visits have a date");
    wang_tablet.edit(&mut visit_w, |r| r.set_answer(&FieldRef::top(&date), Answer::Date("2026-11-22".into()))).unwrap();
    li_tablet.merge_remote(&wang_tablet.record_bytes(&id).unwrap(), &li).unwrap();
    let mut visit_l = li_tablet.load(&id, &li).unwrap();

    // 2. In the classrooms, with no network, each writes their part of the findings and rates the
    //    modules they covered; both also type the conclusion's one-line summary.
    let summary = t.top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    let ratings: Vec<String> = t.top_fields().filter(|f| f.kind() == FieldKind::Rating).map(|f| f.id().to_string()).collect();
    assert!(ratings.len() >= 2, "a visit rates several modules");
    wang_tablet
        .edit(&mut visit_w, |r| r.splice_text(&FieldRef::top(&findings), 0, 0, "王：七年级数学课堂提问以记忆性问题为主。"))
        .unwrap();
    wang_tablet.edit(&mut visit_w, |r| r.set_answer(&FieldRef::top(&ratings[0]), Answer::Rating(3))).unwrap();
    wang_tablet.edit(&mut visit_w, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("整体良好".into()))).unwrap();

    li_tablet
        .edit(&mut visit_l, |r| r.splice_text(&FieldRef::top(&findings), 0, 0, "李：作业批改及时，但缺少分层设计。"))
        .unwrap();
    li_tablet.edit(&mut visit_l, |r| r.set_answer(&FieldRef::top(&ratings[1]), Answer::Rating(2))).unwrap();
    li_tablet.edit(&mut visit_l, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("需重点整改作业设计".into()))).unwrap();

    // 3. Back on the bus, the tablets exchange what they have, in both directions.
    wang_tablet.merge_remote(&li_tablet.record_bytes(&id).unwrap(), &wang).unwrap();
    li_tablet.merge_remote(&wang_tablet.record_bytes(&id).unwrap(), &li).unwrap();
    let seen_by_wang = wang_tablet.load(&id, &wang).unwrap();
    let seen_by_li = li_tablet.load(&id, &li).unwrap();

    // 4. Both see the same record: both findings, both ratings, each with its author.
    assert_eq!(seen_by_wang.read().answers, seen_by_li.read().answers);
    let Some(Answer::LongText(text)) = seen_by_wang.answer(&FieldRef::top(&findings)).unwrap().answer else { panic!() };
    assert!(text.contains("王：七年级数学课堂提问以记忆性问题为主。"), "{text}");
    assert!(text.contains("李：作业批改及时，但缺少分层设计。"), "{text}");
    let r0 = seen_by_wang.answer(&FieldRef::top(&ratings[0])).unwrap();
    assert_eq!((r0.answer, r0.by.unwrap().user), (Some(Answer::Rating(3)), "wang-insp".to_string()));
    let r1 = seen_by_li.answer(&FieldRef::top(&ratings[1])).unwrap();
    assert_eq!((r1.answer, r1.by.unwrap().user), (Some(Answer::Rating(2)), "li-insp".to_string()));

    // 5. The summary both typed is a conflict: both values, both authors; neither was dropped.
    let s = seen_by_li.answer(&FieldRef::top(&summary)).unwrap();
    let mut both: Vec<(String, Option<Answer>)> =
        s.conflicts.iter().map(|c| (c.by.as_ref().unwrap().user.clone(), c.answer.clone())).collect();
    both.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        both,
        vec![
            ("li-insp".to_string(), Some(Answer::Text("需重点整改作业设计".into()))),
            ("wang-insp".to_string(), Some(Answer::Text("整体良好".into()))),
        ]
    );
    assert!(seen_by_wang.validate().issues.iter().any(|i| i.kind == IssueKind::Conflict && i.field.field == summary));

    // 6. Wang, as team leader, picks Li's wording; after the next exchange the conflict is gone
    //    everywhere and the pick is Wang's edit.
    let mut visit_w = wang_tablet.load(&id, &wang).unwrap();
    wang_tablet.edit(&mut visit_w, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("需重点整改作业设计".into()))).unwrap();
    li_tablet.merge_remote(&wang_tablet.record_bytes(&id).unwrap(), &li).unwrap();
    let settled = li_tablet.load(&id, &li).unwrap().answer(&FieldRef::top(&summary)).unwrap();
    assert!(settled.conflicts.is_empty());
    assert_eq!(settled.by.unwrap().user, "wang-insp");
    assert_eq!(morning.today(), "2026-11-22");
}
