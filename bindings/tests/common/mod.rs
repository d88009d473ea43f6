//! A real `shidao-server` on loopback for the sync tests, run inside the test process: the relay
//! (`shidao_server::serve` on a tokio runtime of its own) over a central store in a temp dir,
//! with a programme (which publishes its own 听课评价表, an XLSForm workbook), a school, two
//! inspectors imported from a people workbook (XLSX) through the admin pages' import, and one
//! enrolment code each (and a QR payload each, as the printed sheet carries); plus the helpers the
//! foreign scripts need to make each step deterministic:
//!
//! - `control_url`: `GET {control_url}/revoke/{device}` revokes a device with
//!   `shidao_server::accounts::revoke_device` (what an admin does), so a script revokes a tablet
//!   between two of its own steps;
//! - `GET {control_url}/approve/{record}`: the supervisor `sup` approves a submitted record on
//!   the relay (what the review page does: the core's `approve`, applied like a push), so a
//!   script can make an edit of its own land beside an approval;
//! - `hang_url`: a server that accepts connections and never answers, so a sync waits on the
//!   network until it is cancelled;
//! - `unreachable_url`: a loopback port nobody listens on.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use shidao_core::{Clock, Role};
use shidao_server::enrolment::{self, EnrolSettings};
use shidao_server::{accounts, AppState};

/// The people workbook (XLSX) of [`Loopback::people_workbook_rows`].
fn people_workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (r, row) in Loopback::people_workbook_rows().iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            sheet.write_string(r as u32, c as u16, *cell).expect("cell");
        }
    }
    book.save_to_buffer().expect("workbook")
}

/// The form the programme published on the test relay (tests/forms/tingke-pingjia.xlsx).
pub const FORM: &str = "tingke-pingjia";

pub struct Loopback {
    pub url: String,
    pub control_url: String,
    pub hang_url: String,
    pub unreachable_url: String,
    /// One-time enrolment codes of the two inspectors of school `ouhai-a`.
    pub code_wang: String,
    pub code_li: String,
    /// Enrolment QR payloads (`shidao://enrol?…`) of the same two, as the relay makes them
    /// (`admin enrol-qr`, the person page), with other codes.
    pub qr_wang: String,
    pub qr_li: String,
    pub state: AppState,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Loopback {
    pub fn start() -> Loopback {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = AppState::open(&dir.path().join("central.db")).expect("central store");
        let now = Clock::system().now();
        let (code_wang, code_li) = state.with_db(|conn| {
            accounts::add_programme(conn, "ouhai", "瓯海区初中全面提升行动", Some(("2026-09-01", "2027-01-31"))).expect("programme");
            accounts::add_school(conn, "ouhai", "ouhai-a", "瓯海区实验中学", "示范", "智慧课堂").expect("school");
            // The two inspectors come from a workbook, imported as the admin page imports one.
            let table = shidao_server::directory::Table::read(&people_workbook()).expect("the people workbook reads");
            let n = shidao_server::directory::import_people(conn, "ouhai", &table, shidao_server::directory::Mode::Add, now, shidao_server::admin::CONSOLE_ACTOR)
                .expect("the people import");
            assert_eq!(n, 2);
            accounts::add_user(conn, "sup", "周督导", Role::Supervisor, Some("ouhai"), &[], None, now).expect("sup");
            // A district task and the programme's indicator bank: the tablets offer them from a list.
            accounts::add_task(conn, "ouhai", None, "new-places", "新增优质学位", 2400.0, "个", "2026-09-01", "2027-08-31").expect("task");
            {
                use shidao_server::programme::rules::{Chapter, IndicatorDef, ReportStructure, Source};
                let source = Source { document: "《瓯海区初中全面提升行动计划》".into(), sentence: "力求每一所初中都有25%以上的市、区级“三名”“三坛”和学科骨干".into() };
                let mut rules = shidao_server::programme::load(conn, "ouhai").expect("rules");
                rules.report = Some(ReportStructure {
                    source: source.clone(),
                    chapters: vec![Chapter { id: "teacher".into(), title: "教师发展".into(), title_en: "Teacher development".into(), meanings: vec!["evaluation.area.teacher".into()], indicators: vec![] }],
                });
                rules.indicators = vec![IndicatorDef {
                    id: "backbone-share".into(),
                    name: "骨干教师占比".into(),
                    name_en: "Share of key teachers".into(),
                    chapter: "teacher".into(),
                    unit: "%".into(),
                    target: Some(25.0),
                    source,
                }];
                shidao_server::programme::store::save(conn, "ouhai", &rules, "admin", now).expect("the indicator bank");
            }
            // The district's own 听课评价表, an XLSForm, published as the programme's admin would.
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/forms/tingke-pingjia.xlsx");
            let bytes = std::fs::read(file).expect("the 听课评价表 workbook");
            let form = shidao_server::forms::check_file(file, &bytes, false).expect("the workbook imports");
            shidao_server::forms::publish(conn, "ouhai", &form, "file tingke-pingjia.xlsx", "admin", now).expect("publish");
            (accounts::new_enrol_code(conn, "wang", now).expect("code"), accounts::new_enrol_code(conn, "li", now).expect("code"))
        });

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        state.enrolment = std::sync::Arc::new(EnrolSettings::load(Some(&url), None).expect("enrolment settings"));
        let qr = |user: &str| state.with_db(|c| enrolment::issue(c, &state.enrolment, user, now, (shidao_server::audit::CONSOLE, None))).expect("code").payload.expect("payload").to_string();
        let (qr_wang, qr_li) = (qr("wang"), qr("li"));
        rt.spawn(shidao_server::serve(listener, state.clone(), std::future::pending()));

        let control = TcpListener::bind("127.0.0.1:0").expect("bind control");
        let control_url = format!("http://{}", control.local_addr().expect("addr"));
        let admin = state.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            for stream in control.incoming().flatten() {
                answer_control(stream, &admin, &handle);
            }
        });

