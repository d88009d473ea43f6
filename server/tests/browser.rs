//! The review pages in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! A supervisor signs in, opens the dashboard and a school report, resolves a conflict, returns a
//! record with a comment; the author's tablet syncs and shows the comment. An admin uploads a
//! broken form (the refusal names its place), previews a good one and publishes it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/install-test-deps.sh installs them).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use shidao_core::store::Store;
use shidao_core::sync::http::{Cancel, HttpSync};
use shidao_core::template::Role;
use shidao_core::{DeviceId, Editor, RecordId, Status, UserId};
use shidao_server::{accounts, demo, forms, serve, AppState};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(profile: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (Debian package chromium-driver; scripts/install-test-deps.sh)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1600", format!("--user-data-dir={}", profile.display())]
        }}}});
        let resp: Value = http.post(format!("{base}/session")).json(&caps).send().await.expect("session").json().await.expect("json");
        let session = resp["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {resp}")).to_string();
        Driver { child, http, base, session }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.expect("webdriver").json().await.expect("json");
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css})).await;
        v[ELEMENT].as_str().expect("element").to_string()
    }

    async fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/value"), json!({"text": text})).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", json!({})).await.as_str().unwrap_or_default().to_string()
    }

    /// The page once it contains `text` (a click that submits a form or follows a link returns
    /// before the next page is there on a busy machine); the last page seen after 20 s.
    async fn source_with(&self, text: &str) -> String {
        let mut page = self.source().await;
        for _ in 0..200 {
            if page.contains(text) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            page = self.source().await;
        }
        page
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default()).expect("png");
        std::fs::write(path, png).expect("write screenshot");
    }
}

