//! Counting a supervisor can defend, with records that tablets fill and sync through the real
//! protocol (`/v1/sync` on loopback): drafts and returned records do not count; two principal
//! accounts of one school are two people; a lesson of another purpose does not count toward a
//! quota that names one; a district-wide target is never shown against one school. Then, for
//! each of the five presets, a programme created from it and the dashboard's flags: exactly
//! that programme's rules (青岛 and 太仓 state none; 瓯海 flags 29 校长 lessons and not 30).

use std::collections::BTreeSet;

use rusqlite::Connection;
use shidao_core::record::{Answer, Record};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::Store;
use shidao_core::sync::enrolment::Enrolment;
use shidao_core::sync::http::{Cancel, HttpSync};
use shidao_core::template::Role;
use shidao_core::{Editor, FieldRef, SchoolId};
use shidao_server::programme::compliance::{self, Check};
use shidao_server::programme::{presets, rules, store};
use shidao_server::web::{auth::WebUser, dashboard_html, Lang};
use shidao_server::{accounts, serve, AppState};

struct World {
    state: AppState,
    http: HttpSync,
    _dir: tempfile::TempDir,
    rng: Rng,
}

struct Tablet {
    store: Store,
    enrolment: Enrolment,
    editor: Editor,
}

fn day(today: &str, offset: i64) -> String {
    shidao_core::date::format_date(shidao_core::date::parse_date(today).expect("date") + offset)
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let state = AppState::open(&dir.path().join("central.db")).expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(serve(listener, state.clone(), std::future::pending()));
        World { state, http: HttpSync::new(&base, None).expect("client"), _dir: dir, rng: Rng::new(11) }
    }

    fn today(&self) -> String {
        self.state.clock.today()
    }

    /// A programme from a preset, with one term around today.
    fn programme(&self, id: &str, preset: &str) {
        let today = self.today();
        let now = self.state.clock.now();
        self.state.with_db(|c| {
            presets::apply(c, id, &format!("{id} 项目"), preset, "admin", now).expect("preset");
            let term = rules::Term { id: "t1".into(), name: "本学期".into(), start: day(&today, -60), end: day(&today, 60) };
            store::add_term(c, id, term, "admin", now).expect("term");
        });
    }

    fn school(&self, programme: &str, id: &str, category: &str) {
        self.state.with_db(|c| accounts::add_school(c, programme, id, id, category, "").expect("school"));
    }

    async fn person(&self, programme: &str, id: &str, role: Role, school: Option<&str>) -> Tablet {
        let now = self.state.clock.now();
        let schools: Vec<String> = school.map(|s| vec![s.to_string()]).unwrap_or_default();
        let code = self.state.with_db(|c| {
            accounts::add_user(c, id, id, role, Some(programme), &schools, None, now).expect("user");
            accounts::new_enrol_code(c, id, now).expect("code")
        });
        let store = Store::open_in_memory().expect("store");
        let enrolment = Enrolment::enrol(&self.http, &store, &code, "平板", None).await.expect("enrol");
        assert_eq!(enrolment.editor.role, role);
        Tablet { editor: enrolment.editor.clone(), store, enrolment }
    }

    async fn sync(&self, t: &Tablet) {
        t.enrolment.sync(&self.http, &t.store, &Cancel::new(), |_, _| {}).await.expect("sync");
    }

    /// `n` lessons by `t` at `school` today with `purpose`, submitted or left a draft; synced.
    async fn lessons(&mut self, t: &Tablet, school: &str, purpose: &str, n: usize, submit: bool) -> Vec<Record> {
        let today = self.today();
        let mut out = Vec::new();
        for _ in 0..n {
            let mut r = t.store.create("classroom-observation", &SchoolId::new(school).expect("id"), &t.editor).expect("create");
            let rng = &mut self.rng;
            t.store.edit(&mut r, |r| fill_completely(r, 1, rng)).expect("fill");
            t.store
                .edit(&mut r, |r| {
                    r.set_answer(&FieldRef::top("lesson_date"), Answer::Date(today.clone()))?;
                    r.set_answer(&FieldRef::top("purpose"), Answer::Choice(purpose.into()))
                })
                .expect("edit");
            if submit {
                r.submit().expect("submit");
                t.store.save(&mut r).expect("save");
            }
            out.push(r);
        }
        self.sync(t).await;
        out
    }

    fn assign(&self, school: &str, expert: &str) {
        let now = self.state.clock.now();
        self.state.with_db(|c| store::assign_expert(c, school, expert, "admin", now).expect("assign"));
    }

    fn checks(&self, programme: &str, school: &str) -> Vec<Check> {
        let today = self.today();
        self.state.with_db(|c| {
            let rules = shidao_server::programme::load(c, programme).expect("rules");
            let term = compliance::current_term(&rules, &today).cloned();
            compliance::compliance(c, &rules, school, term.as_ref(), &today).expect("compliance")
        })
    }

    /// The failed checks of every school of a programme: (school, rule, person).
    fn flags(&self, programme: &str) -> BTreeSet<(String, String, String)> {
        let schools: Vec<String> = self.state.with_db(|c| {
            let mut s = c.prepare("SELECT id FROM schools WHERE programme_id = ?1 ORDER BY id").expect("q");
            s.query_map([programme], |r| r.get(0)).expect("rows").collect::<Result<_, _>>().expect("rows")
        });
        let mut out = BTreeSet::new();
        for s in schools {
            for c in self.checks(programme, &s).into_iter().filter(Check::failed) {
                out.insert((s.clone(), c.rule, c.person.map(|p| p.0).unwrap_or_default()));
            }
        }
        out
    }

    fn dashboard(&self, programme: &str) -> String {
        let today = self.today();
        let user = WebUser { id: "duban".into(), name: "督导".into(), role: Role::Supervisor, programme: Some(programme.into()), csrf: "x".into() };
        self.state.with_db(|c| dashboard_html(c, &user, Lang { en: false }, &today).expect("dashboard"))
    }
}

