//! The school report (一校一报告) counts what a supervisor can sign: submitted and approved
//! records only (a draft and a returned record never count), the school's own targets only (a
//! district-wide task belongs to the dashboard), and every section a signed report has, in Chinese.

use rusqlite::Connection;
use shidao_core::record::{Answer, Record};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::sync::protocol::Push;
use shidao_core::template::Role;
use shidao_core::{builtin, Clock, Editor, FieldRef, NewRecord, RecordId, SchoolId};
use shidao_server::accounts::{self, Device};
use shidao_server::web::auth::WebUser;
use shidao_server::web::report::queries;
use shidao_server::web::{report_html, Lang, ReportQuery};
use shidao_server::{db, sync};

/// 2026-10-15 12:00 UTC.
const NOW: i64 = 1_792_065_600;
const TODAY: &str = "2026-10-15";

struct World {
    _dir: tempfile::TempDir,
    conn: Connection,
    inspector: Device,
    principal: Device,
    supervisor: Device,
    rng: Rng,
}

fn device(conn: &Connection, user: &str) -> Device {
    let code = accounts::new_enrol_code(conn, user, NOW).expect("code");
    let (_, token, _) = accounts::enrol(conn, &code, "平板", NOW).expect("enrol");
    accounts::authenticate(conn, &token, NOW).expect("device")
}

fn editor(d: &Device) -> Editor {
    Editor { user: d.user.clone(), device: d.id.clone(), role: d.role }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let conn = db::open(&dir.path().join("central.db")).expect("store");
        accounts::add_programme(&conn, "p", "测试区强校工程", Some(("2026-09-01", "2027-01-31"))).expect("programme");
        accounts::add_school(&conn, "p", "s-a", "甲校", "示范", "课堂转型").expect("school");
        accounts::add_school(&conn, "p", "s-b", "乙校", "优质", "").expect("school");
        let a = vec!["s-a".to_string()];
        accounts::add_user(&conn, "ins", "王视导", Role::Inspector, Some("p"), &a, None, NOW).expect("user");
        accounts::add_user(&conn, "pri", "李校长", Role::Principal, Some("p"), &a, None, NOW).expect("user");
        accounts::add_user(&conn, "sup", "赵督导", Role::Supervisor, Some("p"), &[], None, NOW).expect("user");
        accounts::add_user(&conn, "exp", "钱专家", Role::Expert, Some("p"), &a, None, NOW).expect("user");
        accounts::add_task(&conn, "p", None, "district", "新增优质学位", 2400.0, "个", "2026-09-01", "2027-08-31").expect("task");
        accounts::add_task(&conn, "p", Some("s-a"), "own", "甲校骨干教师培养", 10.0, "名", "2026-09-01", "2027-08-31").expect("task");
        // The programme's rules: one term and the principal's lesson quota.
        use shidao_server::programme::rules::{LessonQuota, Per, Rules, Source, Term};
        let rules = Rules {
            document: "《测试区强校工程实施方案》".into(),
            terms: vec![Term { id: "t1".into(), name: "2026学年第一学期".into(), start: "2026-09-01".into(), end: "2027-01-31".into() }],
            lesson_quotas: vec![LessonQuota {
                id: "principal".into(),
                role: "principal".into(),
                min: 30.0,
                per: Per::Term,
                purpose: None,
                own_school: true,
                source: Source { document: "《测试区强校工程实施方案》".into(), sentence: "校长每学期在本校听评课不少于30节".into() },
            }],
            ..Rules::default()
        };
        shidao_server::programme::store::save(&conn, "p", &rules, "admin", NOW).expect("rules");
        let (inspector, principal, supervisor) = (device(&conn, "ins"), device(&conn, "pri"), device(&conn, "sup"));
        World { _dir: dir, conn, inspector, principal, supervisor, rng: Rng::new(7) }
    }

    fn push(&mut self, by: &Device, r: &Record, before: &[automerge::ChangeHash]) {
        let push = Push { record: r.id().to_string(), changes: r.save_after(before), heads: r.heads().iter().map(|h| h.to_string()).collect() };
        sync::apply_one(&mut self.conn, by, &push, NOW, None).expect("accepted");
    }

    /// A complete record of `template` at school s-a dated `date`, with `texts` written over the
    /// sample answers, left as a draft, submitted, or submitted and then returned.
    fn record(&mut self, by: &Device, template: &str, date_field: &str, date: &str, texts: &[(&str, &str)], status: &str) -> Record {
        let t = builtin(template).expect("template");
        let mut r = Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new("s-a").expect("id") }, editor(by), Clock::fixed(NOW))
            .expect("create");
        fill_completely(&mut r, 1, &mut self.rng).expect("fill");
        r.set_answer(&FieldRef::top(date_field), Answer::Date(date.into())).expect("date");
        for (field, text) in texts {
            r.set_answer(&FieldRef::top(field), Answer::LongText((*text).into())).expect("text");
        }
        if status != "draft" {
            r.submit().expect("submit");
        }
        self.push(&by.clone(), &r, &[]);
        if status == "returned" {
            let sup = self.supervisor.clone();
            let doc = automerge::Automerge::load(&r.save()).expect("doc");
            let mut s = Record::from_doc(doc, sync::template_of, editor(&sup), Clock::fixed(NOW)).expect("as supervisor");
            let before = s.heads();
            s.return_for_correction("请补充证据").expect("return");
            self.push(&sup, &s, &before);
        }
        r
    }

    fn user(&self) -> WebUser {
        WebUser { id: "sup".into(), name: "赵督导".into(), role: Role::Supervisor, programme: Some("p".into()), csrf: "x".into() }
    }
}

