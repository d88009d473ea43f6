//! Scenario: a programme publishes its own lesson evaluation form on a real relay; tablets receive
//! it on sync, fill it, merge each other's work; a second version adds a field while old records
//! keep theirs; an incompatible version is refused naming the field; a form the relay does not
//! have is refused; a retired version takes no new records.

use std::path::Path;
use std::process::Command;

use shidao_core::record::Answer;
use shidao_core::store::RecordFilter;
use shidao_core::sync::SyncClient;
use shidao_core::FieldRef;
use shidao_tests::{programme, school, Relay, Tablet};

const FORM: &str = "tingke-pingjia";

fn admin(db: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["--db", &db.display().to_string(), "admin"])
        .args(args)
        .output()
        .expect("run admin");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// The committed v1 definition, changed by `edit`, written to `dir/name`.
fn version_file(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let v1 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/forms/tingke-pingjia-v1.json")).expect("form file");
    let mut json: serde_json::Value = serde_json::from_str(&v1).expect("json");
    edit(&mut json);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    path.display().to_string()
}

fn fields(json: &mut serde_json::Value, section: usize) -> &mut Vec<serde_json::Value> {
    json["sections"][section]["fields"].as_array_mut().expect("fields")
}

fn fill_v1(record: &mut shidao_core::Record, teacher: &str) {
    let set = |r: &mut shidao_core::Record, f: &str, a: Answer| r.set_answer(&FieldRef::top(f), a).unwrap_or_else(|e| panic!("{f}: {e}"));
    set(record, "lesson_date", Answer::Date("2026-11-20".into()));
    set(record, "teacher", Answer::Text(teacher.into()));
    set(record, "subject", Answer::Choice("maths".into()));
    set(record, "students", Answer::Integer(42));
    set(record, "r_goal", Answer::Rating(4));
    set(record, "r_participation", Answer::Rating(3));
}

/// A supervisor signed in to the relay's pages: a client and the cookies of the session.
struct Web {
    http: reqwest::Client,
    cookies: String,
}

impl Web {
    async fn get(&self, url: String) -> reqwest::Response {
        self.http.get(url).header("cookie", &self.cookies).send().await.expect("get")
    }
}

fn cookies_of(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|s| s.split(';').next().map(str::to_string))
        .collect()
}

