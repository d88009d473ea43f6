//! The audit log: each admin command, sign-in and review leaves one row with its actor, action,
//! target and before/after; a refused action leaves none; the table is append-only.

use clap::Parser;
use rusqlite::Connection;
use shidao_server::admin::{self, AdminCommand};
use shidao_server::audit::{self, Filter};
use shidao_server::web::auth::{self, SignIn};

const NOW: i64 = 1_790_000_000;

use std::collections::HashMap;
use shidao_server::{demo, serve, AppState};


#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: AdminCommand,
}

fn run(conn: &Connection, args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    admin::run(conn, cli.cmd, NOW).map_err(|e| e.to_string())
}

fn rows(conn: &Connection) -> Vec<audit::Row> {
    audit::query(conn, &Filter::default(), 1000, 0).expect("rows")
}

fn store() -> Connection {
    let conn = shidao_server::db::open_in_memory().expect("store");
    run(&conn, &["add-programme", "--id", "p1", "--name", "P"]).expect("programme");
    run(&conn, &["add-school", "--programme", "p1", "--id", "s1", "--name", "一中"]).expect("school");
    conn
}

#[test]
fn each_admin_command_that_changes_something_leaves_one_row_with_before_and_after() {
    let conn = store();
    let n0 = rows(&conn).len();
    assert_eq!(n0, 2, "programme.add and school.add");
    run(&conn, &["add-user", "--id", "sup1", "--name", "督导", "--role", "supervisor", "--programme", "p1", "--schools", "s1"]).expect("user");
    run(&conn, &["add-user", "--id", "sup1", "--name", "督导甲", "--role", "supervisor", "--programme", "p1", "--schools", "s1"]).expect("rename");
    let r = &rows(&conn)[0];
    assert_eq!((r.actor.as_str(), r.action.as_str(), r.target.as_deref(), r.programme.as_deref()), ("console", "user.add", Some("sup1"), Some("p1")));
    let before: serde_json::Value = serde_json::from_str(r.before.as_deref().expect("before")).expect("json");
    let after: serde_json::Value = serde_json::from_str(r.after.as_deref().expect("after")).expect("json");
    assert_eq!(before["name"], "督导");
    assert_eq!(after["name"], "督导甲");
    assert_eq!(after["schools"], "s1");
    // Reading commands leave nothing.
    run(&conn, &["devices"]).expect("devices");
    run(&conn, &["rules", "--programme", "p1"]).expect("rules");
    assert_eq!(rows(&conn).len(), n0 + 2);
    // A rule change points into the rules' own history.
    run(&conn, &["add-term", "--programme", "p1", "--name", "秋季", "--start", "2026-09-01", "--end", "2027-01-31"]).expect("term");
    let r = &rows(&conn)[0];
    assert_eq!((r.action.as_str(), r.target.as_deref(), r.programme.as_deref()), ("programme.term", Some("term-2026-09-01"), Some("p1")));
    let last: i64 = conn.query_row("SELECT MAX(id) FROM rule_history", [], |r| r.get(0)).expect("history");
    assert_eq!(serde_json::from_str::<serde_json::Value>(r.after.as_deref().expect("after")).expect("json")["rule_history"], last);
    // An enrolment code is recorded, the code itself is not.
    let out = run(&conn, &["enrol-code", "--user", "sup1"]).expect("code");
    let code = out.split_whitespace().nth(4).expect("code").to_string();
    let r = &rows(&conn)[0];
    assert_eq!((r.action.as_str(), r.target.as_deref()), ("enrol.code", Some("sup1")));
    let all: String = conn.query_row("SELECT group_concat(coalesce(detail,'') || coalesce(after,''), '|') FROM audit_log", [], |r| r.get(0)).expect("all");
    assert!(!all.contains(&code), "the code is not in the log: {all}");
    // Enrolling with it, and revoking the device.
    let (device, _, _) = shidao_server::accounts::enrol(&conn, &code, "平板一", NOW).expect("enrol");
    let r = &rows(&conn)[0];
    assert_eq!((r.actor.as_str(), r.action.as_str(), r.target.as_deref()), ("sup1", "device.enrol", Some(device.as_str())));
    run(&conn, &["revoke-device", "--device", &device]).expect("revoke");
    let r = &rows(&conn)[0];
    assert_eq!((r.action.as_str(), r.target.as_deref()), ("device.revoke", Some(device.as_str())));
    let before: serde_json::Value = serde_json::from_str(r.before.as_deref().expect("before")).expect("json");
    let after: serde_json::Value = serde_json::from_str(r.after.as_deref().expect("after")).expect("json");
    assert!(before["revoked_at"].is_null());
    assert_eq!(after["revoked_at"], NOW);
}

