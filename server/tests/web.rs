//! The review pages against a real server on loopback with the demo programme: sign-in (wrong
//! password, stale form, planted session id), the dashboard and a school report with real
//! figures, resolving a conflict, and a returned record whose comment reaches the author's tablet.

use std::collections::HashMap;

use shidao_core::store::Store;
use shidao_core::sync::http::{Cancel, HttpSync};
use shidao_core::template::Role;
use shidao_core::{DeviceId, Editor, RecordId, Status, UserId};
use shidao_server::{accounts, demo, serve, AppState};

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

#[tokio::test]
async fn supervisor_reviews_in_the_browser() {
    let dir = tempfile::tempdir().expect("dir");
    let state = AppState::open(&dir.path().join("central.db")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    demo::seed_scaled(&state, &base, 0.2).await.expect("demo seeds");
    let mut b = Browser::new(&base);

    // 1. Without a session every page sends to sign-in.
    let (status, _, location) = b.get("/").await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));

    // 2. A planted session id is worthless, a wrong password and a stale form are refused.
    b.cookies.insert("shidao_session".into(), "planted-by-someone-else".into());
    assert_eq!(b.get("/").await.0, 303);
    let (_, form, _) = b.get("/login").await;
    let token = hidden(&form, "csrf");
    let (status, body, _) = b.post("/login", &[("csrf", &token), ("user", demo::SUPERVISOR.0), ("password", "wrong-password")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("用户名或密码错误"));
    let token = hidden(&body, "csrf");
    let (status, _, _) = b.post("/login", &[("csrf", "stale"), ("user", demo::SUPERVISOR.0), ("password", demo::SUPERVISOR.1)]).await;
    assert_eq!(status, 403);
    let (status, _, location) = b.post("/login", &[("csrf", &token), ("user", demo::SUPERVISOR.0), ("password", demo::SUPERVISOR.1)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/")));
    assert_ne!(b.cookies.get("shidao_session").map(String::as_str), Some("planted-by-someone-else"), "a new session id at sign-in");

    // 3. The dashboard: schools by category, compliance flags, tasks against targets.
    let (status, dash, _) = b.get("/").await;
    assert_eq!(status, 200);
    // The 瓯海 programme (the ouhai preset): its categories, its own rules with their figures and
    // sources, a handful of flags (not every school).
    for text in ["瓯海区初中全面提升行动", "<h2>示范</h2>", "<h2>优质</h2>", "<h2>潜质</h2>", "区外国语学校", "（≥30）", "（≥3）", "每学期在本校听评课不少于30节", "class=\"flag\"", "学习兴趣度"] {
        assert!(dash.contains(text), "dashboard lacks {text}");
    }
    let key = "id=\"flagged\">";
    let flagged: usize = dash[dash.find(key).expect("card") + key.len()..].split('<').next().expect("n").parse().expect("n");
    assert!((2..=8).contains(&flagged), "a handful of schools flagged, not all nineteen: {flagged}");
    // 鱼峰's tasks live in the 鱼峰 programme, not on 瓯海's dashboard.
    assert!(!dash.contains("语数英核心骨干"));
    // 4. A school report: the school, the work done, the six areas, and real figures, each
    //    linking to its records.
    let (status, report, _) = b.get("/schools/ouhai-01").await;
    assert_eq!(status, 200);
    // 瓯海's rules give the report its three dimensions (学生发展 / 教师发展 / 学校发展).
    for text in ["一、学校基本情况", "二、工作开展情况", "三、学生发展", "四、教师发展", "五、学校发展", "德育工作", "六、主要成效", "评估组组长", "学习兴趣度",
        "/records?school=ouhai-01&#38;template=classroom-observation"] {
        assert!(report.contains(text), "report lacks {text}");
    }
    let (_, en, _) = {
        b.cookies.insert("shidao_lang".into(), "en".into());
        b.get("/schools/ouhai-01").await
    };
    assert!(en.contains("The school") && en.contains("School report"));
    b.cookies.remove("shidao_lang");

    // 5. A visit whose focus two inspectors typed differently: pick one; it becomes the
    //    supervisor's edit and the conflict is gone.
    let (record, field): (String, String) = state.with_db(|c| {
        c.query_row("SELECT a.record_id, a.field FROM answers a JOIN records r ON r.id = a.record_id
             WHERE a.conflicts > 1 AND a.field = 'visit_focus' AND r.status != 'approved' LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("a conflict in the demo")
    });
    let (_, page, _) = b.get(&format!("/records/{record}")).await;
    assert!(page.contains("冲突") && page.contains("采用此值"));
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = b.post(&format!("/records/{record}/resolve"), &[("csrf", "forged"), ("field", &field), ("row", ""), ("pick", "0")]).await;
    assert_eq!(status, 403, "a form without the session's token is refused");
    let (status, body, _) = b.post(&format!("/records/{record}/resolve"), &[("csrf", &csrf), ("field", &field), ("row", ""), ("pick", "0")]).await;
    assert_eq!(status, 303, "{body}");
    let (conflicts, author): (i64, String) = state.with_db(|c| {
        c.query_row("SELECT conflicts, author FROM answers WHERE record_id = ?1 AND field = ?2", [&record, &field], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("answer")
    });
    assert_eq!((conflicts, author.as_str()), (0, demo::SUPERVISOR.0));

    // 6. Return a submitted record with a comment; the author's tablet gets it on its next sync.
    let (submitted, author): (String, String) = state.with_db(|c| {
        c.query_row(
            "SELECT r.id, r.created_by FROM records r JOIN users u ON u.id = r.created_by WHERE r.status = 'submitted' AND u.role = 'principal' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a submitted record")
    });
    let (_, page, _) = b.get(&format!("/records/{submitted}")).await;
    let csrf = hidden(&page, "csrf");
    let comment = "请补充学生小组讨论环节的观察证据。";
    let (status, _, _) = b.post(&format!("/records/{submitted}/review"), &[("csrf", &csrf), ("action", "return"), ("comment", comment)]).await;
    assert_eq!(status, 303);
    let code = state.with_db(|c| accounts::new_enrol_code(c, &author, shidao_core::Clock::system().now())).expect("code");
    let http = HttpSync::new(&base, None).expect("client");
    let enrolled = http.enrol(&code, "校长的新平板").await.expect("enrol");
    let me = Editor { user: UserId::new(&author).expect("id"), device: DeviceId::new(&enrolled.device).expect("id"), role: Role::Principal };
    let tablet = Store::open_in_memory().expect("store");
    http.sync(&tablet, &enrolled.token, &me, &Cancel::new(), |_| {}).await.expect("sync");
    let got = tablet.load(&RecordId::new(&submitted).expect("id"), &me).expect("the returned record is on the tablet");
    assert_eq!(got.status(), Status::Returned);
    assert_eq!(got.return_comment().as_deref(), Some(comment));

    // 7. Exports: CSV with labels, streamed; JSON a page at a time.
    let (status, csv, _) = b.get("/export/classroom-observation.csv").await;
    assert_eq!(status, 200);
    assert!(csv.starts_with('\u{feff}') && csv.lines().count() > 10, "{}", &csv[..200.min(csv.len())]);
    let resp = b.http.get(format!("{base}/export/guidance-log.xlsx")).header("cookie", b.cookie_header()).send().await.expect("xlsx");
    assert_eq!(resp.status(), 200);
    let xlsx = resp.bytes().await.expect("body");
    assert!(xlsx.starts_with(b"PK\x03\x04") && xlsx.len() > 4000, "an XLSX (zip) file: {} bytes", xlsx.len());
    let (status, json, _) = b.get("/api/records?template=guidance-log&limit=5").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["records"].as_array().expect("records").len(), 5);
    assert!(v["next"].is_string());

    // 8. Sign out: the session is gone.
    let (_, page, _) = b.get("/").await;
    let csrf = hidden(&page, "csrf");
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.0, 303);
    assert_eq!(b.get("/").await.0, 303);
}
