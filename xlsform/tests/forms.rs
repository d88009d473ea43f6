//! Workbooks written in the test with rust_xlsxwriter: the 听课评价表 (and its committed copy in
//! the repository's `tests/forms/`, which the scenario tests publish), and bad input, each refused
//! with a clear error naming its place.

mod support;

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::template::FieldKind;
use shidao_core::{Clock, DeviceId, Editor, FieldRef, NewRecord, Record, RecordId, SchoolId, UserId};
use shidao_xlsform::{import, ImportError, Imported, Issue, Options, Role, MAX_BYTES};
use support::workbook;

fn opts() -> Options {
    Options { skip_unsupported: false, filled_by: vec![Role::Inspector] }
}

fn imported(bytes: &[u8]) -> Imported {
    import("form.xlsx", bytes, &opts()).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(bytes: &[u8]) -> ImportError {
    refused_with(bytes, &opts())
}

fn refused_with(bytes: &[u8], o: &Options) -> ImportError {
    match import("form.xlsx", bytes, o) {
        Ok(i) => panic!("must be refused, imported: {}", i.json),
        Err(e) => e,
    }
}

/// The issue whose message contains `needle`.
fn issue<'a>(e: &'a ImportError, needle: &str) -> &'a Issue {
    e.issues.iter().find(|i| i.message.contains(needle)).unwrap_or_else(|| panic!("no issue with `{needle}` in: {e}"))
}

fn record(imp: &Imported) -> Record {
    let editor = Editor { user: UserId::new("wang").expect("id"), device: DeviceId::new("tab-1").expect("id"), role: Role::Inspector };
    Record::create(imp.template.clone(), NewRecord { id: RecordId::random(), school: SchoolId::new("s1").expect("id") }, editor, Clock::fixed(1_790_000_000))
        .expect("record")
}

const H: [&str; 7] = ["type", "name", "label", "relevant", "constraint", "calculation", "required"];

/// A survey with the header `H`, and settings naming the form.
fn survey(rows: Vec<Vec<&str>>) -> Vec<u8> {
    let mut s = vec![H.to_vec()];
    s.extend(rows);
    let choices = vec![vec!["list_name", "name", "label"], vec!["yn", "yes", "是"], vec!["yn", "no", "否"]];
    let settings = vec![vec!["form_id", "version"], vec!["t", "3"]];
    workbook(&[("survey", s), ("choices", choices), ("settings", settings)])
}

#[test]
fn tingke_pingjia_maps_every_part() {
    let imp = imported(&support::tingke_pingjia());
    let t = &imp.template;
    assert_eq!((t.id(), t.version()), ("tingke-pingjia", 2026090101));
    assert_eq!(t.def.title.zh, "听课评价表");
    assert_eq!(t.def.title.en, "Lesson evaluation");
    assert_eq!(t.def.filled_by, vec![Role::Inspector, Role::Expert]);
    let kind = |id: &str| t.field(id).unwrap_or_else(|| panic!("field {id}")).kind();
    assert_eq!(kind("r_goal"), FieldKind::Rating);
    assert_eq!(t.field("r_goal").expect("r_goal").def.scale.len(), 5);
    assert_eq!(t.field("r_goal").expect("r_goal").def.scale[4].label.zh, "优秀");
    assert_eq!(kind("r_effect"), FieldKind::Rating, "a range of 1–5 is a rating");
    assert_eq!(kind("total"), FieldKind::Computed);
    assert_eq!(kind("moments"), FieldKind::Repeat);
    assert_eq!(t.sub_fields("moments").count(), 3);
    assert_eq!(kind("m_note"), FieldKind::LongText);
    assert_eq!(kind("strengths"), FieldKind::MultipleChoice);
    assert_eq!(kind("feedback_given"), FieldKind::YesNo);
    assert_eq!(kind("photo"), FieldKind::Attachment);
    assert_eq!(t.field("subject").expect("subject").def.label.en, "Subject");
    assert_eq!(t.field("students").expect("students").def.constraint_message.as_ref().expect("message").zh, "人数应在 1 到 60 之间");
    assert_eq!(t.def.date_field.as_deref(), Some("lesson_date"));
    let sections: Vec<&str> = t.def.sections.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(sections, ["info", "rating", "part_3", "summary"]);
    assert!(imp.warnings.is_empty(), "{:?}", imp.warnings);

    // The logic works on a record: the total, the reason asked below 60, the acknowledged advice.
    let mut r = record(&imp);
    for (id, v) in [("r_goal", 2), ("r_content", 2), ("r_method", 3), ("r_student", 2), ("r_effect", 3)] {
        r.set_answer(&FieldRef::top(id), Answer::Rating(v)).expect("rating");
    }
    let total = r.computed().into_iter().find(|c| c.field.field == "total").expect("total");
    assert_eq!(total.number, Some(48.0));
    let asks = |r: &Record, id: &str| r.validate().blocking().any(|i| i.field.field == id);
    assert!(asks(&r, "low_reason"), "below 60 the reason is required");
    assert!(!asks(&r, "advice"), "advice is shown only after feedback");
    r.set_answer(&FieldRef::top("students"), Answer::Integer(70)).expect_err("constraint: at most 60");
    r.set_answer(&FieldRef::top("feedback_given"), Answer::Bool(true)).expect("ack");
    r.set_answer(&FieldRef::top("advice"), Answer::LongText("太短".into())).expect_err("at least 5 characters");
    let mut r = record(&imp);
    fill_completely(&mut r, 2, &mut Rng::new(11)).expect("fill");
    assert!(r.validate().is_clean(), "{:?}", r.validate().blocking().collect::<Vec<_>>());
}

