//! Enrolment by QR code on the relay: the person page issues a code whose QR code is drawn from
//! exactly the payload it shows, the printed sheet has one page per school with one code per
//! person, supervisors only read, CSRF is enforced, revoking from the page refuses the token,
//! and the district CA named by the payload is served for the device to check.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rusqlite::Connection;
use shidao_core::sync::enrol_payload::EnrolPayload;
use shidao_core::template::Role;
use shidao_server::enrolment::{qr_svg, EnrolCa, EnrolSettings};
use shidao_server::web::auth::{hash_password, sign_in, SignIn};
use shidao_server::{accounts, admin, app, AppState};
use tower::ServiceExt;

const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    body: String,
    location: Option<String>,
}

fn codes(c: &Connection) -> String {
    let mut stmt = c.prepare("SELECT code_hash, user_id, expires_at, used_at FROM enrol_codes ORDER BY 1").expect("select");
    let rows = stmt
        .query_map([], |r| Ok(format!("{}|{}|{}|{:?}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?)))
        .expect("rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

fn devices(c: &Connection) -> String {
    let mut stmt = c.prepare("SELECT id, user_id, revoked_at FROM devices ORDER BY 1").expect("select");
    let rows = stmt
        .query_map([], |r| Ok(format!("{}|{}|{:?}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?)))
        .expect("rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

impl World {
    fn new(settings: EnrolSettings) -> World {
        let dir = tempfile::tempdir().expect("dir");
        let mut state = AppState::open(&dir.path().join("central.db")).expect("store");
        state.enrolment = Arc::new(settings);
        state.with_db(|c| {
            admin::run(c, admin_cmd(&["add-programme", "--id", "p", "--name", "项目"]), 0).expect("programme p");
            for (id, name) in [("s1", "第一中学"), ("s2", "第二中学"), ("s3", "第三中学")] {
                accounts::add_school(c, "p", id, name, "", "").expect("school");
            }
            let hash = hash_password("correct-horse").expect("hash");
            accounts::add_user(c, "adm", "管理员", Role::Admin, Some("p"), &[], Some(&hash), 0).expect("admin");
            accounts::add_user(c, "sup", "督导", Role::Supervisor, Some("p"), &[], Some(&hash), 0).expect("supervisor");
            let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            accounts::add_user(c, "li", "李老师", Role::Expert, Some("p"), &s(&["s1"]), None, 0).expect("li");
            accounts::add_user(c, "wang", "王老师", Role::Expert, Some("p"), &s(&["s1"]), None, 0).expect("wang");
            accounts::add_user(c, "zhao", "赵老师", Role::Expert, Some("p"), &s(&["s2"]), None, 0).expect("zhao");
            // Another programme's person is neither shown nor given a code.
            admin::run(c, admin_cmd(&["add-programme", "--id", "q", "--name", "别处"]), 0).expect("programme q");
            accounts::add_user(c, "other", "别处老师", Role::Expert, Some("q"), &[], None, 0).expect("other");
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
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        Answer { status, body: String::from_utf8_lossy(&bytes).into_owned(), location }
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

    fn snapshot(&self) -> String {
        self.state.with_db(|c| format!("{}\n--\n{}", codes(c), devices(c)))
    }
}

fn admin_cmd(args: &[&str]) -> admin::AdminCommand {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: admin::AdminCommand,
    }
    Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).expect("admin command").command
}

fn settings() -> EnrolSettings {
    EnrolSettings {
        public_url: Some("https://shidao.example.cn".into()),
        ca: Some(EnrolCa { pem: "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n".into(), fingerprint: FP.into() }),
    }
}

/// The text between `<p … id="{id}">` and the next `<`.
fn by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &html[start..];
    let open = rest.find('>').expect("tag end") + 1;
    let end = rest[open..].find('<').expect("text end");
    &rest[open..open + end]
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&").replace("&#38;", "&").replace("&quot;", "\"").replace("&#34;", "\"").replace("&#39;", "'")
}

#[tokio::test]
async fn the_person_page_issues_a_code_drawn_as_the_qr_of_exactly_its_payload() {
    let w = World::new(settings());
    let (admin, csrf) = w.session("adm");
    let page = w.get(&admin, "/admin/people/li/enrol").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("李老师") && page.body.contains("id=\"issue-form\""), "the admin gets the button");
    assert!(!page.body.contains("id=\"qr\""), "a GET issues nothing");
    assert_eq!(w.state.with_db(codes), "", "no code from a GET");

    let r = w.post(&admin, "/admin/people/li/enrol", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let text = unescape(by_id(&r.body, "payload"));
    let payload = EnrolPayload::parse(&text).expect("the page shows a payload the core reads");
    assert_eq!(payload.server, "https://shidao.example.cn");
    assert_eq!(payload.ca.as_deref(), Some(FP));
    assert_eq!(by_id(&r.body, "code"), payload.code, "the code as text is the payload's");
    assert!(by_id(&r.body, "expires").contains("有效期至"), "the expiry is shown");
    // The QR code on the page is the one the qrcode crate draws for exactly that payload.
    let svg = qr_svg(&text).expect("svg");
    assert!(r.body.contains(&format!("<div class=\"qr\" id=\"qr\">{svg}</div>")), "inline SVG of the payload");
    assert_ne!(qr_svg(&text.replace(&payload.code, "ABCDE-FGHJK")).expect("svg"), svg, "another payload draws another code");

    // The code enrols li's tablet once.
    let now = shidao_core::Clock::system().now();
    let (device, token, user) = w.state.with_db(|c| accounts::enrol(c, &payload.code, "李老师的平板", now)).expect("enrol");
    assert_eq!(user, "li");
    assert!(w.state.with_db(|c| accounts::enrol(c, &payload.code, "again", now)).is_err(), "once only");
    let page = w.get(&admin, "/admin/people/li/enrol").await;
    assert!(page.body.contains("李老师的平板") && page.body.contains(&device), "the device is listed");
    assert!(page.body.contains(&format!("/admin/devices/{device}/revoke")), "with a revoke button");

    // Its first sync names the app: the page shows it; an app name that is too long or holds a
    // control character is refused and changes nothing.
    let sync = |app: Option<String>| {
        let req = shidao_core::sync::protocol::SyncRequest {
            protocol: shidao_core::sync::protocol::PROTOCOL,
            request_id: format!("r-{}", app.as_deref().map_or(0, str::len)),
            cursor: 0,
            scope: None,
            reference: None,
            push: vec![],
            max_pull_bytes: None,
            want_forms: vec![],
            set_aside: vec![],
            app,
        };
        let body = shidao_core::sync::protocol::encode(&req).expect("encode");
        Request::post("/v1/sync").header("authorization", format!("Bearer {token}")).header("content-encoding", "gzip").body(Body::from(body)).expect("request")
    };
    assert_eq!(w.call(sync(Some("shidao-android/1.4.0".into()))).await.status, StatusCode::OK);
    for bad in ["x".repeat(101), "shidao\n1.0".to_string()] {
        let r = w.call(sync(Some(bad))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("printable characters"), "{}", r.body);
    }
    let page = w.get(&admin, "/admin/people/li/enrol").await;
    assert!(page.body.contains("<td class=\"app\">shidao-android/1.4.0</td>"), "the app version is listed");

    // Revoke: a forged token changes nothing; the real one refuses the device's token.
    let before = w.snapshot();
    let r = w.post(&admin, &format!("/admin/devices/{device}/revoke"), &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.snapshot(), before, "nothing changed");
    let r = w.post(&admin, &format!("/admin/devices/{device}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/admin/people/li/enrol?done=revoked"));
    assert!(w.state.with_db(|c| accounts::authenticate(c, &token, now)).is_err(), "the revoked token is refused");
    let page = w.get(&admin, "/admin/people/li/enrol?done=revoked").await;
    assert!(page.body.contains("已停用") && !page.body.contains(&format!("/admin/devices/{device}/revoke")), "revoked, no button");
    // Both acts are in the audit log, by the admin, the code itself never.
    let log: Vec<(String, String, String, Option<String>)> = w.state.with_db(|c| {
        let mut stmt = c.prepare("SELECT actor, action, target, detail FROM audit_log WHERE action IN ('enrol.code', 'device.revoke') ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok::<_, rusqlite::Error>(rows)
    }).expect("audit");
    let actions: Vec<&str> = log.iter().map(|(_, a, _, _)| a.as_str()).collect();
    assert_eq!(actions.last(), Some(&"device.revoke"), "{log:?}");
    assert!(log.iter().any(|(by, a, t, d)| by == "adm" && a == "enrol.code" && t == "li" && d.as_deref() == Some("QR")), "{log:?}");
    assert!(log.iter().any(|(by, a, t, d)| by == "adm" && a == "device.revoke" && *t == device && d.as_deref() == Some("li")), "{log:?}");

    // Another programme's person is out of reach.
    let r = w.post(&admin, "/admin/people/other/enrol", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!w.state.with_db(codes).contains("|other|"), "no code for another programme's person");

    // The served CA is the one the payload names.
    let ca = w.call(Request::get("/v1/ca.pem").body(Body::empty()).expect("request")).await;
    assert_eq!(ca.status, StatusCode::OK);
    assert!(ca.body.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn supervisors_read_but_every_post_of_theirs_is_refused_and_changes_nothing() {
    let w = World::new(settings());
    let (admin, admin_csrf) = w.session("adm");
    let (sup, sup_csrf) = w.session("sup");
    let r = w.post(&admin, "/admin/people/li/enrol", &[("csrf", &admin_csrf)]).await;
    let code = by_id(&r.body, "code").to_string();
    let now = shidao_core::Clock::system().now();
    let (device, _, _) = w.state.with_db(|c| accounts::enrol(c, &code, "平板", now)).expect("enrol");

    let page = w.get(&sup, "/admin/people/li/enrol").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"read-only\"") && page.body.contains(&device), "a supervisor sees the devices");
    assert!(!page.body.contains("id=\"issue-form\"") && !page.body.contains("/revoke\""), "but no button");
    let sheet = w.get(&sup, "/admin/enrol-sheet?school=s1").await;
    assert_eq!(sheet.status, StatusCode::OK);
    assert!(!sheet.body.contains("id=\"sheet-form\""));

    let before = w.snapshot();
    for (path, form) in [
        ("/admin/people/li/enrol".to_string(), vec![("csrf", sup_csrf.as_str())]),
        (format!("/admin/devices/{device}/revoke"), vec![("csrf", sup_csrf.as_str())]),
        ("/admin/enrol-sheet".to_string(), vec![("csrf", sup_csrf.as_str()), ("school", "s1")]),
    ] {
        let r = w.post(&sup, &path, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    assert_eq!(w.snapshot(), before, "a supervisor changed nothing");

    // An admin without the session's token changes nothing either.
    for (path, form) in [
        ("/admin/people/li/enrol".to_string(), vec![("csrf", "forged")]),
        ("/admin/people/li/enrol".to_string(), vec![]),
        ("/admin/enrol-sheet".to_string(), vec![("csrf", "forged"), ("school", "s1")]),
    ] {
        let r = w.post(&admin, &path, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    assert_eq!(w.snapshot(), before, "no code without the CSRF token");
}

#[tokio::test]
async fn the_sheet_has_one_page_per_school_with_one_code_per_person() {
    let w = World::new(settings());
    let (admin, csrf) = w.session("adm");
    let form = w.get(&admin, "/admin/enrol-sheet?school=s1").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"sheet-form\""));
    assert_eq!(w.state.with_db(codes), "", "a GET issues nothing");

    let r = w.post(&admin, "/admin/enrol-sheet", &[("csrf", &csrf), ("school", "s1")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body.matches("class=\"sheet\"").count(), 1, "one page for one school");
    assert!(r.body.contains("@page{size:A4") && r.body.contains("page-break-after:always"), "A4, a page per school");
    assert_eq!(r.body.matches("class=\"card\"").count(), 2, "li and wang");
    for user in ["li", "wang"] {
        assert!(r.body.contains(&format!("data-user=\"{user}\"")), "{user} has a card");
    }
    assert!(!r.body.contains("data-user=\"zhao\""), "zhao is at another school");
    let issued = w.state.with_db(codes);
    assert_eq!(issued.lines().count(), 2);
    assert!(issued.contains("|li|") && issued.contains("|wang|"));
    // Every card's QR code is the payload of its own code.
    let mut rest = r.body.as_str();
    let mut seen = 0;
    while let Some(i) = rest.find("<div class=\"payload\" hidden>") {
        let after = &rest[i + "<div class=\"payload\" hidden>".len()..];
        let text = unescape(&after[..after.find('<').expect("end")]);
        let p = EnrolPayload::parse(&text).expect("payload");
        assert!(r.body.contains(&format!("<div class=\"qr\">{}</div><div class=\"payload\" hidden>", qr_svg(&text).expect("svg"))));
        assert!(r.body.contains(&format!("<div class=\"code\">{}</div>", p.code)));
        seen += 1;
        rest = after;
    }
    assert_eq!(seen, 2);

    // Every school: one page each (s3 has nobody and still gets its page).
    let r = w.post(&admin, "/admin/enrol-sheet", &[("csrf", &csrf), ("school", "")]).await;
    assert_eq!(r.status, StatusCode::OK);
    for s in ["s1", "s2", "s3"] {
        assert_eq!(r.body.matches(&format!("<section class=\"sheet\" id=\"school-{s}\">")).count(), 1, "{s}");
    }
    assert_eq!(r.body.matches("class=\"sheet\"").count(), 3);
    assert_eq!(r.body.matches("class=\"card\"").count(), 3, "li, wang, zhao");
    assert_eq!(w.state.with_db(codes).lines().count(), 5);

    // A school of another programme is refused.
    let r = w.post(&admin, "/admin/enrol-sheet", &[("csrf", &csrf), ("school", "nowhere")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(w.state.with_db(codes).lines().count(), 5);
}

#[tokio::test]
async fn without_a_public_url_the_page_gives_the_code_and_says_why_there_is_no_qr() {
    let w = World::new(EnrolSettings::default());
    let (admin, csrf) = w.session("adm");
    let r = w.post(&admin, "/admin/people/li/enrol", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"no-public-url\"") && !r.body.contains("<svg"));
    assert_eq!(by_id(&r.body, "code").len(), 11);
    let ca = w.call(Request::get("/v1/ca.pem").body(Body::empty()).expect("request")).await;
    assert_eq!(ca.status, StatusCode::NOT_FOUND);
}