#[test]
fn only_submitted_and_approved_records_and_the_schools_own_targets_count() {
    let mut w = World::new();
    let ins = w.inspector.clone();
    w.record(&ins, "inspection-visit", "visit_date", "2026-10-08", &[("strengths", "已提交视导的优点")], "submitted");
    w.record(&ins, "inspection-visit", "visit_date", "2026-10-09", &[("strengths", "草稿里的优点")], "draft");
    w.record(&ins, "inspection-visit", "visit_date", "2026-10-10", &[("strengths", "被退回的优点")], "returned");
    // Lessons the principal observed: one submitted, one draft.
    let pri = w.principal.clone();
    w.record(&pri, "classroom-observation", "lesson_date", "2026-10-11", &[], "submitted");
    w.record(&pri, "classroom-observation", "lesson_date", "2026-10-12", &[], "draft");

    let user = w.user();
    let r = queries::report(&w.conn, &user, Lang { en: false }, "s-a", None, None, TODAY, NOW).expect("report");
    assert_eq!(r.work.visits.value, Some(1.0), "one visit counts: the draft and the returned one do not");
    assert_eq!(r.work.observations.value, Some(1.0), "one lesson counts");
    assert_eq!((r.counted, r.awaiting_review, r.not_counted), (2, 2, 3));
    let achievements: Vec<&str> = r.achievements.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(achievements, ["已提交视导的优点"]);
    let principal = r.checks.iter().find(|c| c.rule.contains("李校长")).expect("the principal's check, from the programme's rules");
    assert_eq!((principal.figure.as_str(), principal.met, principal.source.as_str()), ("1", false, "校长每学期在本校听评课不少于30节"));
    let tasks: Vec<&str> = r.tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(tasks, ["甲校骨干教师培养"], "a district-wide task is not in a school's report");
    assert_eq!(r.team, ["李校长", "王视导"], "the evaluation team: authors of counted records");

    let (_, html) = report_html(&w.conn, &user, Lang { en: false }, "s-a", &ReportQuery::default(), TODAY).expect("page");
    assert!(html.contains("已提交视导的优点"));
    for absent in ["草稿里的优点", "被退回的优点", "新增优质学位"] {
        assert!(!html.contains(absent), "the report shows {absent}");
    }
}