#[test]
fn tingke_pingjia_v2_adds_one_field_and_keeps_the_others() {
    let v1 = imported(&support::tingke_pingjia());
    let v2 = imported(&support::tingke_pingjia_v2());
    assert_eq!((v2.template.id(), v2.template.version()), ("tingke-pingjia", 2026090102));
    let ids = |i: &Imported| i.template.fields.iter().map(|f| (f.id().to_string(), f.kind())).collect::<Vec<_>>();
    let (a, b) = (ids(&v1), ids(&v2));
    assert_eq!(b.len(), a.len() + 1);
    assert!(a.iter().all(|f| b.contains(f)), "v2 keeps every field of v1 with its kind");
    assert_eq!(v2.template.field("homework").map(|f| f.kind()), Some(FieldKind::LongText));
}

#[test]
fn committed_tingke_workbook_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/forms/tingke-pingjia.xlsx");
    let committed = std::fs::read(path).expect("tests/forms/tingke-pingjia.xlsx at the repository root (write it with the example tingke-pingjia)");
    assert!(committed.len() < 50 * 1024, "{} bytes", committed.len());
    let a = import("tingke-pingjia.xlsx", &committed, &opts()).expect("committed copy imports");
    let b = imported(&support::tingke_pingjia());
    assert_eq!(a.json, b.json, "the committed workbook differs from the generator: run the example tingke-pingjia");
}

#[test]
fn bad_bytes_and_oversized_files_are_refused() {
    let e = refused(b"type,name,label\ntext,a,A\n");
    assert_eq!(e.issues.len(), 1);
    assert_eq!(e.issues[0].place.sheet, "workbook");
    assert!(e.issues[0].message.contains("cannot be read as an Excel workbook"), "{e}");

    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend([0u8; 64]);
    assert!(refused(&zip).issues[0].message.contains("cannot be read"));

    let mut big = support::tingke_pingjia();
    big.resize(MAX_BYTES + 1, 0);
    let e = refused(&big);
    assert!(e.issues[0].message.contains("largest workbook accepted"), "{e}");
}

#[test]
/// `tests/forms/encrypted.xlsx` is `tingke-pingjia.xlsx` encrypted with the password `shidao`
/// (Office agile encryption, written with msoffcrypto-tool).
fn encrypted_workbook_is_refused_as_password_protected() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/forms/encrypted.xlsx");
    let bytes = std::fs::read(path).expect("tests/forms/encrypted.xlsx");
    let e = refused(&bytes);
    assert!(e.issues[0].message.contains("password-protected"), "{e}");
}

#[test]
fn missing_sheet_and_columns_are_named() {
    let wb = workbook(&[("questions", vec![vec!["type", "name"], vec!["text", "a"]])]);
    let e = refused(&wb);
    assert!(issue(&e, "no `survey` sheet").message.contains("questions"), "{e}");

    let wb = workbook(&[("survey", vec![vec!["type", "label"], vec!["text", "A"]])]);
    let i = issue(&refused(&wb), "needs a `type` and a `name` column").clone();
    assert_eq!((i.place.sheet.as_str(), i.place.row), ("survey", Some(1)));
}

#[test]
fn duplicate_names_unknown_lists_and_bad_expressions_are_all_reported_at_once() {
    let wb = survey(vec![
        vec!["integer", "age", "年龄"],
        vec!["text", "age", "年龄（重复）"],
        vec!["select_one colours", "colour", "颜色"],
        vec!["integer", "n", "人数", "", ". >"],
        vec!["text", "who", "姓名", "${nobody} > 1"],
        vec!["calculate", "c", "", "", "", "frobnicate(${age})"],
    ]);
    let e = refused(&wb);
    let dup = issue(&e, "used twice");
    assert_eq!((dup.place.row, dup.place.column.as_deref()), (Some(3), Some("name")));
    assert!(dup.message.contains("rows 2 and 3"), "{dup}");
    let list = issue(&e, "`colours`");
    assert_eq!((list.place.row, list.place.column.as_deref()), (Some(4), Some("type")));
    let parse = issue(&e, "does not parse");
    assert_eq!((parse.place.row, parse.place.column.as_deref()), (Some(5), Some("constraint")));
    let unknown = issue(&e, "names no field");
    assert_eq!((unknown.place.row, unknown.place.column.as_deref()), (Some(6), Some("relevant")));
    assert_eq!(unknown.to_string(), "survey row 6, column relevant: `who`: `${nobody}` names no field on the survey sheet");
    let func = issue(&e, "frobnicate");
    assert_eq!((func.place.row, func.place.column.as_deref()), (Some(7), Some("calculation")));
}