#[test]
fn a_refused_command_changes_nothing_and_leaves_no_row() {
    let conn = store();
    let n0 = rows(&conn).len();
    assert!(run(&conn, &["add-user", "--id", "x", "--name", "X", "--role", "nobody"]).is_err());
    assert!(run(&conn, &["revoke-device", "--device", "nope"]).is_err());
    assert!(run(&conn, &["set-rule", "--programme", "p1", "--rule", "categories", "{not json"]).is_err());
    // An import with a bad second line keeps neither the first line nor a row.
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "id,name,role,schools\nu1,甲,inspector,s1\nu2,乙,wizard,s1\n").expect("csv");
    assert!(run(&conn, &["import-users", "--programme", "p1", csv.to_str().expect("path")]).is_err());
    let users: i64 = conn.query_row("SELECT COUNT(*) FROM users WHERE id = 'u1'", [], |r| r.get(0)).expect("users");
    assert_eq!(users, 0);
    assert_eq!(rows(&conn).len(), n0);
}

#[test]
fn the_log_refuses_update_and_delete() {
    let conn = store();
    let e = conn.execute("UPDATE audit_log SET actor = 'someone else'", []).expect_err("update");
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = conn.execute("DELETE FROM audit_log", []).expect_err("delete");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(rows(&conn).len(), 2);
    assert!(rows(&conn).iter().all(|r| r.actor == "console"));
}

#[test]
fn sign_ins_and_failed_sign_ins_are_logged_without_the_password() {
    let conn = store();
    run(&conn, &["add-user", "--id", "sup1", "--name", "督导", "--role", "supervisor", "--programme", "p1"]).expect("user");
    run(&conn, &["set-password", "--user", "sup1", "--password", "correct horse"]).expect("password");
    let r = &rows(&conn)[0];
    assert_eq!(r.action, "user.password");
    assert!(!r.after.as_deref().unwrap_or("").contains("argon2"), "no hash in the log: {:?}", r.after);

    let wrong = auth::sign_in(&conn, "sup1", "hunter2-secret", "192.0.2.7", NOW).expect("sign in");
    assert!(matches!(wrong, SignIn::WrongPassword));
    let r = &rows(&conn)[0];
    assert_eq!((r.action.as_str(), r.actor.as_str(), r.source.as_deref()), ("sign_in.failed", "sup1", Some("192.0.2.7")));
    let dump: String = conn
        .query_row("SELECT group_concat(coalesce(actor,'')||coalesce(before,'')||coalesce(after,'')||coalesce(detail,'')||coalesce(source,''), '|') FROM audit_log", [], |r| r.get(0))
        .expect("dump");
    assert!(!dump.contains("hunter2"), "{dump}");

    let ok = auth::sign_in(&conn, " sup1 ", "correct horse", "192.0.2.8", NOW).expect("sign in");
    assert!(matches!(ok, SignIn::Session(_)));
    let r = &rows(&conn)[0];
    assert_eq!((r.action.as_str(), r.actor.as_str(), r.actor_role.as_deref()), ("sign_in", "sup1", Some("supervisor")));
    let unknown = auth::sign_in(&conn, "ghost", "whatever1", "192.0.2.9", NOW).expect("sign in");
    assert!(matches!(unknown, SignIn::WrongPassword));
    assert_eq!(rows(&conn)[0].actor, "ghost");
}

