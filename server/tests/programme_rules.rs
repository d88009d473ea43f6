//! Programme rules as data: the five presets hold exactly what their documents state (each
//! sentence quoted as written), bad rule books are refused naming the rule and field with nothing
//! changed, every change is recorded with who and before/after, expert teams, and the admin page
//! `/admin/programme` (admins edit, supervisors read, CSRF enforced).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rusqlite::Connection;
use shidao_core::template::Role;
use shidao_server::admin::{self, AdminCommand};
use shidao_server::programme::rules::{Per, Rules};
use shidao_server::programme::{presets, store};
use shidao_server::web::auth::{hash_password, sign_in, SignIn};
use shidao_server::{accounts, app, AppState};
use tower::ServiceExt;

const NOW: i64 = 1_790_000_000;

fn db() -> Connection {
    shidao_server::db::open_in_memory().expect("db")
}

fn run(conn: &Connection, args: &[&str]) -> Result<String, String> {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }
    let cli = Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    admin::run(conn, cli.command, NOW).map_err(|e| e.to_string())
}

fn from_preset(conn: &Connection, id: &str, preset: &str) -> String {
    run(conn, &["add-programme", "--id", id, "--name", "项目", "--preset", preset]).expect("add-programme --preset")
}

/// Every row of the tables rules and their consequences live in, to compare before and after.
fn fingerprint(conn: &Connection) -> String {
    let mut out = String::new();
    for table in ["programmes", "programme_rules", "rule_history", "schools", "tasks", "expert_team", "assignments", "users"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).expect("select");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}"))).collect::<Result<Vec<_>, _>>())
            .expect("rows");
        for row in rows {
            out.push_str(&format!("{table}: {}\n", row.expect("row").join("|")));
        }
    }
    out
}

fn seed_text(name: &str) -> Option<String> {
    let file = match name {
        "yangpu" => "000_980c385b94ebcbb8.txt",
        "qingdao" => "001_754e210e3b7e6e8a.txt",
        "yufeng" => "002_929bad6f295bb223.txt",
        "taicang" => "003_82af26369f33b24f.txt",
        "ouhai" => "004_8045811c0acabd4e.txt",
        _ => return None,
    };
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds").join(file)).ok()
}

/// Every sentence a preset cites, with where it is cited.
fn sentences(p: &presets::Preset) -> Vec<(String, String)> {
    let r = &p.rules;
    let mut out: Vec<(String, String)> = Vec::new();
    out.extend(r.categories.iter().map(|c| (format!("category {}", c.name), c.source.sentence.clone())));
    out.extend(r.lesson_quotas.iter().map(|q| (format!("quota {}", q.id), q.source.sentence.clone())));
    out.extend(r.expert_team.iter().map(|t| ("expert_team".to_string(), t.source.sentence.clone())));
    out.extend(r.staffing.iter().map(|s| (format!("staffing {}", s.id), s.source.sentence.clone())));
    out.extend(r.stages.iter().map(|s| (format!("stage {}", s.id), s.source.sentence.clone())));
    out.extend(r.report.iter().map(|s| ("report".to_string(), s.source.sentence.clone())));
    out.extend(r.school_targets.iter().map(|t| (format!("school target {}", t.id), t.source.sentence.clone())));
    out.extend(p.tasks.iter().map(|t| (format!("task {}", t.id), t.source.sentence.clone())));
    out.extend(p.schools.iter().map(|s| (format!("school {}", s.id), s.source.sentence.clone())));
    out
}

#[test]
fn every_preset_loads_validates_and_quotes_its_document_exactly() {
    assert_eq!(presets::names(), ["yangpu", "qingdao", "yufeng", "taicang", "ouhai"]);
    for name in presets::names() {
        let p = presets::preset(name).expect(name);
        p.rules.validate().expect(name);
        assert!(!p.rules.document.is_empty(), "{name} names its document");
        assert!(p.rules.terms.is_empty(), "{name}: no document lists semesters, so no preset has terms");
        let seed = seed_text(name);
        for (what, sentence) in sentences(&p) {
            assert!(!sentence.is_empty(), "{name} {what} has a sentence");
            if let Some(seed) = &seed {
                assert!(seed.contains(&sentence), "{name} {what}: `{sentence}` is not in the document as written");
            }
        }
        for s in &p.schools {
            assert!(p.rules.allows_category(&s.category), "{name} school {} has a category of the preset", s.id);
            if let Some(seed) = &seed {
                assert!(seed.contains(&s.name) && seed.contains(&s.key_project), "{name} school {} as the document lists it", s.id);
            }
        }
    }
}

