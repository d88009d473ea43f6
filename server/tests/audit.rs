//! The audit log: each admin command, sign-in and review leaves one row with its actor, action,
//! target and before/after; a refused action leaves none; the table is append-only.

use clap::Parser;
use rusqlite::Connection;
use shidao_server::admin::{self, AdminCommand};
use shidao_server::audit::{self, Filter};
use shidao_server::web::auth::{self, SignIn};

const NOW: i64 = 1_790_000_000;

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