#[tokio::test]
async fn supervisor_works_in_chromium() {
    let dir = tempfile::tempdir().expect("dir");
    let state = AppState::open(&dir.path().join("central.db")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    demo::seed_scaled(&state, &base, 0.2).await.expect("demo");
    let browser = Driver::start(&dir.path().join("profile")).await;
    let shots = std::env::var_os("SHIDAO_SCREENSHOTS").map(std::path::PathBuf::from);

    // 1. Sign in.
    browser.go(&format!("{base}/")).await;
    assert!(browser.source().await.contains("督导登录"), "sent to sign-in");
    browser.type_in("#user", demo::SUPERVISOR.0).await;
    browser.type_in("#password", demo::SUPERVISOR.1).await;
    browser.click("#sign-in").await;

    // 2. The dashboard, then a school report.
    let dash = browser.source_with("项目任务进展").await;
    assert!(dash.contains("瓯海区初中全面提升行动") && dash.contains("项目任务进展"), "dashboard after sign-in");
    if let Some(d) = &shots {
        browser.screenshot(&d.join("dashboard.png")).await;
    }
    browser.click("a[href='/schools/ouhai-01']").await;
    let report = browser.source_with("一校一报告").await;
    assert!(report.contains("一校一报告") && report.contains("一、学校基本情况") && report.contains("三、学生发展"), "school report");
    if let Some(d) = &shots {
        browser.screenshot(&d.join("report.png")).await;
    }

    // 3. A record with a conflict: pick a value; the conflict is gone.
    let record: String = state.with_db(|c| {
        c.query_row("SELECT a.record_id FROM answers a JOIN records r ON r.id = a.record_id
             WHERE a.conflicts > 1 AND a.field = 'visit_focus' AND r.status != 'approved' LIMIT 1", [], |r| r.get(0))
            .expect("a conflict in the demo")
    });
    browser.go(&format!("{base}/records/{record}")).await;
    assert!(browser.source().await.contains("采用此值"));
    if let Some(d) = &shots {
        browser.screenshot(&d.join("conflict.png")).await;
    }
    let pick = r#"name="field" value="visit_focus""#;
    assert!(browser.source().await.contains(pick), "the focus can be picked");
    browser.click(r#"form:has(input[name="field"][value="visit_focus"]) button.pick"#).await;
    // The click submits a form; the redirected page may come a moment later on a busy machine.
    let conflicts = || -> i64 {
        state.with_db(|c| {
            c.query_row("SELECT conflicts FROM answers WHERE record_id = ?1 AND field = 'visit_focus'", [&record], |r| r.get(0)).expect("answer")
        })
    };
    for _ in 0..100 {
        if conflicts() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(conflicts(), 0, "the pick was stored as the supervisor's edit");
    browser.go(&format!("{base}/records/{record}")).await;
    assert!(!browser.source().await.contains(pick), "the focus is no longer in conflict on the page");

    // 4. Return a submitted record with a comment.
    let (submitted, author): (String, String) = state.with_db(|c| {
        c.query_row(
            "SELECT r.id, r.created_by FROM records r JOIN users u ON u.id = r.created_by WHERE r.status = 'submitted' AND u.role = 'expert' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a submitted record")
    });
    browser.go(&format!("{base}/records/{submitted}")).await;
    let comment = "请补充本次指导的约定事项和完成时限。";
    browser.type_in("#return-comment", comment).await;
    browser.click("#return").await;
    assert!(browser.source_with(comment).await.contains(comment), "the comment shows in the review log");

    // 5. The author's tablet syncs and sees the returned record with the comment.
    let code = state.with_db(|c| accounts::new_enrol_code(c, &author, shidao_core::Clock::system().now())).expect("code");
    let http = HttpSync::new(&base, None).expect("client");
    let enrolled = http.enrol(&code, "专家平板").await.expect("enrol");
    let me = Editor { user: UserId::new(&author).expect("id"), device: DeviceId::new(&enrolled.device).expect("id"), role: Role::Expert };
    let tablet = Store::open_in_memory().expect("store");
    http.sync(&tablet, &enrolled.token, &me, &Cancel::new(), |_| {}).await.expect("sync");
    let got = tablet.load(&RecordId::new(&submitted).expect("id"), &me).expect("record on the tablet");
    assert_eq!(got.status(), Status::Returned);
    assert_eq!(got.return_comment().as_deref(), Some(comment));
}

#[tokio::test]
async fn admin_publishes_a_form_in_chromium() {
    // The WebDriver client speaks through reqwest, which needs rustls's provider (the other test's
    // demo seeding installs it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let state = AppState::open(&dir.path().join("central.db")).expect("store");
    state.with_db(|c| {
        accounts::add_programme(c, "lucheng", "鹿城区初中强校工程", None).expect("programme");
        accounts::add_school(c, "lucheng", "lc-01", "鹿城实验中学", "优质", "").expect("school");
        let hash = shidao_server::web::auth::hash_password("admin-password").expect("hash");
        accounts::add_user(c, "lc-admin", "区管理员", Role::Admin, Some("lucheng"), &[], Some(&hash), 0).expect("admin");
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    let browser = Driver::start(&dir.path().join("profile")).await;
    let shots = std::env::var_os("SHIDAO_SCREENSHOTS").map(std::path::PathBuf::from);
    // The good form from the repository; a broken copy refers to a field that does not exist.
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/forms/tingke-pingjia-v1.json");
    let good = good.canonicalize().expect("tests/forms/tingke-pingjia-v1.json");
    let text = std::fs::read_to_string(&good).expect("read the form");
    let broken = dir.path().join("tingke-broken.json");
    std::fs::write(&broken, text.replace("answered(${r_goal})", "answered(${r_gaol})")).expect("write");

    // 1. Sign in; the header links the forms page.
    browser.go(&format!("{base}/")).await;
    assert!(browser.source().await.contains("督导登录"), "sent to sign-in");
    browser.type_in("#user", "lc-admin").await;
    browser.type_in("#password", "admin-password").await;
    browser.click("#sign-in").await;
    browser.source_with("鹿城区初中强校工程").await;
    browser.click("a[href='/admin/forms']").await;
    let page = browser.source_with("form-file").await;
    assert!(page.contains("表单管理") && page.contains("classroom-observation"), "the forms page lists the built-in library");

    // 2. A broken form: the refusal is shown with the file, the field and the problem.
    browser.type_in("#form-file", &broken.display().to_string()).await;
    browser.click("#preview").await;
    let page = browser.source_with("id=\"refusal\"").await;
    assert!(page.contains("id=\"refusal\""), "a refusal page");
    assert!(page.contains("tingke-broken.json") && page.contains("field `comment`") && page.contains("r_gaol"), "the refusal names its place");
    if let Some(d) = &shots {
        browser.screenshot(&d.join("form-refused.png")).await;
    }
    assert!(!state.with_db(|c| forms::list(c, "lucheng")).expect("list").iter().any(|f| f.id == "tingke-pingjia"), "nothing stored");

    // 3. A file over the size cap: refused with the limit, in the browser too.
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 2 * forms::MAX_FORM_BYTES]).expect("write");
    browser.go(&format!("{base}/admin/forms")).await;
    browser.source_with("form-file").await;
    browser.type_in("#form-file", &huge.display().to_string()).await;
    browser.click("#preview").await;
    let page = browser.source_with("id=\"refusal\"").await;
    assert!(page.contains("id=\"refusal\"") && page.contains("超过 5 MiB 上限"), "the size cap's refusal: {}", &page[..page.len().min(3000)]);

    // 4. The good form: the preview shows its sections and fields in Chinese.
    browser.go(&format!("{base}/admin/forms")).await;
    browser.source_with("form-file").await;
    browser.type_in("#form-file", &good.display().to_string()).await;
    browser.click("#preview").await;
    let page = browser.source_with("id=\"publish\"").await;
    for text in ["区教研室课堂教学评价表", "1. 基本信息", "2. 评价", "听课日期", "学生参与度", "一个班不超过60人", "优秀", "新表单"] {
        assert!(page.contains(text), "the preview lacks {text}");
    }
    if let Some(d) = &shots {
        browser.screenshot(&d.join("form-preview.png")).await;
    }

    // 5. Publish: back on the list with the result and the new version.
    browser.click("#publish").await;
    let page = browser.source_with("id=\"result\"").await;
    assert!(page.contains("已发布：tingke-pingjia v1"), "the result message");
    assert!(page.contains(r#"data-form="tingke-pingjia" data-version="1""#) && page.contains("区教研室课堂教学评价表"), "the list shows the new version");
    let listed = state.with_db(|c| forms::list(c, "lucheng")).expect("list");
    let mine = listed.iter().find(|f| f.id == "tingke-pingjia").expect("published");
    assert_eq!((mine.version, mine.published_by.as_str(), mine.current), (1, "lc-admin", true));
    if let Some(d) = &shots {
        browser.screenshot(&d.join("forms.png")).await;
    }
}

/// The school report printed by the server's headless Chromium (`?format=pdf`), read back with
/// `pdftotext` (poppler-utils): every section heading, the signature block and the Chinese text
/// are in the PDF, on A4 pages.
#[tokio::test]
async fn the_school_report_prints_to_a4_pdf_with_every_section() {
    let dir = tempfile::tempdir().expect("dir");
    let state = AppState::open(&dir.path().join("central.db")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    demo::seed_scaled(&state, &base, 0.2).await.expect("demo");

    // Sign in as a browser would: the form's token in its cookie and in the form.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let form = http.get(format!("{base}/login")).send().await.expect("login form");
    let cookie_of = |resp: &reqwest::Response, name: &str| -> String {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let login = cookie_of(&form, "shidao_login");
    let page = form.text().await.expect("page");
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().expect("csrf").to_string();
    let signed = http
        .post(format!("{base}/login"))
        .header("cookie", format!("shidao_login={login}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            [("csrf", csrf.as_str()), ("user", demo::SUPERVISOR.0), ("password", demo::SUPERVISOR.1)]
                .iter()
                .map(|(k, v)| format!("{k}={}", v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>()))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status().as_u16(), 303);
    let session = cookie_of(&signed, "shidao_session");

    let resp = http
        .get(format!("{base}/schools/ouhai-01?format=pdf"))
        .header("cookie", format!("shidao_session={session}"))
        .send()
        .await
        .expect("pdf");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/pdf"));
    let pdf = resp.bytes().await.expect("bytes");
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &pdf).expect("write");
    let out = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext must be installed (Debian package poppler-utils; scripts/install-test-deps.sh)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8 text");
    for heading in [
        // 瓯海's rules: three dimensions as the chapters.
        "一校一报告", "编号", "一、学校基本情况", "二、工作开展情况", "三、学生发展", "四、教师发展", "五、学校发展", "六、主要成效", "七、存在问题",
        "八、意见建议", "九、评估结论", "十、待落实事项", "项目要求达成情况", "评估组组长", "督导室负责人", "公章",
        "学校签收（校长）", "数据截至", "瓯海区初中全面提升行动",
    ] {
        assert!(text.contains(heading), "the printed report lacks {heading}:\n{text}");
    }
    // A4 pages (595 x 842 points), more than one: every section starts a page.
    let info = Command::new("pdfinfo").arg(&file).output().expect("pdfinfo");
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(info.contains("(A4)"), "A4 pages: {info}");
    let pages: usize = info.lines().find_map(|l| l.strip_prefix("Pages:")).and_then(|n| n.trim().parse().ok()).expect("pages");
    assert!(pages >= 7, "sections on pages of their own: {pages} pages");
    // The running header repeats on every page.
    assert!(text.matches("一校一报告 · 编号").count() >= pages, "a header on each page:\n{text}");
}

/// An admin runs a programme from the browser: imports 20 people from an XLSX workbook (after a
/// bad file is refused with its rows), assigns a person's schools, prints the codes of a school,
/// and a tablet enrols from one printed payload and syncs its schools.
#[tokio::test]
async fn admin_imports_people_and_prints_their_codes_in_chromium() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let mut state = AppState::open(&dir.path().join("central.db")).expect("store");
    state.with_db(|c| {
        accounts::add_programme(c, "lucheng", "鹿城区初中强校工程", None).expect("programme");
        for (id, name) in [("lc-01", "鹿城实验中学"), ("lc-02", "鹿城第二中学")] {
            accounts::add_school(c, "lucheng", id, name, "", "").expect("school");
        }
        let hash = shidao_server::web::auth::hash_password("admin-password").expect("hash");
        accounts::add_user(
            c,
            "lc-admin",
            "区管理员",
            Role::Admin,
            Some("lucheng"),
            &[],
            Some(&hash),
            0,
        )
        .expect("admin");
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    state.enrolment = std::sync::Arc::new(shidao_server::enrolment::EnrolSettings {
        public_url: Some(base.clone()),
        ca: None,
    });
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    let browser = Driver::start(&dir.path().join("profile")).await;
    let shots = std::env::var_os("SHIDAO_SCREENSHOTS").map(std::path::PathBuf::from);

    // The files: a workbook of 20 people with Chinese headers, and a CSV with a bad row.
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["账号", "姓名", "角色", "学校"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).expect("header");
    }
    for i in 1..=20u32 {
        let row = [
            format!("lc-t{i:02}"),
            format!("鹿城老师{i}"),
            if i % 2 == 0 { "专家" } else { "视导员" }.to_string(),
            if i <= 10 { "lc-01" } else { "lc-02" }.to_string(),
        ];
        for (c, v) in row.iter().enumerate() {
            sheet.write_string(i, c as u16, v).expect("cell");
        }
    }
    let good = dir.path().join("鹿城人员.xlsx");
    book.save(&good).expect("xlsx");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "账号,姓名,角色,学校\nlc-x1,某,厨师,lc-01\n").expect("csv");

    // 1. Sign in; the header links the people page.
    browser.go(&format!("{base}/")).await;
    browser.source_with("督导登录").await;
    browser.type_in("#user", "lc-admin").await;
    browser.type_in("#password", "admin-password").await;
    browser.click("#sign-in").await;
    browser.source_with("鹿城区初中强校工程").await;
    browser.click("header a[href='/admin/people']").await;
    browser.source_with("people-file").await;

    // 2. The bad file: every bad row listed, nobody imported.
    browser
        .type_in("#people-file", &bad.display().to_string())
        .await;
    browser.click("#import-people-submit").await;
    let page = browser.source_with("id=\"problems\"").await;
    assert!(
        page.contains("未导入任何内容") && page.contains("data-row=\"2\"") && page.contains("厨师"),
        "the refusal lists the row"
    );
    if let Some(d) = &shots {
        browser.screenshot(&d.join("import-refused.png")).await;
    }
    let people = || -> i64 {
        state.with_db(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM users WHERE id LIKE 'lc-t%' OR id LIKE 'lc-x%'",
                [],
                |r| r.get(0),
            )
            .expect("count")
        })
    };
    assert_eq!(people(), 0);

    // 3. The workbook: 20 people, each with a link to their enrolment page.
    browser.click("#back").await;
    browser.source_with("people-file").await;
    browser
        .type_in("#people-file", &good.display().to_string())
        .await;
    browser.click("#import-people-submit").await;
    let page = browser.source_with("已导入 20").await;
    assert!(page.contains("已导入 20"), "the result is shown");
    assert_eq!(people(), 20);
    for i in 1..=20 {
        assert!(page.contains(&format!("href=\"/admin/people/lc-t{i:02}/enrol\"")));
    }
    if let Some(d) = &shots {
        browser.screenshot(&d.join("people.png")).await;
    }

    // 4. lc-t11 also works at lc-01: edited on their page.
    browser
        .click("a[href='/admin/people/lc-t11?programme=lucheng']")
        .await;
    browser.source_with("edit-person").await;
    let field = browser.find("#edit-person input[name='schools']").await;
    browser
        .cmd("POST", &format!("/element/{field}/clear"), json!({}))
        .await;
    browser
        .type_in("#edit-person input[name='schools']", "lc-01、lc-02")
        .await;
    browser.click("#edit-person button").await;
    let page = browser.source_with("已保存").await;
    assert!(page.contains("lc-01、lc-02"), "the person's schools");

    // 5. Print the codes of lc-01 from its school page: one card for each of its 11 people.
    browser
        .go(&format!("{base}/admin/schools/lc-01?programme=lucheng"))
        .await;
    browser.source_with("team-form").await;
    browser
        .click("a[href='/admin/enrol-sheet?school=lc-01']")
        .await;
    browser.source_with("sheet-form").await;
    browser.click("#sheet-form button").await;
    let page = browser.source_with("class=\"card\"").await;
    if let Some(d) = &shots {
        browser.screenshot(&d.join("enrol-sheet.png")).await;
    }
    // The browser writes the page back as its DOM (`hidden=""`): each payload div's text.
    let payloads: Vec<String> = page
        .split("<div class=\"payload\"")
        .skip(1)
        .map(|p| {
            let text = &p[p.find('>').map_or(0, |i| i + 1)..];
            text.split('<')
                .next()
                .unwrap_or_default()
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        })
        .collect();
    assert_eq!(payloads.len(), 11, "ten of lc-01 and lc-t11");

    // 6. A tablet enrols from one printed payload and syncs: it has its person's school.
    let payload =
        shidao_core::sync::enrol_payload::EnrolPayload::parse(&payloads[0]).expect("payload");
    assert_eq!(payload.server, base);
    let http = HttpSync::new(&payload.server, None).expect("client");
    let enrolled = http.enrol(&payload.code, "鹿城平板").await.expect("enrol");
    let user: String = state.with_db(|c| {
        c.query_row(
            "SELECT user_id FROM devices WHERE id = ?1",
            [&enrolled.device],
            |r| r.get(0),
        )
        .expect("device")
    });
    let me = Editor {
        user: UserId::new(&user).expect("id"),
        device: DeviceId::new(&enrolled.device).expect("id"),
        role: Role::Inspector,
    };
    let tablet = Store::open_in_memory().expect("store");
    http.sync(&tablet, &enrolled.token, &me, &Cancel::new(), |_| {})
        .await
        .expect("sync");
    let reference = shidao_core::sync::SyncClient::reference(&tablet)
        .expect("reference")
        .expect("reference data");
    assert!(reference.schools.iter().any(|s| s.id == "lc-01"));
    // The person's page shows the tablet.
    browser
        .go(&format!("{base}/admin/people/{user}?programme=lucheng"))
        .await;
    let page = browser.source_with("鹿城平板").await;
    assert!(page.contains("鹿城平板"), "the tablet is listed");
}