#[test]
fn the_report_has_every_section_of_a_signed_report() {
    let mut w = World::new();
    let ins = w.inspector.clone();
    w.record(&ins, "baseline-assessment", "assess_date", "2026-09-05", &[], "submitted");
    w.record(&ins, "inspection-visit", "visit_date", "2026-10-08", &[("problems", "作业批改不及时"), ("suggestions", "建立作业公示制度")], "submitted");
    let user = w.user();
    let r = queries::report(&w.conn, &user, Lang { en: false }, "s-a", None, None, TODAY, NOW).expect("report");
    let b = r.basics.as_ref().expect("the baseline assessment is read");
    assert_eq!(b.indicators.len(), 7, "the seven balanced-development indicators");
    assert!(b.enrolment.is_some() && b.teachers.is_some());
    assert_eq!(r.number, "p-s-a-20260901-20270131");
    assert_eq!(r.experts, ["钱专家"]);

    let (title, html) = report_html(&w.conn, &user, Lang { en: false }, "s-a", &ReportQuery::default(), TODAY).expect("page");
    assert_eq!(title, "甲校 · 一校一报告");
    for text in [
        "一、学校基本情况", "二、工作开展情况", "三、干部培养", "四、教师发展", "五、学生成长", "六、资源配置", "七、课程教学", "八、特色建设",
        "九、主要成效", "十、存在问题", "十一、意见建议", "十二、评估结论", "十三、待落实事项",
        "编号", "评估（视导）时段", "评估组", "测试区强校工程 督导室", "优质均衡资源配置 7 项指标", "学习兴趣度",
        "作业批改不及时", "建立作业公示制度", "项目要求达成情况",
        "评估组组长", "督导室负责人", "公章", "学校签收（校长）", "数据截至", "尚待审核的记录",
        "@page{size:A4", "/records?school=s-a&#38;template=inspection-visit",
    ] {
        assert!(html.contains(text), "the report lacks {text}");
    }
}

#[test]
fn open_actions_are_listed_and_overdue_ones_flagged() {
    let mut w = World::new();
    let ins = w.inspector.clone();
    let r = w.record(&ins, "inspection-visit", "visit_date", "2026-10-08", &[], "submitted");
    let user = w.user();
    let report = queries::report(&w.conn, &user, Lang { en: false }, "s-a", None, None, TODAY, NOW).expect("report");
    let open: i64 = w
        .conn
        .query_row("SELECT COUNT(*) FROM rectifications WHERE record_id = ?1 AND closed = 0 AND item IS NOT NULL", [r.id().as_str()], |x| x.get(0))
        .expect("count");
    let listed = report.actions.iter().filter(|a| a.href.ends_with(r.id().as_str())).count() as i64;
    assert_eq!(listed, open, "every open rectification of the visit is listed");
    for a in &report.actions {
        assert_eq!(a.overdue, !a.due.is_empty() && a.due.as_str() < TODAY, "{a:?}");
    }
}