#[test]
fn admin_audit_prints_rows_since_a_day_and_of_an_action() {
    let conn = store();
    let out = run(&conn, &["audit", "--since", "2026-01-01"]).expect("audit");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().nth(1).expect("row").contains("school.add"), "newest first: {out}");
    let out = run(&conn, &["audit", "--since", "2026-01-01", "--action", "programme"]).expect("audit");
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = run(&conn, &["audit", "--since", "2027-01-01"]).expect("audit");
    assert_eq!(out.lines().count(), 1, "{out}");
    let e = run(&conn, &["audit", "--since", "2026-13-01"]).expect_err("bad day");
    assert!(e.contains("--since") && e.contains("2026-13-01"), "{e}");
    assert_eq!(rows(&conn).len(), 2, "reading the log is not logged");
}

/// A browser of sorts: keeps cookies, does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { http, base: base.to_string(), cookies: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let s = v.to_str().expect("cookie");
            let (kv, _) = s.split_once(';').unwrap_or((s, ""));
            let (k, v) = kv.split_once('=').expect("k=v");
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String, Option<String>) {
        let resp = self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await.expect("get");
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().expect("location").to_string());
        (status, resp.text().await.expect("body"), location)
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&"))
            .send()
            .await
            .expect("post");
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().expect("location").to_string());
        (status, resp.text().await.expect("body"), location)
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html.find(&key).unwrap_or_else(|| panic!("no hidden {name}")) + key.len();
    html[at..].split('"').next().expect("value").to_string()
}


fn count(state: &AppState, sql: &str) -> i64 {
    state.with_db(|c| c.query_row(sql, [], |r| r.get(0))).expect("count")
}

async fn signed_in(base: &str, who: (&str, &str)) -> Browser {
    let mut b = Browser::new(base);
    let (_, form, _) = b.get("/login").await;
    let token = hidden(&form, "csrf");
    let (status, _, _) = b.post("/login", &[("csrf", &token), ("user", who.0), ("password", who.1)]).await;
    assert_eq!(status, 303, "{} signs in", who.0);
    b
}