#[test]
fn a_programme_from_each_preset_has_exactly_the_rules_its_document_states() {
    let c = db();
    for name in presets::names() {
        from_preset(&c, name, name);
    }
    let rules = |p: &str| store::load(&c, p).expect("load");
    let count = |sql: &str, p: &str| c.query_row(sql, [p], |r| r.get::<_, i64>(0)).expect("count");
    let tasks = |p: &str| count("SELECT COUNT(*) FROM tasks WHERE programme_id = ?1", p);
    let schools = |p: &str| count("SELECT COUNT(*) FROM schools WHERE programme_id = ?1", p);

    // 瓯海: the principal's 30 lessons a semester at their own school; a team of at least 3;
    // 25% 骨干; three categories; the three-dimension report; 19 schools; no task time-line band.
    let o = rules("ouhai");
    assert_eq!(o.lesson_quotas.len(), 1);
    let q = &o.lesson_quotas[0];
    assert_eq!((q.role(), q.min, q.per, q.own_school, q.purpose.as_deref()), (Some(Role::Principal), 30.0, Per::Term, true, None));
    assert_eq!(q.source.sentence, "实行校长进课堂制度，每学期在本校听评课不少于30节");
    assert_eq!(o.expert_team.as_ref().and_then(|t| t.min), Some(3.0));
    assert_eq!(o.staffing.iter().map(|s| (s.id.as_str(), s.min_share)).collect::<Vec<_>>(), [("backbone-share", Some(25.0))]);
    assert_eq!(o.category_names(), ["示范", "优质", "潜质"]);
    let chapters: Vec<&str> = o.report.as_ref().expect("report").chapters.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(chapters, ["学生发展", "教师发展", "学校发展"]);
    assert!(o.task_timeline.is_none() && o.expert_activity.is_none());
    assert_eq!((schools("ouhai"), tasks("ouhai")), (19, 4));
    let (cat, project): (String, String) =
        c.query_row("SELECT category, key_project FROM schools WHERE name = '南白象中学'", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("school");
    assert_eq!((cat.as_str(), project.as_str()), ("潜质", "学科分层走班实践研究（与温州二外联盟办学项目）"));

    // 青岛: no principal quota (that 30 comes from another 青岛 document), no per-school team,
    // no staffing, no report structure; its city targets carry no dates and so are not tasks.
    let q = rules("qingdao");
    assert!(q.lesson_quotas.is_empty() && q.expert_team.is_none() && q.staffing.is_empty() && q.report.is_none() && q.task_timeline.is_none());
    assert_eq!(q.category_names(), ["市级初中实验学校", "省级强镇筑基试点乡镇驻地初中学校"]);
    assert_eq!(tasks("qingdao"), 0);
    assert_eq!(presets::preset("qingdao").expect("preset").tasks.len(), 4);

    // 杨浦: a team of at least 3; 1 名市级名校长, 2 名名师, 种子团队; its stages; no quota, no report.
    let y = rules("yangpu");
    assert_eq!(y.expert_team.as_ref().and_then(|t| t.min), Some(3.0));
    assert_eq!(y.expert_team.as_ref().expect("team").source.sentence, "为每所“实验校”配备不少于3名指导专家");
    let staffing: Vec<(&str, Option<f64>)> = y.staffing.iter().map(|s| (s.id.as_str(), s.min_count)).collect();
    assert_eq!(staffing, [("city-principal", Some(1.0)), ("famous-teachers", Some(2.0)), ("seed-team", Some(1.0))]);
    assert_eq!(y.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["initial", "special", "midterm", "final", "support-effect"]);
    assert!(y.lesson_quotas.is_empty() && y.report.is_none());
    assert_eq!(y.category_names(), ["实验校", "支援校"]);

    // 鱼峰: experts assigned with no number; its six areas; the whole task list, the four targets
    // stated only in the body included, and the per-school titles as school targets.
    let f = rules("yufeng");
    assert_eq!(f.expert_team.as_ref().map(|t| t.min), Some(None));
    assert!(f.lesson_quotas.is_empty() && f.staffing.is_empty());
    let areas: Vec<&str> = f.report.as_ref().expect("report").chapters.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(areas, ["干部培养", "教师发展", "学生成长", "资源配置", "课程教学", "特色建设"]);
    assert_eq!(tasks("yufeng"), 18);
    for (title, target) in [("培育初中名校长", 3.0), ("评选优秀城区级教研骨干", 30.0), ("信息化实验校", 4.0), ("同步课堂全区铺开", 1.0), ("新增优质学位", 2400.0)] {
        let t: f64 = c.query_row("SELECT target FROM tasks WHERE programme_id = 'yufeng' AND title = ?1", [title], |r| r.get(0)).expect(title);
        assert_eq!(t, target, "{title}");
    }
    let source: String = c.query_row("SELECT source FROM tasks WHERE title = '培育初中名校长'", [], |r| r.get(0)).expect("source");
    assert_eq!(source, "3年内，培育出不少于3名初中名校长、10名初中名师、10名初中名班主任");
    assert_eq!(f.school_targets.len(), 4);
    accounts::add_school(&c, "yufeng", "yf-01", "鱼峰区第一初中", "创建校", "").expect("school");
    assert_eq!(count("SELECT COUNT(*) FROM tasks WHERE school_id = ?1", "yf-01"), 4, "a school gets the school targets as its tasks");
    let e = accounts::add_school(&c, "yufeng", "yf-02", "鱼峰区第二初中", "示范", "").expect_err("瓯海's category in 鱼峰");
    assert!(e.to_string().contains("not one of programme yufeng's categories (创建校)"), "{e}");

    // 太仓: the three dimensions of 综合考核; nothing on lessons, teams or staffing.
    let t = rules("taicang");
    let dims: Vec<&str> = t.report.as_ref().expect("report").chapters.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(dims, ["學校規劃與執行", "教師教學實踐與專業引領", "學生學習生態優化成效"]);
    assert!(t.lesson_quotas.is_empty() && t.expert_team.is_none() && t.staffing.is_empty());
}

#[test]
fn bad_rule_books_are_refused_naming_rule_and_field_and_change_nothing() {
    let c = db();
    from_preset(&c, "oh", "ouhai");
    run(&c, &["add-term", "--programme", "oh", "--name", "2025学年第一学期", "--start", "2025-09-01", "--end", "2026-01-31"]).expect("term");
    let before = fingerprint(&c);
    let good = store::load(&c, "oh").expect("rules");
    let refused = |book: &Rules, says: &[&str]| {
        let e = store::save(&c, "oh", book, "test", NOW).expect_err("refused").to_string();
        for s in says {
            assert!(e.contains(s), "`{e}` should say `{s}`");
        }
        assert_eq!(fingerprint(&c), before, "nothing changed after: {e}");
    };
    let mut b = good.clone();
    b.lesson_quotas[0].min = -30.0;
    refused(&b, &["lesson_quotas[principal-lessons]", "field min", "at least 0"]);
    let mut b = good.clone();
    b.lesson_quotas[0].role = "janitor".into();
    refused(&b, &["lesson_quotas[principal-lessons]", "field role", "unknown role `janitor`"]);
    let mut b = good.clone();
    b.terms.push(shidao_server::programme::rules::Term { id: "t2".into(), name: "重叠".into(), start: "2026-01-15".into(), end: "2026-06-30".into() });
    refused(&b, &["terms[t2]", "field start", "overlaps term term-2025-09-01"]);
    let mut b = good.clone();
    b.report.as_mut().expect("report").chapters[0].meanings.push("evaluation.area.happiness".into());
    refused(&b, &["report.chapters[student]", "field meanings", "unknown meaning `evaluation.area.happiness`"]);
    let mut b = good.clone();
    b.stages[1].id = b.stages[0].id.clone();
    refused(&b, &["stages[initial]", "field id", "used twice"]);
    let mut b = good.clone();
    b.lesson_quotas[0].source.sentence.clear();
    refused(&b, &["field source.sentence"]);
    // A category a school still has cannot be removed.
    let mut b = good.clone();
    b.categories.retain(|c| c.name != "潜质");
    refused(&b, &["rule categories", "has the category `潜质`"]);

    // Through the admin commands: a file with an unknown field, a rule set to nonsense, an
    // unknown preset, an overlapping term.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.json");
    std::fs::write(&file, r#"{"document": "x", "quotas": []}"#).expect("write");
    let e = run(&c, &["set-rules", "--programme", "oh", file.to_str().expect("path")]).expect_err("unknown field");
    assert!(e.contains("unknown field `quotas`") && e.contains("line 1"), "{e}");
    let e = run(&c, &["set-rule", "--programme", "oh", "--rule", "expert_team", r#"{"min": -3, "source": {"document": "d", "sentence": "s"}}"#]).expect_err("negative");
    assert!(e.contains("rule expert_team, field min"), "{e}");
    let e = run(&c, &["set-rule", "--programme", "oh", "--rule", "quota", "[]"]).expect_err("unknown rule");
    assert!(e.contains("unknown rule `quota`"), "{e}");
    let e = run(&c, &["add-programme", "--id", "new", "--name", "新", "--preset", "wenzhou"]).expect_err("unknown preset");
    assert!(e.contains("unknown preset `wenzhou` (one of yangpu, qingdao, yufeng, taicang, ouhai)"), "{e}");
    let e = run(&c, &["add-term", "--programme", "oh", "--name", "重叠", "--start", "2026-01-31", "--end", "2026-06-30"]).expect_err("overlap");
    assert!(e.contains("overlaps"), "{e}");
    let e = run(&c, &["add-school", "--programme", "oh", "--id", "x-1", "--name", "某校", "--category", "一流"]).expect_err("category");
    assert!(e.contains("`一流` is not one of programme oh's categories (示范, 优质, 潜质)"), "{e}");
    assert_eq!(fingerprint(&c), before, "no refused command changed anything");
}

#[test]
fn every_change_is_recorded_with_who_before_and_after() {
    let c = db();
    from_preset(&c, "oh", "ouhai");
    let n_before = store::history(&c, "oh").expect("history").len();
    run(&c, &["set-rule", "--programme", "oh", "--rule", "expert_team", r#"{"min": 4, "source": {"document": "《瓯海区初中全面提升行动计划》", "sentence": "为每所初中配备不少于3名的指导专家，形成“一校一团队”"}}"#])
        .expect("set");
    let h = store::history(&c, "oh").expect("history");
    assert_eq!(h.len(), n_before + 1, "one rule changed, one entry");
    let last = &h[0];
    assert_eq!((last.rule.as_str(), last.by.as_str(), last.at), ("expert_team", "admin (console)", NOW));
    assert!(last.before.as_deref().is_some_and(|b| b.contains("\"min\":3.0")), "{last:?}");
    assert!(last.after.as_deref().is_some_and(|a| a.contains("\"min\":4.0")), "{last:?}");
    // Setting the same again records nothing; removing records before and an absent after.
    let n = h.len();
    run(&c, &["set-rule", "--programme", "oh", "--rule", "expert_team", "null"]).expect("remove");
    let h = store::history(&c, "oh").expect("history");
    assert_eq!((h.len(), h[0].after.is_none()), (n + 1, true));
    let listed = run(&c, &["rules-history", "--programme", "oh"]).expect("history");
    assert!(listed.lines().nth(1).is_some_and(|l| l.contains("expert_team") && l.ends_with("(absent)")), "{listed}");
    // What `rules --json` prints, `set-rules` reads back unchanged.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("book.json");
    std::fs::write(&file, run(&c, &["rules", "--programme", "oh", "--json"]).expect("json")).expect("write");
    let said = run(&c, &["set-rules", "--programme", "oh", file.to_str().expect("path")]).expect("set-rules");
    assert!(said.ends_with("0 rule(s) changed"), "{said}");
    let shown = run(&c, &["rules", "--programme", "oh"]).expect("rules");
    assert!(shown.contains("expert_team\t未规定"), "{shown}");
    assert!(shown.contains("校长每学期听评课 ≥ 30 节（每人），在本校\t「实行校长进课堂制度，每学期在本校听评课不少于30节」《瓯海区初中全面提升行动计划》"), "{shown}");
}

#[test]
fn expert_teams_are_assigned_experts_only_and_recorded() {
    let c = db();
    from_preset(&c, "oh", "ouhai");
    for (id, role) in [("e1", Role::Expert), ("e2", Role::Expert), ("i1", Role::Inspector)] {
        accounts::add_user(&c, id, id, role, Some("oh"), &[], None, 0).expect("user");
    }
    run(&c, &["assign-expert", "--school", "ouhai-01", "--user", "e1"]).expect("assign");
    run(&c, &["assign-expert", "--school", "ouhai-01", "--user", "e2"]).expect("assign");
    assert_eq!(store::expert_team(&c, "ouhai-01").expect("team"), ["e1", "e2"]);
    let scope = accounts::scope(&c, "e1", Role::Expert, Some("oh")).expect("scope");
    assert!(scope.contains("ouhai-01"), "an assigned expert may record at the school");
    let before = fingerprint(&c);
    let e = run(&c, &["assign-expert", "--school", "ouhai-01", "--user", "i1"]).expect_err("not an expert");
    assert!(e.contains("is a inspector, not an expert"), "{e}");
    let e = run(&c, &["unassign-expert", "--school", "ouhai-02", "--user", "e1"]).expect_err("not on it");
    assert!(e.contains("not on the expert team of school ouhai-02"), "{e}");
    assert_eq!(fingerprint(&c), before);
    run(&c, &["unassign-expert", "--school", "ouhai-01", "--user", "e2"]).expect("unassign");
    assert_eq!(store::expert_team(&c, "ouhai-01").expect("team"), ["e1"]);
    let h = store::history(&c, "oh").expect("history");
    assert_eq!(h[0].rule, "expert_team.members");
    assert_eq!(h[0].before.as_deref(), Some(r#"{"experts":["e1","e2"],"school":"ouhai-01"}"#));
    assert_eq!(h[0].after.as_deref(), Some(r#"{"experts":["e1"],"school":"ouhai-01"}"#));
}

#[test]
fn a_store_from_before_rule_books_keeps_its_categories_and_term() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    {
        let c = shidao_server::db::open(&path).expect("create");
        // Back to a version 5 store with a programme and a school of the old fixed categories.
        c.execute_batch(
            "DROP TABLE ratings; DROP INDEX records_counted; DROP INDEX records_author; ALTER TABLE devices DROP COLUMN app;
             DROP TABLE audit_log; DROP TABLE programme_rules; DROP TABLE rule_history; DROP TABLE expert_team; ALTER TABLE tasks DROP COLUMN source;
             ALTER TABLE answers ADD COLUMN device TEXT;
             INSERT INTO programmes (id, name, term_start, term_end) VALUES ('old', '旧项目', '2026-09-01', '2027-01-31');
             INSERT INTO schools (id, programme_id, name, category) VALUES ('s1', 'old', '一校', '潜质');
             PRAGMA user_version = 5;",
        )
        .expect("v5");
    }
    let c = shidao_server::db::open(&path).expect("upgrade");
    let r = store::load(&c, "old").expect("rules");
    assert_eq!(r.category_names(), ["示范", "优质", "潜质"]);
    assert_eq!(r.terms.len(), 1);
    assert_eq!((r.terms[0].start.as_str(), r.terms[0].end.as_str()), ("2026-09-01", "2027-01-31"));
    r.validate().expect("a valid book");
    accounts::add_school(&c, "old", "s2", "二校", "优质", "").expect("old category still allowed");
}

// ---- the admin page ----

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let state = AppState::open(&dir.path().join("central.db")).expect("store");
        state.with_db(|c| {
            from_preset(c, "oh", "ouhai");
            let hash = hash_password("correct-horse").expect("hash");
            accounts::add_user(c, "adm", "管理员", Role::Admin, Some("oh"), &[], Some(&hash), 0).expect("admin");
            accounts::add_user(c, "sup", "督导", Role::Supervisor, Some("oh"), &[], Some(&hash), 0).expect("supervisor");
            accounts::add_user(c, "e1", "专家甲", Role::Expert, Some("oh"), &[], None, 0).expect("expert");
        });
        World { state, _dir: dir }
    }

    fn session(&self, user: &str) -> (String, String) {
        let now = shidao_core::Clock::system().now();
        self.state.with_db(|c| {
            let SignIn::Session(id) = sign_in(c, user, "correct-horse", "127.0.0.1", now).expect("sign in") else { panic!("no session for {user}") };
            let csrf: String =
                c.query_row("SELECT csrf FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC LIMIT 1", [user], |r| r.get(0)).expect("csrf");
            (format!("shidao_session={id}"), csrf)
        })
    }

    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone()).oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        Answer { status, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, cookie: &str, path: &str) -> Answer {
        self.call(Request::get(path).header("cookie", cookie).body(Body::empty()).expect("request")).await
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form.iter().map(|(k, v)| format!("{k}={}", shidao_server::web::page::url(v))).collect::<Vec<_>>().join("&");
        let req = Request::post(path)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.call(req).await
    }

    fn fingerprint(&self) -> String {
        self.state.with_db(fingerprint)
    }
}

const TEAM_OF_FOUR: &str = r#"{"min": 4, "source": {"document": "《瓯海区初中全面提升行动计划》", "sentence": "为每所初中配备不少于3名的指导专家，形成“一校一团队”"}}"#;

#[tokio::test]
async fn the_rules_page_shows_sources_admins_edit_and_supervisors_only_read() {
    let w = World::new();
    let (admin, admin_csrf) = w.session("adm");
    let (sup, sup_csrf) = w.session("sup");

    let page = w.get(&sup, "/admin/programme").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("实行校长进课堂制度，每学期在本校听评课不少于30节"), "the sentence beside its figure");
    assert!(page.body.contains("校长每学期听评课 ≥ 30 节"), "the figure");
    assert!(page.body.contains("id=\"read-only\"") && !page.body.contains("action=\"/admin/programme/rule\""), "a supervisor gets no edit form");
    let page = w.get(&admin, "/admin/programme").await;
    assert!(page.body.contains("action=\"/admin/programme/rule\"") && page.body.contains(&admin_csrf), "an admin gets the forms with the token");

    // A supervisor's change is refused (with a good token) and nothing changes.
    let before = w.fingerprint();
    let r = w.post(&sup, "/admin/programme/rule", &[("csrf", &sup_csrf), ("rule", "expert_team"), ("value", TEAM_OF_FOUR)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.post(&sup, "/admin/programme/team", &[("csrf", &sup_csrf), ("school", "ouhai-01"), ("user", "e1"), ("action", "assign")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // An admin's change without the session's token is refused.
    let r = w.post(&admin, "/admin/programme/rule", &[("csrf", "forged"), ("rule", "expert_team"), ("value", TEAM_OF_FOUR)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.post(&admin, "/admin/programme/term", &[("rule", "x"), ("name", "学期"), ("start", "2025-09-01"), ("end", "2026-01-31")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A bad rule from an admin is refused naming the rule and field.
    let r = w.post(&admin, "/admin/programme/rule", &[("csrf", &admin_csrf), ("rule", "lesson_quotas"), ("value", r#"[{"id": "p", "role": "principal", "min": -1, "per": "term", "source": {"document": "d", "sentence": "s"}}]"#)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("rule lesson_quotas[p], field min"), "{}", r.body);
    assert_eq!(w.fingerprint(), before, "nothing refused changed anything");

    // The admin's changes go through and show in the history with who.
    let r = w.post(&admin, "/admin/programme/rule", &[("csrf", &admin_csrf), ("rule", "expert_team"), ("value", TEAM_OF_FOUR)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = w.post(&admin, "/admin/programme/term", &[("csrf", &admin_csrf), ("name", "2025学年第一学期"), ("start", "2025-09-01"), ("end", "2026-01-31")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = w.post(&admin, "/admin/programme/team", &[("csrf", &admin_csrf), ("school", "ouhai-01"), ("user", "e1"), ("action", "assign")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let rules = w.state.with_db(|c| store::load(c, "oh")).expect("rules");
    assert_eq!(rules.expert_team.and_then(|t| t.min), Some(4.0));
    assert_eq!(rules.terms.len(), 1);
    let page = w.get(&sup, "/admin/programme").await;
    assert!(page.body.contains("每校配备指导专家 ≥ 4 名"), "the new figure");
    assert!(page.body.contains("<td>adm</td><td><code>expert_team.members</code>"), "who changed the team");
    assert!(page.body.contains("<td>adm</td><td><code>expert_team</code>"), "who changed the rule");
    // Text from the rule book is escaped.
    let r = w.post(&admin, "/admin/programme/rule", &[("csrf", &admin_csrf), ("rule", "document"), ("value", r#""<script>alert(1)</script>""#)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = w.get(&sup, "/admin/programme").await;
    assert!(!page.body.contains("<script>alert(1)"), "escaped");
    assert!(page.body.contains("&lt;script&gt;alert(1)") || page.body.contains("&#60;script&#62;alert(1)"), "shown as text: {}", &page.body[page.body.find("document").unwrap_or(0)..][..300]);
}