fn flagged_card(html: &str) -> usize {
    let key = "id=\"flagged\">";
    let at = html.find(key).expect("flagged card") + key.len();
    html[at..].split('<').next().expect("n").parse().expect("number")
}

fn figure(checks: &[Check], rule: &str, person: &str) -> Option<f64> {
    checks.iter().find(|c| c.rule == rule && c.person.as_ref().is_some_and(|p| p.0 == person)).and_then(|c| c.figure)
}

fn set(c: &Connection, programme: &str, rule: &str, value: serde_json::Value) {
    store::set_rule(c, programme, rule, value, "admin", 0).expect("set rule");
}

#[tokio::test]
async fn only_counted_records_per_person_and_by_purpose() {
    let mut w = World::new().await;
    w.programme("oh", "ouhai");
    // A quota that names the purpose 校长听评课, small enough to fill quickly.
    w.state.with_db(|c| {
        let rules = shidao_server::programme::load(c, "oh").expect("rules");
        let mut q = serde_json::to_value(&rules.lesson_quotas).expect("json");
        q[0]["min"] = 3.into();
        q[0]["purpose"] = "principal".into();
        set(c, "oh", "lesson_quotas", q);
    });
    let sup = w.person("oh", "duban", Role::Supervisor, None).await;
    // School 01: one principal; 2 submitted, 1 draft, 1 returned, 1 approved → 3 count.
    let p1 = w.person("oh", "head-a", Role::Principal, Some("ouhai-01")).await;
    let submitted = w.lessons(&p1, "ouhai-01", "principal", 4, true).await;
    w.lessons(&p1, "ouhai-01", "principal", 1, false).await;
    w.sync(&sup).await;
    let mut returned = sup.store.load(submitted[0].id(), &sup.editor).expect("load");
    returned.return_for_correction("请补充证据").expect("return");
    sup.store.save(&mut returned).expect("save");
    let mut approved = sup.store.load(submitted[1].id(), &sup.editor).expect("load");
    approved.approve(Some("同意")).expect("approve");
    sup.store.save(&mut approved).expect("save");
    w.sync(&sup).await;
    let checks = w.checks("oh", "ouhai-01");
    assert_eq!(figure(&checks, "lesson_quotas.principal-lessons", "head-a"), Some(3.0), "2 submitted + 1 approved; the draft and the returned one do not count");
    assert!(checks.iter().all(|c| !c.rule.starts_with("lesson_quotas") || c.met));

    // School 02: two principal accounts are two people, each against the quota (never 3 + 1 = 4).
    let p2a = w.person("oh", "head-b1", Role::Principal, Some("ouhai-02")).await;
    let p2b = w.person("oh", "head-b2", Role::Principal, Some("ouhai-02")).await;
    w.lessons(&p2a, "ouhai-02", "principal", 3, true).await;
    w.lessons(&p2b, "ouhai-02", "principal", 1, true).await;
    let checks = w.checks("oh", "ouhai-02");
    let quota: Vec<&Check> = checks.iter().filter(|c| c.rule == "lesson_quotas.principal-lessons").collect();
    assert_eq!(quota.len(), 2, "one check per principal");
    assert_eq!(figure(&checks, "lesson_quotas.principal-lessons", "head-b1"), Some(3.0));
    assert_eq!(figure(&checks, "lesson_quotas.principal-lessons", "head-b2"), Some(1.0));
    assert!(quota.iter().any(|c| c.failed()) && quota.iter().any(|c| c.met));

    // School 03: lessons of another purpose (routine observation) do not count toward it.
    let p3 = w.person("oh", "head-c", Role::Principal, Some("ouhai-03")).await;
    w.lessons(&p3, "ouhai-03", "principal", 2, true).await;
    w.lessons(&p3, "ouhai-03", "routine", 2, true).await;
    let checks = w.checks("oh", "ouhai-03");
    assert_eq!(figure(&checks, "lesson_quotas.principal-lessons", "head-c"), Some(2.0));
    let failed = checks.iter().find(|c| c.rule == "lesson_quotas.principal-lessons").expect("check");
    assert!(failed.failed() && failed.source.sentence.contains("每学期在本校听评课不少于30节"), "{:?}", failed.source);
    // The records behind the figure are exactly the counted ones.
    let behind = w.state.with_db(|c| {
        let rules = shidao_server::programme::load(c, "oh").expect("rules");
        compliance::behind(c, &rules, "ouhai-03", &failed.rule, Some("head-c"), compliance::current_term(&rules, &w.today())).expect("behind")
    });
    assert_eq!(behind.len(), 2);

    // A district-wide target is listed on the dashboard against the district and never in one
    // school's targets.
    let today = w.today();
    w.state.with_db(|c| {
        accounts::add_task(c, "oh", None, "district-1", "新增优质学位", 2400.0, "个", &day(&today, -100), &day(&today, 300)).expect("task");
        accounts::add_task(c, "oh", Some("ouhai-01"), "school-1", "本校课例", 10.0, "节", &day(&today, -100), &day(&today, 300)).expect("task");
        let rules = shidao_server::programme::load(c, "oh").expect("rules");
        let school = compliance::tasks(c, "oh", &rules, Some("ouhai-01"), &today).expect("tasks");
        assert_eq!(school.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec!["school-1"]);
        let district = compliance::tasks(c, "oh", &rules, None, &today).expect("tasks");
        assert!(district.iter().any(|t| t.id == "district-1") && !district.iter().any(|t| t.id == "school-1"));
    });
    let html = w.dashboard("oh");
    assert!(html.contains("新增优质学位") && !html.contains("本校课例"), "the dashboard lists district-wide targets only");
}