#[test]
fn cycles_are_refused_naming_the_fields() {
    let wb = survey(vec![
        vec!["integer", "a", "甲", "${b} > 1"],
        vec!["integer", "b", "乙", "${a} > 1"],
    ]);
    let i = issue(&refused(&wb), "cycle").clone();
    assert!(i.message.contains("`a` (row 2)") && i.message.contains("`b` (row 3)"), "{i}");
    let wb = survey(vec![vec!["calculate", "x", "", "", "", "${y} + 1"], vec!["calculate", "y", "", "", "", "${x} * 2"]]);
    assert!(issue(&refused(&wb), "cycle").message.contains("`x`"));
}

#[test]
fn unsupported_rows_are_refused_or_left_out_but_never_while_referred_to() {
    let wb = survey(vec![
        vec!["text", "school", "学校"],
        vec!["geopoint", "gps", "位置"],
        vec!["barcode", "code", "条码"],
    ]);
    let e = refused(&wb);
    let g = issue(&e, "`gps`");
    assert_eq!((g.place.row, g.place.column.as_deref()), (Some(3), Some("type")));
    assert!(g.message.contains("location"), "{g}");
    let skip = Options { skip_unsupported: true, ..opts() };
    let imp = import("form.xlsx", &wb, &skip).expect("imports without them");
    assert!(imp.template.field("gps").is_none() && imp.template.field("school").is_some());
    let w = imp.warnings.iter().find(|w| w.message.contains("left out") && w.message.contains("`gps`")).expect("warning");
    assert_eq!(w.place.row, Some(3));

    let wb = survey(vec![vec!["geopoint", "gps", "位置"], vec!["text", "where", "说明", "${gps} != ''"]]);
    let e = refused_with(&wb, &skip);
    let i = issue(&e, "refers to `${gps}`");
    assert_eq!((i.place.row, i.place.column.as_deref()), (Some(3), Some("relevant")));
    assert!(i.message.contains("survey row 2"), "{i}");
}

#[test]
fn nested_repeats_are_refused_with_their_place() {
    let wb = survey(vec![
        vec!["begin_repeat", "visits", "走访"],
        vec!["text", "room", "教室"],
        vec!["begin_repeat", "pupils", "学生"],
        vec!["text", "pupil", "姓名"],
        vec!["end_repeat"],
        vec!["end_repeat"],
    ]);
    let i = issue(&refused(&wb), "cannot nest").clone();
    assert_eq!((i.place.row, i.place.column.as_deref()), (Some(4), Some("type")));
    assert!(i.message.contains("row 2"), "{i}");
    let imp = import("form.xlsx", &wb, &Options { skip_unsupported: true, ..opts() }).expect("without the inner repeat");
    assert!(imp.template.field("pupil").is_none() && imp.template.field("room").is_some());
}

#[test]
fn nested_groups_flatten_and_carry_their_relevance() {
    let wb = survey(vec![
        vec!["select_one yn", "visited", "是否听课"],
        vec!["begin_group", "outer", "听课", "${visited} = 'yes'"],
        vec!["integer", "minutes", "时长"],
        vec!["begin_group", "inner", "细节", "${minutes} > 10"],
        vec!["text", "detail", "记录"],
        vec!["end_group"],
        vec!["end_group"],
    ]);
    let imp = imported(&wb);
    let t = &imp.template;
    assert_eq!(t.def.sections[1].relevant.as_deref(), Some("${visited} = 'yes'"));
    assert_eq!(t.field("detail").expect("detail").def.relevant.as_deref(), Some("${minutes} > 10"));
    assert_eq!(t.field("inner").expect("heading").kind(), FieldKind::Note);
    assert_eq!(t.field("detail").expect("detail").section, t.field("minutes").expect("minutes").section);

    let wb = survey(vec![vec!["begin_group", "g", "组"], vec!["text", "a", "甲"]]);
    assert!(issue(&refused(&wb), "never closed").place.row == Some(2));
}