/// The programme's indicator bank: an indicator a record reports takes the bank's unit and
/// target where the record gives none; one no record reported is still listed; a row the bank
/// does not list is marked; and an indicator records report cannot leave the bank.
#[test]
fn the_indicator_bank_completes_the_report_and_keeps_what_records_use() {
    use shidao_server::programme::rules::{Chapter, IndicatorDef, ReportStructure, Source};
    use shidao_server::programme::store;
    let mut w = World::new();
    let src = |s: &str| Source { document: "《测试区强校工程实施方案》".into(), sentence: s.into() };
    let def = |id: &str, name: &str, unit: &str, target: Option<f64>| IndicatorDef {
        id: id.into(),
        name: name.into(),
        name_en: String::new(),
        chapter: "teacher".into(),
        unit: unit.into(),
        target,
        source: src("力求每一所初中都有25%以上的骨干教师"),
    };
    let mut rules = shidao_server::programme::load(&w.conn, "p").expect("rules");
    rules.report = Some(ReportStructure {
        source: src("从教师发展维度衡量学校发展"),
        chapters: vec![Chapter {
            id: "teacher".into(),
            title: "教师发展".into(),
            title_en: "Teacher development".into(),
            meanings: vec!["evaluation.area.teacher".into()],
            indicators: vec![],
        }],
    });
    rules.indicators = vec![def("backbone", "骨干教师占比", "%", Some(25.0)), def("mean", "中考总分平均分", "分", None)];
    store::save(&w.conn, "p", &rules, "admin", NOW).expect("bank");

    // Bad banks: an unknown chapter, a name twice; nothing changes.
    for (bad, problem) in [
        (vec![IndicatorDef { chapter: "nowhere".into(), ..def("x", "某指标", "", None) }], "not a chapter of the report"),
        (vec![def("a", "同名", "", None), def("b", "同名", "", None)], "in the bank twice"),
    ] {
        let e = store::save(&w.conn, "p", &shidao_server::programme::rules::Rules { indicators: bad, ..rules.clone() }, "admin", NOW).expect_err("refused");
        assert!(e.to_string().contains(problem), "{e}");
        assert_eq!(shidao_server::programme::load(&w.conn, "p").expect("rules"), rules);
    }

    // An evaluation reporting the bank's 骨干教师占比 (no unit, no target) among other rows.
    let ins = w.inspector.clone();
    let t = builtin("supervision-evaluation").expect("template");
    let mut r = Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new("s-a").expect("id") }, editor(&ins), Clock::fixed(NOW)).expect("create");
    fill_completely(&mut r, 1, &mut w.rng).expect("fill");
    r.set_answer(&FieldRef::top("eval_date"), Answer::Date("2026-10-10".into())).expect("date");
    let row = r.add_row("teacher_indicators", None).expect("row");
    r.set_answer(&FieldRef::in_row("teacher_indicator", &row), Answer::Text("骨干教师占比".into())).expect("name");
    r.set_answer(&FieldRef::in_row("teacher_baseline", &row), Answer::Decimal(10.0)).expect("baseline");
    r.set_answer(&FieldRef::in_row("teacher_current", &row), Answer::Decimal(18.0)).expect("current");
    r.set_answer(&FieldRef::in_row("teacher_rating", &row), Answer::Rating(3)).expect("rating");
    r.submit().expect("submit");
    w.push(&ins, &r, &[]);

    let user = w.user();
    let report = queries::report(&w.conn, &user, Lang { en: false }, "s-a", None, None, TODAY, NOW).expect("report");
    let chapter = report.chapters.iter().find(|c| c.title == "教师发展").expect("the chapter");
    let banked = chapter.indicators.iter().find(|i| i.name == "骨干教师占比").expect("the reported bank indicator");
    assert_eq!((banked.unit.as_str(), banked.target, banked.baseline, banked.current, banked.bank), ("%", Some(25.0), Some(10.0), Some(18.0), Some(true)));
    let missing = chapter.indicators.iter().find(|i| i.name == "中考总分平均分").expect("the bank indicator no record reported");
    assert!(missing.unreported() && missing.bank == Some(true));
    assert!(chapter.indicators.iter().any(|i| i.bank == Some(false)), "the sample's own rows are not in the bank: {:?}", chapter.indicators);
    let (_, html) = report_html(&w.conn, &user, Lang { en: false }, "s-a", &ReportQuery::default(), TODAY).expect("page");
    assert!(html.contains("（不在本项目指标库）") && html.contains("（未报告）"));
    let (_, en) = report_html(&w.conn, &user, Lang { en: true }, "s-a", &ReportQuery::default(), TODAY).expect("page");
    assert!(en.contains("Teacher development"), "the chapter's English title");

    // 骨干教师占比 is reported: it cannot leave the bank; 中考总分平均分 is not: it can.
    let without = |name: &str| shidao_server::programme::rules::Rules { indicators: rules.indicators.iter().filter(|i| i.name != name).cloned().collect(), ..rules.clone() };
    let e = store::save(&w.conn, "p", &without("骨干教师占比"), "admin", NOW).expect_err("refused");
    assert!(e.to_string().contains("骨干教师占比") && e.to_string().contains(r.id().as_str()), "{e}");
    assert_eq!(shidao_server::programme::load(&w.conn, "p").expect("rules"), rules);
    store::save(&w.conn, "p", &without("中考总分平均分"), "admin", NOW).expect("an unused indicator leaves the bank");
}