#[tokio::test]
async fn ouhai_flags_29_lessons_and_not_30_and_its_team_and_backbone_rules() {
    let mut w = World::new().await;
    w.programme("ouhai", "ouhai");
    let schools = ["ouhai-01", "ouhai-02"];
    let heads = [w.person("ouhai", "head-01", Role::Principal, Some(schools[0])).await, w.person("ouhai", "head-02", Role::Principal, Some(schools[1])).await];
    w.lessons(&heads[0], schools[0], "principal", 29, true).await;
    w.lessons(&heads[1], schools[1], "principal", 30, true).await;
    for (s, n) in [(schools[0], 3), (schools[1], 2)] {
        for e in 0..n {
            let id = format!("exp-{s}-{e}");
            w.person("ouhai", &id, Role::Expert, Some(s)).await;
            w.assign(s, &id);
        }
    }
    let flags = w.flags("ouhai");
    let of = |s: &str| flags.iter().filter(|f| f.0 == s).map(|f| f.1.as_str()).collect::<Vec<_>>();
    assert_eq!(of("ouhai-01"), vec!["lesson_quotas.principal-lessons"], "29 lessons: flagged; a team of 3: not");
    assert_eq!(of("ouhai-02"), vec!["expert_team"], "30 lessons: not flagged; a team of 2: flagged");
    // The other 17 schools: no principal account (flagged, nobody to count) and no team.
    assert!(of("ouhai-05").contains(&"expert_team"));
    // No baseline yet: the backbone share cannot be judged, and is not a flag.
    assert!(!flags.iter().any(|f| f.1.starts_with("staffing")));
    let html = w.dashboard("ouhai");
    for text in ["示范", "优质", "潜质", "（≥30）", "（≥3）", "（≥25%）", "每学期在本校听评课不少于30节", "为每所初中配备不少于3名的指导专家"] {
        assert!(html.contains(text), "the ouhai dashboard lacks {text}");
    }
    assert!(!html.contains("本月在岗专家"), "no monthly expert count");
    assert_eq!(flagged_card(&html), 19, "every school is short of one rule here");
}