        let hang = TcpListener::bind("127.0.0.1:0").expect("bind hang");
        let hang_url = format!("http://{}", hang.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in hang.incoming().flatten() {
                held.push(stream); // never read, never answered, never closed
            }
        });

        let unreachable_url = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };

        Loopback { url, control_url, hang_url, unreachable_url, code_wang, code_li, qr_wang, qr_li, state, rt, _dir: dir }
    }

    /// The people workbook an admin would upload: 账号, 姓名, 角色, 学校 (Chinese headers and role).
    pub fn people_workbook_rows() -> [[&'static str; 4]; 3] {
        [["账号", "姓名", "角色", "学校"], ["wang", "王老师", "视导员", "ouhai-a"], ["li", "李老师", "视导员", "ouhai-a"]]
    }

    /// Serves the same relay over HTTPS too, with the certificate and key at these PEM files;
    /// returns its `https://localhost:…` address.
    pub fn serve_https(&self, cert: &std::path::Path, key: &std::path::Path) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind https");
        let url = format!("https://localhost:{}", listener.local_addr().expect("addr").port());
        let (mut state, cert, key) = (self.state.clone(), cert.to_path_buf(), key.to_path_buf());
        // The self-signed certificate stands for the district's own authority: the HTTPS
        // relay names it in its QR codes and hands it out at /v1/ca.pem.
        state.enrolment = std::sync::Arc::new(EnrolSettings::load(Some(&url), Some(&cert)).expect("enrolment settings"));
        self.rt.spawn(async move { shidao_server::serve_tls(listener, state, &cert, &key).await });
        url
    }

    /// The environment a foreign script reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHIDAO_TEST_SERVER", self.url.clone()),
            ("SHIDAO_TEST_CODE_WANG", self.code_wang.clone()),
            ("SHIDAO_TEST_CODE_LI", self.code_li.clone()),
            ("SHIDAO_TEST_QR_WANG", self.qr_wang.clone()),
            ("SHIDAO_TEST_QR_LI", self.qr_li.clone()),
            ("SHIDAO_TEST_CONTROL", self.control_url.clone()),
            ("SHIDAO_TEST_HANG", self.hang_url.clone()),
            ("SHIDAO_TEST_UNREACHABLE", self.unreachable_url.clone()),
            ("SHIDAO_TEST_FORM", FORM.to_string()),
        ]
    }

    /// A new enrolment QR payload for `user`, its code issued at `at` (the relay's clock).
    pub fn qr(&self, user: &str, at: i64) -> String {
        let issued = self.state.with_db(|c| enrolment::issue(c, &self.state.enrolment, user, at, (shidao_server::audit::CONSOLE, None))).expect("code");
        issued.payload.expect("payload").to_string()
    }

    pub fn revoke(&self, device: &str) {
        self.state.with_db(|conn| accounts::revoke_device(conn, device, Clock::system().now())).expect("revoke");
    }
}

/// The supervisor approves a record on the relay, as the review page does.
fn approve(state: &AppState, handle: &tokio::runtime::Handle, record: &str) -> Result<(), String> {
    use shidao_core::sync::protocol::Push;
    use shidao_core::{DeviceId, Editor, UserId};
    let record = record.to_string();
    handle
        .block_on(state.blocking_mut(move |conn| {
            let now = Clock::system().now();
            // The review page's own device row (`web/records.rs`), which never syncs with a token.
            conn.execute(
                "INSERT OR IGNORE INTO devices (id, user_id, name, token_hash, created_at) VALUES ('sup-web', 'sup', 'web', 'web:control', ?1)",
                [now],
            )?;
            let device = accounts::Device {
                id: DeviceId::new("sup-web").expect("id"),
                user: UserId::new("sup").expect("id"),
                name: "web".into(),
                role: Role::Supervisor,
                programme: Some("ouhai".into()),
            };
            let doc: Vec<u8> = conn.query_row("SELECT doc FROM documents WHERE record_id = ?1", [&record], |r| r.get(0))?;
            let editor = Editor { user: UserId::new("sup").expect("id"), device: DeviceId::new("sup-web").expect("id"), role: Role::Supervisor };
            let mut r = shidao_core::Record::load([doc.as_slice()], shidao_server::sync::template_of, editor, Clock::system())
                .map_err(|e| shidao_server::error::AppError::Internal(e.to_string()))?;
            let before = r.heads();
            r.approve(None).map_err(|e| shidao_server::error::AppError::Forbidden(e.to_string()))?;
            let push = Push { record: record.clone(), changes: r.save_after(&before), heads: r.heads().iter().map(|h| h.to_string()).collect() };
            shidao_server::sync::apply_one(conn, &device, &push, now, None)
        }))
        .map_err(|e| e.to_string())
}

/// One request to the control endpoint: `GET /revoke/{device}` or `GET /approve/{record}`.
fn answer_control(stream: TcpStream, state: &AppState, handle: &tokio::runtime::Handle) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or_default();
    let (status, body) = match (path.strip_prefix("/revoke/"), path.strip_prefix("/approve/")) {
        (Some(device), _) => match state.with_db(|conn| accounts::revoke_device(conn, device, Clock::system().now())) {
            Ok(()) => ("200 OK", format!("revoked {device}")),
            Err(e) => ("404 Not Found", e.to_string()),
        },
        (_, Some(record)) => match approve(state, handle, record) {
            Ok(()) => ("200 OK", format!("approved {record}")),
            Err(e) => ("409 Conflict", e),
        },
        _ => ("404 Not Found", format!("no such control path {path}")),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