#[test]
fn versions_map_to_numbers_deterministically() {
    let v = |cell: &str| {
        let s = vec![H.to_vec(), vec!["text", "a", "甲"]];
        let wb = workbook(&[("survey", s), ("settings", vec![vec!["form_id", "version"], vec!["t", cell]])]);
        import("f.xlsx", &wb, &opts()).map(|i| i.template.version())
    };
    assert_eq!(v("7").ok(), Some(7));
    assert_eq!(v("2024010101").ok(), Some(2024010101));
    assert_eq!(v("20240508231115").ok(), Some(2405082311));
    assert_eq!(v("2024-05-08 23:11").ok(), Some(2405082311));
    assert!(v("v2 beta").is_err());
}

#[test]
fn a_loader_refusal_is_mapped_back_to_its_row() {
    // A range of one point becomes a rating of one level, which the template loader refuses.
    let mut s = vec![vec!["type", "name", "label", "parameters"]];
    s.push(vec!["text", "a", "甲"]);
    s.push(vec!["range", "one", "单点", "start=3 end=3 step=1"]);
    let wb = workbook(&[("survey", s), ("settings", vec![vec!["form_id", "version"], vec!["t", "1"]])]);
    let e = refused(&wb);
    let i = issue(&e, "field `one`");
    assert_eq!((i.place.sheet.as_str(), i.place.row), ("survey", Some(3)));
    assert!(i.message.contains("at least two levels"), "{i}");
}

#[test]
fn labels_follow_the_language_columns_chinese_first() {
    let s = vec![
        vec!["type", "name", "label::English (en)", "label::中文 (zh)", "hint::English (en)", "hint::中文 (zh)"],
        vec!["text", "school", "School", "学校名称", "Full name", "写全称"],
        vec!["text", "only_en", "English only"],
    ];
    let settings = vec![vec!["form_id", "version", "filled_by"], vec!["langs", "1", "expert"]];
    let imp = imported(&workbook(&[("survey", s), ("settings", settings)]));
    let f = imp.template.field("school").expect("school");
    assert_eq!((f.def.label.zh.as_str(), f.def.label.en.as_str()), ("学校名称", "School"));
    assert_eq!(f.def.hint.as_ref().map(|h| h.zh.as_str()), Some("写全称"));
    let f = imp.template.field("only_en").expect("only_en");
    assert_eq!((f.def.label.zh.as_str(), f.def.label.en.as_str()), ("English only", "English only"));
    assert_eq!(imp.template.def.filled_by, vec![Role::Expert]);
    assert!(imp.warnings.iter().all(|w| !w.message.contains("no Chinese label")), "{:?}", imp.warnings);
}

#[test]
fn or_other_adds_an_option_and_a_text_shown_for_it() {
    let imp = imported(&survey(vec![vec!["select_one yn or_other", "ok", "满意吗"]]));
    let t = &imp.template;
    assert!(t.field("ok").expect("ok").option("other").is_some());
    let o = t.field("ok_other").expect("the other text");
    assert_eq!(o.kind(), FieldKind::Text);
    assert_eq!(o.def.relevant.as_deref(), Some("selected(${ok}, 'other')"));
}

#[test]
fn metadata_rows_are_dropped_with_a_warning_and_today_still_reads() {
    let imp = imported(&survey(vec![
        vec!["start", "start"],
        vec!["today", "today"],
        vec!["date", "visit", "视导日期", "", ". <= ${today}"],
    ]));
    assert!(imp.template.field("start").is_none() && imp.template.field("today").is_none());
    assert_eq!(imp.template.field("visit").expect("visit").def.constraint.as_deref(), Some(". <= today()"));
    assert!(imp.warnings.iter().any(|w| w.place.row == Some(2) && w.message.contains("not a field")));
    let e = refused(&survey(vec![vec!["start", "start"], vec!["text", "t", "说明", "${start} != ''"]]));
    let i = issue(&e, "`${start}` is record metadata (row 2)");
    assert_eq!(i.place.row, Some(3));
}

#[test]
fn a_group_relevance_that_reads_its_own_question_is_a_cycle() {
    let wb = survey(vec![
        vec!["begin_group", "g", "组", "${a} > 1"],
        vec!["integer", "a", "甲"],
        vec!["end_group"],
    ]);
    assert!(issue(&refused(&wb), "cycle").message.contains("`a` (row 3)"));
}

#[test]
fn groups_inside_a_left_out_repeat_close_cleanly() {
    let wb = survey(vec![
        vec!["begin_repeat", "outer", "外"],
        vec!["text", "keep", "留"],
        vec!["begin_repeat", "inner", "内"],
        vec!["begin_group", "g", "组"],
        vec!["text", "gone", "去"],
        vec!["end_group"],
        vec!["end_repeat"],
        vec!["end_repeat"],
    ]);
    let imp = import("form.xlsx", &wb, &Options { skip_unsupported: true, ..opts() }).unwrap_or_else(|e| panic!("{e}"));
    assert!(imp.template.field("keep").is_some() && imp.template.field("gone").is_none());
}