#[tokio::test]
async fn qingdao_and_taicang_state_no_quota_and_flag_nothing() {
    let mut w = World::new().await;
    for (p, cat) in [("qingdao", "市级初中实验学校"), ("taicang", "重點培養實驗校")] {
        w.programme(p, p);
        let school = format!("{p}-01");
        w.school(p, &school, cat);
        let head = w.person(p, &format!("head-{p}"), Role::Principal, Some(&school)).await;
        w.lessons(&head, &school, "principal", 2, true).await;
        assert!(w.flags(p).is_empty(), "{p} states no rule that could flag");
        let html = w.dashboard(p);
        assert!(!html.contains("听评课（"), "{p}: no principal-quota column at all");
        assert!(!html.contains("配备指导专家（"), "{p}: no expert-team column");
        assert!(html.contains(cat), "{p}: grouped by its own category");
        assert_eq!(flagged_card(&html), 0);
    }
}

#[tokio::test]
async fn yufeng_flags_a_school_with_no_expert_and_yangpu_a_team_under_three() {
    let w = World::new().await;
    w.programme("yufeng", "yufeng");
    w.programme("yangpu", "yangpu");
    for s in ["yf-01", "yf-02"] {
        w.school("yufeng", s, "创建校");
    }
    w.person("yufeng", "exp-yf", Role::Expert, Some("yf-01")).await;
    w.assign("yf-01", "exp-yf");
    // 鱼峰 "为每所创建校配备指导专家": no number, so one expert meets it and none fails it.
    let flags: Vec<(String, String)> = w.flags("yufeng").into_iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(flags, vec![("yf-02".to_string(), "expert_team".to_string())]);
    let html = w.dashboard("yufeng");
    assert!(html.contains("创建校") && html.contains("为每所创建校配备指导专家"));
    assert!(!html.contains("听评课（"), "鱼峰 states no lesson quota");
    assert!(html.contains("新增优质学位"), "鱼峰's district-wide targets on its dashboard");

    // 杨浦: ≥3 experts; its staffing minima are recorded on no form: shown, never flagged.
    w.school("yangpu", "yp-02", "实验校");
    w.school("yangpu", "yp-03", "实验校");
    for e in 0..3 {
        let id = format!("exp-yp-{e}");
        w.person("yangpu", &id, Role::Expert, Some(if e < 2 { "yp-02" } else { "yp-03" })).await;
    }
    w.assign("yp-02", "exp-yp-0");
    w.assign("yp-02", "exp-yp-1");
    let flags = w.flags("yangpu");
    assert!(flags.contains(&("yp-02".into(), "expert_team".into(), String::new())), "{flags:?}");
    assert!(flags.iter().all(|f| f.1 == "expert_team"), "only the team rule can flag in 杨浦: {flags:?}");
    let html = w.dashboard("yangpu");
    assert!(html.contains("（≥3）") && html.contains("实验校") && !html.contains("听评课（"));
}