#[tokio::test]
async fn web_reviews_sign_ins_and_refusals_in_the_log_and_on_its_page() {
    let dir = tempfile::tempdir().expect("dir");
    let state = AppState::open(&dir.path().join("central.db")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    demo::seed_scaled(&state, &base, 0.2).await.expect("demo seeds");

    // A failed sign-in: the name and the address, not the password.
    let mut b = Browser::new(&base);
    let (_, form, _) = b.get("/login").await;
    let token = hidden(&form, "csrf");
    assert_eq!(b.post("/login", &[("csrf", &token), ("user", demo::SUPERVISOR.0), ("password", "guess-xyzzy")]).await.0, 403);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM audit_log WHERE action = 'sign_in.failed' AND actor = 'duban' AND source = '127.0.0.1'"), 1);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM audit_log WHERE instr(coalesce(detail,'') || coalesce(after,'') || actor, 'xyzzy') > 0"), 0);

    let mut sup = signed_in(&base, demo::SUPERVISOR).await;
    assert_eq!(count(&state, "SELECT COUNT(*) FROM audit_log WHERE action = 'sign_in' AND actor = 'duban' AND actor_role = 'supervisor'"), 1);

    // Approving a submitted record: one row, the status before and after.
    let record: String = state
        .with_db(|c| c.query_row("SELECT r.id FROM records r JOIN users u ON u.id = r.created_by WHERE r.status = 'submitted' AND u.role = 'principal' LIMIT 1", [], |r| r.get(0)))
        .expect("a submitted record");
    let (_, page, _) = sup.get(&format!("/records/{record}")).await;
    let csrf = hidden(&page, "csrf");
    // A bad CSRF token: refused, nothing changed, nothing logged.
    assert_eq!(sup.post(&format!("/records/{record}/review"), &[("csrf", "forged"), ("action", "approve")]).await.0, 403);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'record.%'"), 0);
    assert_eq!(sup.post(&format!("/records/{record}/review"), &[("csrf", &csrf), ("action", "approve")]).await.0, 303);
    let row = state
        .with_db(|c| {
            c.query_row("SELECT actor, actor_role, target, before, after, programme FROM audit_log WHERE action = 'record.approve'", [], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?))
            })
        })
        .expect("one approve row");
    assert_eq!(row, ("duban".into(), "supervisor".into(), record.clone(), r#"{"status":"submitted"}"#.into(), r#"{"status":"approved"}"#.into(), demo::PROGRAMME.into()));

    // A supervisor posting to an admin page: 403, no row.
    let before = count(&state, "SELECT COUNT(*) FROM audit_log");
    let (status, _, _) = sup.post("/admin/forms/retire", &[("csrf", &csrf), ("form", "classroom-observation"), ("version", "1")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = sup.post("/admin/programme/rule", &[("csrf", &csrf), ("rule", "categories"), ("value", "null")]).await;
    assert_eq!(status, 403);
    assert_eq!(count(&state, "SELECT COUNT(*) FROM audit_log"), before);

    // The page, for the supervisor and the admin, filtered; the CSV.
    let (status, html, _) = sup.get("/admin/audit?action=record").await;
    assert_eq!(status, 200);
    assert!(html.contains("record.approve") && html.contains(&record), "{html}");
    assert!(!html.contains("sign_in.failed"), "filtered by action");
    let mut admin = signed_in(&base, demo::ADMIN).await;
    let (status, html, _) = admin.get("/admin/audit").await;
    assert_eq!(status, 200);
    assert!(html.contains("sign_in.failed") && html.contains("record.approve"));
    let (status, csv, _) = admin.get("/admin/audit.csv?action=sign_in").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].contains("seq,at,actor"), "{csv}");
    assert_eq!(lines.len() - 1, count(&state, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'sign_in%'") as usize, "{csv}");
    assert_eq!(admin.get("/admin/audit?from=2026-99-01").await.0, 400);
    // The same error asked for by a browser: a page with the reason, in the reader's language,
    // the status kept; an API client still gets the JSON body.
    let page = admin
        .http
        .get(format!("{base}/admin/audit?from=2026-99-01"))
        .header("cookie", admin.cookie_header())
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 400);
    assert!(page.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let text = page.text().await.expect("body");
    assert!(text.contains("请求有误") && text.contains("2026-99-01") && text.contains(r#"data-code="bad_request""#), "{text}");
    let (_, json, _) = admin.get("/admin/audit?from=2026-99-01").await;
    assert!(json.starts_with('{') && json.contains(r#""code":"bad_request""#), "{json}");

    // An admin retires a form version on the web page: one row, retired after.
    let (form, version): (String, u32) = state
        .with_db(|c| c.query_row("SELECT template_id, version FROM form_versions WHERE programme_id = ?1 AND retired_at IS NULL LIMIT 1", [demo::PROGRAMME], |r| Ok((r.get(0)?, r.get(1)?))))
        .expect("a form version");
    let (_, page, _) = admin.get(&format!("/admin/forms?programme={}", demo::PROGRAMME)).await;
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = admin
        .post("/admin/forms/retire", &[("csrf", &csrf), ("programme", demo::PROGRAMME), ("form", &form), ("version", &version.to_string())])
        .await;
    assert_eq!(status, 303);
    let (actor, after): (String, String) = state
        .with_db(|c| c.query_row("SELECT actor, after FROM audit_log WHERE action = 'form.retire' AND target = ?1", [format!("{form}@{version}")], |r| Ok((r.get(0)?, r.get(1)?))))
        .expect("one retire row");
    assert_eq!(actor, demo::ADMIN.0);
    let retired: serde_json::Value = serde_json::from_str(&after).expect("json");
    assert!(retired["retired_at"].is_i64(), "{after}");
}