async fn signed_in(base: &str, user: &str, password: &str) -> Web {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let page = http.get(format!("{base}/login")).send().await.expect("login page");
    let mut cookies = cookies_of(&page);
    let form = page.text().await.expect("body");
    let key = "name=\"csrf\" value=\"";
    let at = form.find(key).expect("csrf field") + key.len();
    let csrf = form[at..].split('"').next().expect("csrf").to_string();
    let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    let resp = http
        .post(format!("{base}/login"))
        .header("cookie", cookies.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&user={}&password={}", enc(&csrf), enc(user), enc(password)))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status().as_u16(), 303, "signed in");
    cookies.extend(cookies_of(&resp));
    Web { http, cookies: cookies.join("; ") }
}

async fn get(web: &Web, base: &str, path: &str) -> String {
    let resp = web.get(format!("{base}{path}")).await;
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.text().await.expect("body")
}

#[tokio::test]
async fn a_programme_publishes_its_own_form_and_tablets_fill_it() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let code = |who: &str| codes.iter().find(|(u, _)| u == who).expect("code").1.clone();
    let relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);

    // 1. The programme's administrator publishes the district's own lesson evaluation form while
    //    the relay serves; the list shows it beside the built-in library, with no records yet.
    let v1 = concat!(env!("CARGO_MANIFEST_DIR"), "/forms/tingke-pingjia-v1.json");
    let (ok, out) = admin(&db, &["publish-form", v1, "--programme", "ouhai"]);
    assert!(ok && out.contains("published tingke-pingjia v1"), "{out}");
    let (ok, again) = admin(&db, &["publish-form", v1, "--programme", "ouhai"]);
    assert!(ok && again.contains("already published"), "{again}");
    let (_, list) = admin(&db, &["forms", "--programme", "ouhai"]);
    assert!(list.lines().any(|l| l.starts_with("tingke-pingjia\tv1\t区教研室课堂教学评价表\t0\tcurrent")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("classroom-observation\tv2\t")), "{list}");

    // 2. Wang's tablet syncs and receives the form: it is offered for new records.
    let wang = Tablet::enrol(&relay.url, &code("wang"), &dir.path().join("wang.db")).await.expect("enrol wang");
    let summary = wang.sync().await.unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    assert!(summary.forms_changed);
    assert!(wang.store.templates().iter().any(|t| t.id() == FORM && t.version() == 1));
    assert!(SyncClient::missing_forms(&wang.store).expect("missing").is_empty());

    // 3. In the classroom Wang fills a record of it (ratings, a computed share, a total) and syncs.
    let mut lesson = wang.store.create(FORM, &school("ouhai-a"), &wang.editor).expect("create");
    fill_v1(&mut lesson, "刘老师");
    wang.store.save(&mut lesson).expect("save");
    let id = lesson.id().clone();
    let view = lesson.read();
    assert!(view.validation.blocking().next().is_none(), "{:?}", view.validation);
    // Goals 4 of 1–4 (50 of 50), participation 3 (2/3 of 50): 83.3.
    assert_eq!(view.scores.first().and_then(|s| s.value).map(|v| (v * 10.0).round()), Some(833.0));
    let summary = wang.sync().await.expect("wang syncs the lesson");
    assert!(summary.refused.is_empty() && summary.accepted == 1, "{summary:?}");

    // 4. Li's tablet, never synced before, gets the form and the record in one sync, adds a
    //    comment, and Wang receives it: the record merges like a built-in one.
    let li = Tablet::enrol(&relay.url, &code("li"), &dir.path().join("li.db")).await.expect("enrol li");
    let summary = li.sync().await.expect("li syncs");
    assert!(summary.unreadable.is_empty(), "{summary:?}");
    let mut copy = li.store.load(&id, &li.editor).expect("li opens the record");
    assert_eq!(copy.answer(&FieldRef::top("teacher")).expect("teacher").answer, Some(Answer::Text("刘老师".into())));
    copy.splice_text(&FieldRef::top("comment"), 0, 0, "学生小组讨论充分。").expect("comment");
    li.store.save(&mut copy).expect("save");
    li.sync().await.expect("li pushes");
    wang.sync().await.expect("wang pulls");
    let merged = wang.store.load(&id, &wang.editor).expect("load");
    assert_eq!(merged.answer(&FieldRef::top("comment")).expect("comment").answer, Some(Answer::LongText("学生小组讨论充分。".into())));

    // 5. The relay projected it: answers, the computed share and the total, read with the
    //    programme's own form.
    assert_eq!(count(&db, &format!("SELECT COUNT(*) FROM answers WHERE record_id = '{id}' AND field IN ('teacher', 'r_goal', 'comment')")), 3);
    assert_eq!(count(&db, &format!("SELECT CAST(number AS INTEGER) FROM computed WHERE record_id = '{id}' AND name = 'active_share'")), 75);
    assert_eq!(count(&db, &format!("SELECT CAST(ROUND(score * 10) AS INTEGER) FROM records WHERE id = '{id}'")), 833);

    // Wang hands the lesson in: the reports count submitted and approved records only.
    let mut done = wang.store.load(&id, &wang.editor).expect("load");
    done.submit().expect("submit");
    wang.store.save(&mut done).expect("save");
    wang.sync().await.expect("wang submits");

    // 5b. Wang also fills the baseline assessment (built in) completely; the supervisor signs in
    //     and reads, on the record page and in the CSV, XLSX and JSON exports, the computed
    //     values and scores in words (达标 / 未达标, 良好), not codes.
    let mut baseline = wang.store.create("baseline-assessment", &school("ouhai-a"), &wang.editor).expect("baseline");
    shidao_core::sample::fill_completely(&mut baseline, 1, &mut shidao_core::sample::Rng::new(7)).expect("fill");
    wang.store.save(&mut baseline).expect("save");
    wang.sync().await.expect("push baseline");
    let (ok, out) = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["--db", &db.display().to_string(), "admin", "set-password", "--user", "sup"])
        .env("SHIDAO_PASSWORD", "督导-pass-1")
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string()))
        .expect("set password");
    assert!(ok, "{out}");
    let web = signed_in(&relay.url, "sup", "督导-pass-1").await;
    let page = get(&web, &relay.url, &format!("/records/{id}")).await;
    assert!(page.contains("计算结果") && page.contains("参与学生比例"), "the record page shows computed values");
    // The form says which score is the lesson's total: its lesson counts in the school report
    //    and on the dashboard like a built-in observation.
    let report = get(&web, &relay.url, "/schools/ouhai-a").await;
    assert!(report.contains(">83.3</a></td>"), "the school report's mean total is the district form's total");
    let dashboard = get(&web, &relay.url, "/").await;
    assert!(dashboard.contains("83.3"), "the dashboard's mean lesson score");
    let csv = get(&web, &relay.url, "/export/tingke-pingjia.csv?version=1").await;
    let header = csv.lines().next().expect("header");
    assert!(header.contains("active_share 参与学生比例") && header.contains("total 总分") && header.contains("total 等第"), "{header}");
    let row = csv.lines().find(|l| l.starts_with(id.as_str())).expect("row of the lesson");
    assert!(row.contains(",75,") && row.contains("83.3") && row.contains("良好"), "{row}");
    let csv = get(&web, &relay.url, "/export/baseline-assessment.csv").await;
    let row = csv.lines().nth(1).expect("baseline row");
    assert!(row.contains("达标") || row.contains("未达标"), "the 达标 flags read as words: {row}");
    assert!(!csv.lines().next().unwrap_or_default().is_empty());
    let codes = get(&web, &relay.url, "/export/baseline-assessment.csv?codes=1").await;
    assert!(!codes.lines().nth(1).expect("row").contains("达标"), "with codes the flags are 1/0");
    let json = get(&web, &relay.url, "/api/records?template=tingke-pingjia").await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let total = json["records"].as_array().expect("records").iter().flat_map(|r| r["computed"].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == "total").expect("total in the API");
    assert_eq!((total["band"].as_str(), total["text"].as_str()), (Some("良好"), Some("83.33")));
    let xlsx = web.get(format!("{}/export/tingke-pingjia.xlsx?version=1", relay.url)).await;
    assert_eq!(xlsx.status().as_u16(), 200);
    assert!(xlsx.bytes().await.expect("bytes").starts_with(b"PK"), "an XLSX workbook");

    // 6. Version 2 adds 教师基本功; the tablets sync: new records are v2, the old record still
    //    opens, validates and reads under v1.
    let v2 = version_file(dir.path(), "v2.json", |j| {
        j["version"] = 2.into();
        let rating = fields(j, 1)[0].clone();
        let mut basics = rating;
        basics["id"] = "r_basics".into();
        basics["label"] = serde_json::json!({"zh": "教师基本功（教态、语言、板书、信息技术）", "en": "Teaching basics"});
        fields(j, 1).push(basics);
    });
    let (ok, out) = admin(&db, &["publish-form", &v2, "--programme", "ouhai"]);
    assert!(ok, "{out}");
    let summary = wang.sync().await.expect("wang syncs");
    assert!(summary.forms_changed);
    let current = wang.store.template(FORM, None).expect("current");
    assert_eq!(current.version(), 2);
    let old = wang.store.load(&id, &wang.editor).expect("old record opens");
    assert_eq!(old.template().version(), 1);
    assert!(old.read().validation.blocking().next().is_none());
    let mut newer = wang.store.create(FORM, &school("ouhai-a"), &wang.editor).expect("create v2");
    assert_eq!(newer.template().version(), 2);
    fill_v1(&mut newer, "孙老师");
    newer.set_answer(&FieldRef::top("r_basics"), Answer::Rating(4)).expect("basics");
    wang.store.save(&mut newer).expect("save");
    let summary = wang.sync().await.expect("push v2");
    assert!(summary.refused.is_empty(), "{summary:?}");
    let (_, list) = admin(&db, &["forms", "--programme", "ouhai"]);
    assert!(list.lines().any(|l| l.starts_with("tingke-pingjia\tv1\t区教研室课堂教学评价表\t1\tolder")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("tingke-pingjia\tv2\t区教研室课堂教学评价表\t1\tcurrent")), "{list}");

    // 7. A version 3 that turns 学科 into free text is refused naming the field; nothing stored.
    let v3 = version_file(dir.path(), "v3.json", |j| {
        j["version"] = 3.into();
        let subject = &mut fields(j, 0)[2];
        subject["kind"] = "text".into();
        subject.as_object_mut().expect("object").remove("options");
        j["meanings"].as_object_mut().expect("meanings").remove("lesson.subject");
    });
    let (ok, out) = admin(&db, &["publish-form", &v3, "--programme", "ouhai"]);
    assert!(!ok && out.contains("`subject`") && out.contains("changes kind"), "{out}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM form_versions WHERE template_id = 'tingke-pingjia'"), 2);

    // 8. A tablet that brings a version the relay does not have (added in the app) is refused
    //    `unknown_template` for that record, and the relay stores nothing of it.
    let v9 = version_file(dir.path(), "v9.json", |j| j["version"] = 9.into());
    wang.store.add_template("v9.json", &std::fs::read_to_string(&v9).expect("read")).expect("app adds v9");
    let t9 = wang.store.template(FORM, Some(9)).expect("v9");
    let mut stray = shidao_core::Record::create(
        t9,
        shidao_core::NewRecord { id: shidao_core::RecordId::random(), school: school("ouhai-a") },
        wang.editor.clone(),
        shidao_core::Clock::system(),
    )
    .expect("record");
    wang.store.save(&mut stray).expect("save");
    let summary = wang.sync().await.expect("sync");
    assert!(summary.refused.iter().any(|r| r.record == stray.id().as_str() && r.code == "unknown_template"), "{summary:?}");
    assert_eq!(count(&db, &format!("SELECT COUNT(*) FROM records WHERE id = '{}'", stray.id())), 0);

    // 9. Retiring v2 (say it was printed wrongly) makes v1 current again on the tablets; the v2
    //    record stays readable on the relay and the tablets.
    let (ok, out) = admin(&db, &["publish-form", "--programme", "ouhai", "--retire", "tingke-pingjia@2"]);
    assert!(ok && out.contains("retired tingke-pingjia v2"), "{out}");
    li.sync().await.expect("li syncs");
    assert_eq!(li.store.template(FORM, None).expect("current").version(), 1);
    let listed = li.store.list(&RecordFilter { template: Some(FORM.into()), ..RecordFilter::default() }).expect("list");
    assert_eq!(listed.len(), 2);
    for r in &listed {
        li.store.load(&r.id, &li.editor).unwrap_or_else(|e| panic!("{} v{}: {e}", r.id, r.template_version));
    }
    let (ok, out) = admin(&db, &["publish-form", "--programme", "ouhai", "--retire", "tingke-pingjia@7"]);
    assert!(!ok && out.contains("not published"), "{out}");
}

/// Publishes a workbook with the relay's admin command; `(succeeded, what it printed)`.
fn publish(db: &Path, file: &str, programme: &str) -> (bool, String) {
    admin(db, &["publish-form", file, "--programme", programme])
}

fn rate_all(record: &mut shidao_core::Record, level: i64) {
    for f in ["r_goal", "r_content", "r_method", "r_student"] {
        record.set_answer(&FieldRef::top(f), Answer::Rating(level)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let effect = record.template().field("r_effect").map(|f| f.kind());
    let answer = match effect {
        Some(shidao_core::template::FieldKind::Rating) => Answer::Rating(level),
        _ => Answer::Integer(level),
    };
    record.set_answer(&FieldRef::top("r_effect"), answer).expect("r_effect");
}

#[tokio::test]
async fn a_new_programme_publishes_its_xlsform_and_reads_it_in_its_reports() {
    use shidao_server::accounts;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    // 0. A new programme with one school, two inspectors and a supervisor.
    let codes: Vec<String> = {
        let conn = shidao_server::db::open(&db).expect("db");
        accounts::add_programme(&conn, "shinan", "市南区初中强校提质行动", Some(("2026-09-01", "2027-01-31"))).expect("programme");
        accounts::add_school(&conn, "shinan", "shinan-01", "市南区第一中学", "", "").expect("school");
        let now = shidao_core::Clock::system().now();
        let mut codes = Vec::new();
        for (id, name) in [("gao", "高老师"), ("ma", "马老师")] {
            accounts::add_user(&conn, id, name, shidao_core::Role::Inspector, Some("shinan"), &["shinan-01".to_string()], None, 0).expect("user");
            codes.push(accounts::new_enrol_code(&conn, id, now).expect("code"));
        }
        accounts::add_user(&conn, "du", "杜督导", shidao_core::Role::Supervisor, Some("shinan"), &[], None, 0).expect("supervisor");
        codes
    };
    let relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);

    // 1. The district's 听课评价表, written as an XLSForm (a group, a repeat, choices, ratings,
    //    relevance, a constraint, a calculation, two label languages), is published.
    let v1 = concat!(env!("CARGO_MANIFEST_DIR"), "/forms/tingke-pingjia.xlsx");
    let (ok, out) = publish(&db, v1, "shinan");
    assert!(ok && out.contains("published tingke-pingjia v2026090101"), "{out}");

    // 2. Gao's tablet receives it, fills a lesson (every item at level 4: total 80) and syncs.
    let gao = Tablet::enrol(&relay.url, &codes[0], &dir.path().join("gao.db")).await.expect("enrol gao");
    gao.sync().await.unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    let mut lesson = gao.store.create("tingke-pingjia", &school("shinan-01"), &gao.editor).expect("create");
    shidao_core::sample::fill_completely(&mut lesson, 1, &mut shidao_core::sample::Rng::new(11)).expect("fill");
    lesson.set_answer(&FieldRef::top("lesson_date"), Answer::Date("2026-11-24".into())).expect("date");
    rate_all(&mut lesson, 4);
    gao.store.save(&mut lesson).expect("save");
    let id = lesson.id().clone();
    let total = lesson.read().computed.iter().find(|c| c.field.field == "total" && c.field.row.is_none()).and_then(|c| c.number);
    assert_eq!(total, Some(80.0));
    let summary = gao.sync().await.expect("gao syncs");
    assert!(summary.refused.is_empty() && summary.accepted == 1, "{summary:?}");

    // 3. Ma's tablet, new, gets the form and the record in one sync, adds a lesson moment (a
    //    repeat row) and Gao receives it.
    let ma = Tablet::enrol(&relay.url, &codes[1], &dir.path().join("ma.db")).await.expect("enrol ma");
    let summary = ma.sync().await.expect("ma syncs");
    assert!(summary.unreadable.is_empty(), "{summary:?}");
    let mut copy = ma.store.load(&id, &ma.editor).expect("ma opens it");
    let row = copy.add_row("moments", None).expect("row");
    copy.set_answer(&FieldRef::in_row("m_time", &row), Answer::Time("09:20".into())).expect("time");
    ma.store.save(&mut copy).expect("save");
    ma.sync().await.expect("ma pushes");
    gao.sync().await.expect("gao pulls");
    let merged = gao.store.load(&id, &gao.editor).expect("load");
    assert_eq!(merged.answer(&FieldRef::in_row("m_time", &row)).expect("time").answer, Some(Answer::Time("09:20".into())));
    // Gao hands it in: the reports count submitted and approved records only.
    let mut done = merged;
    done.submit().expect("submit");
    gao.store.save(&mut done).expect("save");
    gao.sync().await.expect("gao submits");

    // 4. The supervisor finds it on the dashboard and in the school report (its total is the
    //    form's `lesson.total`), and its computed columns in the CSV and XLSX.
    let (ok, out) = {
        let o = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["--db", &db.display().to_string(), "admin", "set-password", "--user", "du"])
            .env("SHIDAO_PASSWORD", "市南-督导-2026")
            .output()
            .expect("set password");
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    assert!(ok, "{out}");
    let web = signed_in(&relay.url, "du", "市南-督导-2026").await;
    let dashboard = get(&web, &relay.url, "/").await;
    assert!(dashboard.contains("市南区第一中学") && dashboard.contains(">80<"), "the dashboard's mean lesson score");
    let report = get(&web, &relay.url, "/schools/shinan-01").await;
    assert!(report.contains(">80</a></td>"), "the school report's mean total");
    let csv = get(&web, &relay.url, "/export/tingke-pingjia.csv").await;
    assert!(csv.lines().next().expect("header").contains("total 总分"), "the computed total has its column");
    let line = csv.lines().find(|l| l.starts_with(id.as_str())).expect("the lesson's row");
    assert!(line.split(',').any(|c| c == "80"), "{line}");
    let xlsx = web.get(format!("{}/export/tingke-pingjia.xlsx", relay.url)).await;
    assert!(xlsx.bytes().await.expect("bytes").starts_with(b"PK"));

    // 5. Version 2 (one question more) is published: new records use it; the old one still
    //    opens and validates under its own version.
    let v2 = concat!(env!("CARGO_MANIFEST_DIR"), "/forms/tingke-pingjia-v2.xlsx");
    let (ok, out) = publish(&db, v2, "shinan");
    assert!(ok && out.contains("v2026090102"), "{out}");
    gao.sync().await.expect("sync");
    let newer = gao.store.create("tingke-pingjia", &school("shinan-01"), &gao.editor).expect("create v2");
    assert_eq!(newer.template().version(), 2026090102);
    assert!(newer.template().field("homework").is_some());
    let old = gao.store.load(&id, &gao.editor).expect("old record");
    assert_eq!(old.template().version(), 2026090101);
    assert!(old.read().validation.blocking().next().is_none(), "{:?}", old.read().validation);

    // 6. Publishing v1 again under another programme's name that does not exist is refused and
    //    stores nothing; a damaged workbook is refused naming the file.
    let (ok, out) = publish(&db, v1, "nowhere");
    assert!(!ok && out.contains("programme nowhere does not exist"), "{out}");
    let broken = dir.path().join("broken.xlsx");
    std::fs::write(&broken, b"PK\x03\x04 not really a workbook").expect("write");
    let (ok, out) = publish(&db, &broken.display().to_string(), "shinan");
    assert!(!ok && out.contains("broken.xlsx"), "{out}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM form_versions WHERE template_id = 'tingke-pingjia'"), 2);
}
