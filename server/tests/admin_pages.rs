//! Running a programme from the browser: the admin pages for schools, people and tasks, through
//! the router as a browser would call it. An admin imports 20 people from an XLSX file, assigns
//! schools and an expert, prints their enrolment codes, and a tablet enrols from one printed
//! payload and syncs; every bad file lists its bad rows and imports nothing; supervisors only
//! read; a POST without the session's CSRF token is refused.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rusqlite::Connection;
use shidao_core::sync::enrol_payload::EnrolPayload;
use shidao_core::template::Role;
use shidao_server::enrolment::EnrolSettings;
use shidao_server::web::auth::{SignIn, hash_password, sign_in};
use shidao_server::{AppState, accounts, app};
use tower::ServiceExt;

const PASSWORD: &str = "correct-horse";

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    body: String,
    location: Option<String>,
}

/// Who may sign in to the pages: the admin and the supervisor of programme `p`.
struct Session {
    cookie: String,
    csrf: String,
}

impl World {
    /// Programme `p` with 瓯海's categories (示范 / 优质 / 潜质), schools s1–s4, an admin and a
    /// supervisor; programme `q` with school q1 and a person of its own.
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let state = AppState::open(&dir.path().join("central.db")).expect("store");
        state.with_db(|c| {
            accounts::add_programme(c, "p", "瓯海区初中全面提升行动", None).expect("p");
            let mut rules = shidao_server::programme::presets::preset("ouhai")
                .expect("preset")
                .rules;
            rules.terms.clear();
            shidao_server::programme::store::save(c, "p", &rules, "test", 0).expect("rules");
            for (id, name, category) in [
                ("s1", "第一中学", "示范"),
                ("s2", "第二中学", "优质"),
                ("s3", "第三中学", "潜质"),
                ("s4", "第四中学", "优质"),
            ] {
                accounts::add_school(c, "p", id, name, category, "").expect("school");
            }
            accounts::add_programme(c, "q", "别处", None).expect("q");
            accounts::add_school(c, "q", "q1", "别处中学", "", "").expect("q1");
            let hash = hash_password(PASSWORD).expect("hash");
            for (id, name, role, programme) in [
                ("adm", "区管理员", Role::Admin, "p"),
                ("sup", "周督导", Role::Supervisor, "p"),
                ("other", "别处老师", Role::Expert, "q"),
            ] {
                accounts::add_user(c, id, name, role, Some(programme), &[], Some(&hash), 0)
                    .expect("user");
            }
        });
        World { state, _dir: dir }
    }

    fn session(&self, user: &str) -> Session {
        let now = shidao_core::Clock::system().now();
        self.state.with_db(|c| {
            let SignIn::Session(id) =
                sign_in(c, user, PASSWORD, "127.0.0.1", now).expect("sign in")
            else {
                panic!("no session for {user}")
            };
            let csrf: String = c
                .query_row(
                    "SELECT csrf FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC LIMIT 1",
                    [user],
                    |r| r.get(0),
                )
                .expect("csrf");
            Session {
                cookie: format!("shidao_session={id}"),
                csrf,
            }
        })
    }

    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            location,
        }
    }

    async fn get(&self, s: &Session, path: &str) -> Answer {
        self.call(
            Request::get(path)
                .header("cookie", &s.cookie)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn post(&self, s: &Session, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", shidao_server::web::page::url(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.call(
            Request::post(path)
                .header("cookie", &s.cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
    }

    /// A file upload as a browser sends it: the text fields, then the file.
    async fn upload(
        &self,
        s: &Session,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &[u8]),
    ) -> Answer {
        let boundary = "----shidao-test-boundary-7f3a";
        let mut body: Vec<u8> = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                file.0
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.call(
            Request::post(path)
                .header("cookie", &s.cookie)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(body))
                .expect("request"),
        )
        .await
    }

    /// Everything the pages may change: people, assignments, schools, tasks, expert teams, the
    /// audit log, enrolment codes.
    fn snapshot(&self) -> String {
        self.state.with_db(|c| {
            [
                "SELECT id, name, role, programme_id, active, password_hash IS NULL FROM users ORDER BY id",
                "SELECT user_id, school_id FROM assignments ORDER BY 1, 2",
                "SELECT id, programme_id, name, category, key_project FROM schools ORDER BY id",
                "SELECT id, programme_id, school_id, title, target, unit, start_date, due_date, source FROM tasks ORDER BY id",
                "SELECT school_id, user_id FROM expert_team ORDER BY 1, 2",
                "SELECT seq, actor, action, target FROM audit_log ORDER BY seq",
                "SELECT code_hash FROM enrol_codes ORDER BY 1",
            ]
            .iter()
            .map(|sql| dump(c, sql))
            .collect::<Vec<_>>()
            .join("\n--\n")
        })
    }

    fn audit(&self, action: &str) -> Vec<AuditRow> {
        self.state.with_db(|c| {
            let mut stmt = c
                .prepare("SELECT actor, target, before, after, detail FROM audit_log WHERE action = ?1 ORDER BY seq")
                .expect("select");
            stmt.query_map([action], |r| {
                Ok((r.get(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default(), r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
        })
    }
}

/// An audit row: actor, target, before, after, detail.
type AuditRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A person as stored: id, name, role, programme, without a password, their schools.
type Stored = (String, String, String, Option<String>, bool, Option<String>);

/// A bad file: what it shows, the import, the mode, the file, the problems expected.
type BadFile = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    Vec<(u32, &'static str, &'static str)>,
);

fn dump(c: &Connection, sql: &str) -> String {
    let mut stmt = c.prepare(sql).expect("select");
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            let mut cells = Vec::new();
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i)?;
                cells.push(format!("{v:?}"));
            }
            Ok(cells.join("|"))
        })
        .expect("rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

/// An XLSX workbook of one sheet with these rows (the first is the header).
fn xlsx(rows: &[Vec<&str>]) -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if !cell.is_empty() {
                sheet.write_string(r as u32, c as u16, *cell).expect("cell");
            }
        }
    }
    book.save_to_buffer().expect("xlsx")
}

/// Text as the page escaped it, read back.
fn unescape(s: &str) -> String {
    let mut out = s.to_string();
    for (from, to) in [
        ("&#38;", "&"),
        ("&#39;", "'"),
        ("&#34;", "\""),
        ("&#60;", "<"),
        ("&#62;", ">"),
        ("&#96;", "`"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// The rows of the refusal page's problem table: `(row, column, problem)`.
fn problems(html: &str) -> Vec<(u32, String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<tr data-row=\"") {
        rest = &rest[i + "<tr data-row=\"".len()..];
        let row: u32 = rest[..rest.find('"').expect("row")]
            .parse()
            .expect("row number");
        let cells: Vec<String> = rest
            .split("<td>")
            .skip(1)
            .take(3)
            .map(|c| c.split("</td>").next().unwrap_or_default().to_string())
            .collect();
        out.push((row, unescape(&cells[1]), unescape(&cells[2])));
    }
    out
}

fn person_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("t{i:02}")).collect()
}

#[tokio::test]
async fn an_admin_imports_twenty_people_from_xlsx_assigns_schools_prints_codes_and_a_tablet_enrols_and_syncs()
 {
    // The relay listens for real, so that a tablet can enrol from a printed payload.
    let mut w = World::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    w.state.enrolment = Arc::new(EnrolSettings {
        public_url: Some(base.clone()),
        ca: None,
    });
    tokio::spawn(shidao_server::serve(
        listener,
        w.state.clone(),
        std::future::pending(),
    ));
    let admin = w.session("adm");

    // 1. The admin finds the people page from the header of any page.
    let home = w.get(&admin, "/admin/forms").await;
    for link in ["/admin/people", "/admin/schools", "/admin/tasks"] {
        assert!(
            home.body.contains(&format!("href=\"{link}\"")),
            "the header links {link}"
        );
    }
    let page = w.get(&admin, "/admin/people").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"import-people\""));

    // 2. A workbook of 20 people with Chinese headers, Chinese and English role names and
    //    school lists separated by 、 , and ;.
    let ids = person_ids(20);
    let names: Vec<String> = (1..=20).map(|i| format!("老师{i}")).collect();
    let roles = ["视导员", "专家", "校长", "inspector", "Expert"];
    let schools = ["s1", "s1、s2", "s2,s3", "s3;s4", ""];
    let mut rows = vec![vec!["账号", "姓名", "角色", "学校"]];
    for i in 0..20 {
        rows.push(vec![
            ids[i].as_str(),
            names[i].as_str(),
            roles[i % roles.len()],
            schools[i % schools.len()],
        ]);
    }
    let r = w
        .upload(
            &admin,
            "/admin/people/import",
            &[("csrf", &admin.csrf), ("programme", "p"), ("mode", "add")],
            ("教师名单.xlsx", &xlsx(&rows)),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/admin/people?programme=p&done=imported-20")
    );
    let imported: Vec<Stored> =
        w.state.with_db(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, name, role, programme_id, password_hash IS NULL,
                            (SELECT group_concat(school_id, ',') FROM (SELECT school_id FROM assignments a WHERE a.user_id = u.id ORDER BY school_id))
                     FROM users u WHERE id LIKE 't%' ORDER BY id",
                )
                .expect("select");
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
        });
    assert_eq!(imported.len(), 20);
    for (i, (id, name, role, programme, no_password, assigned)) in imported.iter().enumerate() {
        let expected_role = ["inspector", "expert", "principal", "inspector", "expert"][i % 5];
        let expected_schools = ["s1", "s1,s2", "s2,s3", "s3,s4", ""][i % 5];
        assert_eq!(
            (
                id.as_str(),
                name.as_str(),
                role.as_str(),
                programme.as_deref(),
                *no_password,
                assigned.as_deref().unwrap_or("")
            ),
            (
                ids[i].as_str(),
                names[i].as_str(),
                expected_role,
                Some("p"),
                true,
                expected_schools
            )
        );
    }
    // Each person is in the audit log by the admin, and the import as a whole.
    let added = w.audit("user.add");
    assert_eq!(added.len(), 20, "{added:?}");
    for (actor, target, before, after, _) in &added {
        assert_eq!(actor, "adm");
        assert!(before.is_none(), "{target} is new");
        let after: serde_json::Value =
            serde_json::from_str(after.as_deref().expect("after")).expect("json");
        assert_eq!(after["programme"], "p");
        assert_eq!(after["password_set"], false);
    }
    let import = w.audit("user.import");
    assert_eq!(import.len(), 1);
    assert_eq!(import[0].4.as_deref(), Some("20 row(s) from 教师名单.xlsx"));
    // The list shows them, each with a link to their enrolment page.
    let page = w
        .get(&admin, "/admin/people?programme=p&done=imported-20")
        .await;
    assert!(page.body.contains("已导入 20"), "the result is shown");
    for id in &ids {
        assert!(
            page.body
                .contains(&format!("href=\"/admin/people/{id}/enrol\"")),
            "{id} links to the enrolment page"
        );
    }

    // 3. Assign schools by hand: t05 had none, now s4 and s1; the edit is in the log with
    //    before and after.
    let r = w
        .post(
            &admin,
            "/admin/people",
            &[
                ("csrf", &admin.csrf),
                ("programme", "p"),
                ("mode", "edit"),
                ("id", "t05"),
                ("name", "老师5"),
                ("role", "expert"),
                ("schools", "s4、s1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/admin/people/t05?programme=p&done=saved")
    );
    let (_, _, before, after, _) = w.audit("user.add").pop().expect("the edit");
    let before: serde_json::Value = serde_json::from_str(&before.expect("before")).expect("json");
    let after: serde_json::Value = serde_json::from_str(&after.expect("after")).expect("json");
    assert_eq!(
        (before["schools"].clone(), after["schools"].clone()),
        (serde_json::Value::Null, serde_json::json!("s1,s4"))
    );
    let page = w.get(&admin, "/admin/people/t05?programme=p").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("s1、s4") && page.body.contains("/admin/people/t05/enrol"));

    // 4. An expert on s1's team, from the school's page.
    let page = w.get(&admin, "/admin/schools/s1?programme=p").await;
    assert!(page.body.contains("id=\"team-form\""), "{}", page.body);
    let r = w
        .post(
            &admin,
            "/admin/programme/team",
            &[
                ("csrf", &admin.csrf),
                ("programme", "p"),
                ("school", "s1"),
                ("user", "t02"),
                ("action", "assign"),
                ("back", "school"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/admin/schools/s1?programme=p&done=team")
    );
    let page = w
        .get(&admin, "/admin/schools/s1?programme=p&done=team")
        .await;
    let team = &page.body[page.body.find("id=\"experts\"").expect("team table")..];
    assert!(team.contains("t02") && team.contains("老师2"), "{team}");
    assert_eq!(w.audit("expert.assign").len(), 1);

    // 5. The codes of everyone at s1, printed: one card per person, each a payload.
    let at_s1: Vec<String> = w.state.with_db(|c| {
        let mut stmt = c
            .prepare("SELECT user_id FROM assignments WHERE school_id = 's1' ORDER BY user_id")
            .expect("select");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    });
    assert_eq!(
        at_s1.len(),
        4 + 4 + 1,
        "t01/t06/t11/t16, t02/t07/t12/t17 and t05"
    );
    let sheet = w
        .post(
            &admin,
            "/admin/enrol-sheet",
            &[("csrf", &admin.csrf), ("school", "s1")],
        )
        .await;
    assert_eq!(sheet.status, StatusCode::OK, "{}", sheet.body);
    let marker = "<div class=\"payload\" hidden>";
    let payloads: Vec<EnrolPayload> = sheet
        .body
        .split(marker)
        .skip(1)
        .map(|p| {
            let text = unescape(p.split('<').next().expect("payload text"));
            EnrolPayload::parse(&text).expect("a payload the tablet reads")
        })
        .collect();
    assert_eq!(payloads.len(), at_s1.len(), "one code per person of s1");
    for id in &at_s1 {
        assert!(sheet.body.contains(id.as_str()), "{id} has a card");
    }
    let page = w.get(&admin, "/admin/people/t01/enrol").await;
    assert_eq!(page.status, StatusCode::OK, "the enrolment page of t01");

    // 6. A tablet enrols with the first card's payload over HTTP and syncs: it receives its
    //    person's schools.
    let payload = &payloads[0];
    assert_eq!(payload.server, base);
    let http = shidao_core::sync::http::HttpSync::new(&payload.server, None).expect("client");
    let enrolled = http.enrol(&payload.code, "一号平板").await.expect("enrol");
    let owner: String = w.state.with_db(|c| {
        c.query_row(
            "SELECT user_id FROM devices WHERE id = ?1",
            [&enrolled.device],
            |r| r.get(0),
        )
        .expect("device")
    });
    assert!(at_s1.contains(&owner));
    let tablet = shidao_core::store::Store::open_in_memory().expect("tablet");
    let me = shidao_core::Editor {
        user: shidao_core::UserId::new(&owner).expect("id"),
        device: shidao_core::DeviceId::new(&enrolled.device).expect("id"),
        role: Role::Inspector,
    };
    http.sync(
        &tablet,
        &enrolled.token,
        &me,
        &shidao_core::sync::http::Cancel::new(),
        |_| {},
    )
    .await
    .expect("sync");
    let reference = shidao_core::sync::SyncClient::reference(&tablet)
        .expect("reference")
        .expect("the tablet has its reference data");
    assert_eq!(reference.user.id, owner);
    assert!(
        reference.schools.iter().any(|s| s.id == "s1"),
        "the tablet has s1: {:?}",
        reference.schools
    );
    // The person's page lists the tablet with its last sync.
    let page = w
        .get(&admin, &format!("/admin/people/{owner}?programme=p"))
        .await;
    let devices = &page.body[page.body.find("id=\"devices\"").expect("devices")..];
    assert!(
        devices.contains("一号平板") && !devices.contains("尚无设备"),
        "{devices}"
    );
    let list = w.get(&admin, "/admin/people?programme=p").await;
    let row = &list.body[list
        .body
        .find(&format!("data-person=\"{owner}\""))
        .expect("row")..];
    let row = &row[..row.find("</tr>").expect("end")];
    assert!(
        row.contains("<td>1</td>") && !row.contains("<td>—</td>"),
        "one tablet with a last sync: {row}"
    );
}

#[tokio::test]
async fn every_bad_file_lists_its_bad_rows_and_imports_nothing() {
    let w = World::new();
    let admin = w.session("adm");
    // Someone who exists already, for the "add" mode.
    w.state.with_db(|c| {
        accounts::add_user(
            c,
            "wang",
            "王老师",
            Role::Inspector,
            Some("p"),
            &[],
            None,
            0,
        )
        .expect("wang")
    });
    let csv = |s: &str| s.as_bytes().to_vec();
    let cases: Vec<BadFile> = vec![
        (
            "a missing column",
            "/admin/people/import",
            "add",
            csv("账号,姓名,学校\nt01,老师1,s1\n"),
            vec![(1, "角色/role", "缺少此列")],
        ),
        (
            "a duplicate id within the file",
            "/admin/people/import",
            "add",
            csv(
                "id,name,role,schools\nt01,老师1,inspector,s1\nt02,老师2,expert,s2\nt01,又一个,expert,s3\n",
            ),
            vec![(4, "id", "already in row 2")],
        ),
        (
            "an existing id when the mode is add",
            "/admin/people/import",
            "add",
            csv("账号,姓名,角色,学校\nt01,老师1,视导员,s1\nwang,王老师,视导员,s2\n"),
            vec![(3, "账号", "exists already")],
        ),
        (
            "an id of another programme, even when updating",
            "/admin/people/import",
            "update",
            csv("账号,姓名,角色\nother,换个名字,专家\n"),
            vec![(2, "账号", "belongs to another programme")],
        ),
        (
            "an unknown school",
            "/admin/people/import",
            "add",
            csv("账号,姓名,角色,学校\nt01,老师1,视导员,s1、nowhere\n"),
            vec![(2, "学校", "school `nowhere` does not exist")],
        ),
        (
            "an unknown role",
            "/admin/people/import",
            "add",
            csv("账号,姓名,角色,学校\nt01,老师1,清洁工,s1\n"),
            vec![(2, "角色", "unknown role `清洁工`")],
        ),
        (
            "a school of another programme",
            "/admin/people/import",
            "add",
            csv("账号,姓名,角色,学校\nt01,老师1,视导员,s1;q1\n"),
            vec![(2, "学校", "school `q1` belongs to another programme")],
        ),
        (
            "empty required cells, in a workbook",
            "/admin/people/import",
            "add",
            xlsx(&[
                vec!["账号", "姓名", "角色"],
                vec!["t01", "", "专家"],
                vec!["t02", "老师2", ""],
                vec!["", "老师3", "专家"],
            ]),
            vec![
                (2, "姓名", "must not be empty"),
                (3, "角色", "must not be empty"),
                (4, "账号", "must not be empty"),
            ],
        ),
        (
            "every problem at once, each listed",
            "/admin/people/import",
            "add",
            xlsx(&[
                vec!["账号", "姓名", "角色", "学校"],
                vec!["t01", "老师1", "视导员", "s1"],
                vec!["t01", "老师1", "视导员", "s1"],
                vec!["wang", "王老师", "视导员", "s1"],
                vec!["t03", "老师3", "厨师", "s1"],
                vec!["t04", "老师4", "专家", "q1、nowhere"],
            ]),
            vec![
                (3, "账号", "duplicate id `t01`"),
                (4, "账号", "exists already"),
                (5, "角色", "unknown role"),
                (6, "学校", "belongs to another programme"),
                (6, "学校", "does not exist"),
            ],
        ),
        (
            "schools: a missing name column",
            "/admin/schools/import",
            "add",
            csv("学校编号,类别\ns9,示范\n"),
            vec![(1, "学校名称/name", "缺少此列")],
        ),
        (
            "schools: a category the rule book does not have",
            "/admin/schools/import",
            "add",
            csv("学校编号,学校名称,类别\ns8,八中,示范\ns9,九中,一流\n"),
            vec![(3, "类别", "`一流` is not one of the programme's categories")],
        ),
        (
            "schools: an existing id when adding, a duplicate, another programme's id",
            "/admin/schools/import",
            "add",
            xlsx(&[
                vec!["id", "name", "category"],
                vec!["s1", "一中", "示范"],
                vec!["s8", "八中", "优质"],
                vec!["s8", "八中", "优质"],
                vec!["q1", "别处中学", ""],
            ]),
            vec![
                (2, "id", "exists already"),
                (4, "id", "already in row 3"),
                (5, "id", "belongs to another programme"),
            ],
        ),
    ];
    for (what, path, mode, file, expected) in cases {
        let before = w.snapshot();
        let name = if file.starts_with(b"PK") {
            "bad.xlsx"
        } else {
            "bad.csv"
        };
        let r = w
            .upload(
                &admin,
                path,
                &[("csrf", &admin.csrf), ("programme", "p"), ("mode", mode)],
                (name, &file),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert!(
            r.body.contains("未导入任何内容"),
            "{what}: says nothing was imported"
        );
        let got = problems(&r.body);
        assert_eq!(got.len(), expected.len(), "{what}: {got:?}");
        for ((row, column, message), (erow, ecolumn, emessage)) in got.iter().zip(&expected) {
            assert_eq!(
                (*row, column.as_str()),
                (*erow, *ecolumn),
                "{what}: {got:?}"
            );
            assert!(
                message.contains(emessage),
                "{what}: row {row} says {message}, not {emessage}"
            );
        }
        assert_eq!(w.snapshot(), before, "{what}: nothing changed");
    }

    // The same file made good imports, all of it; a school export reads back as it was.
    let r = w
        .upload(
            &admin,
            "/admin/schools/import",
            &[("csrf", &admin.csrf), ("programme", "p"), ("mode", "add")],
            (
                "schools.csv",
                "学校编号,学校名称,类别,重点项目\ns8,八中,优质,劳动教育\ns9,九中,潜质,\n"
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(w.audit("school.add").len(), 2);
    assert_eq!(w.audit("school.import").len(), 1);
    let export = w.get(&admin, "/admin/schools.csv?programme=p").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export.body.contains("s8,八中,优质,劳动教育"),
        "{}",
        export.body
    );
    assert!(!export.body.contains("q1"), "only the programme's schools");
    let before = w.snapshot();
    let r = w
        .upload(
            &admin,
            "/admin/schools/import",
            &[
                ("csrf", &admin.csrf),
                ("programme", "p"),
                ("mode", "update"),
            ],
            ("schools.csv", export.body.as_bytes()),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let strip_audit = |s: String| {
        s.split("\n--\n")
            .enumerate()
            .filter(|(i, _)| *i != 5)
            .map(|(_, p)| p.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip_audit(w.snapshot()),
        strip_audit(before),
        "the export imports back unchanged"
    );
}

#[tokio::test]
async fn schools_and_tasks_are_added_and_edited_through_the_admin_commands() {
    let w = World::new();
    let admin = w.session("adm");

    // 1. A school with a category of the rule book; the same id again as "add" is refused.
    let school =
        |mode: &'static str, id: &'static str, name: &'static str, category: &'static str| {
            vec![
                ("programme", "p"),
                ("mode", mode),
                ("id", id),
                ("name", name),
                ("category", category),
                ("key_project", "课程改革"),
            ]
        };
    let with_csrf = |mut f: Vec<(&'static str, &'static str)>, csrf: &str| {
        let mut out: Vec<(String, String)> = vec![("csrf".into(), csrf.to_string())];
        out.extend(f.drain(..).map(|(k, v)| (k.to_string(), v.to_string())));
        out
    };
    let post = |form: Vec<(String, String)>, path: &'static str| {
        let w = &w;
        let admin = &admin;
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            w.post(admin, path, &pairs).await
        }
    };
    let r = post(
        with_csrf(school("add", "s5", "第五中学", "示范"), &admin.csrf),
        "/admin/schools",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&admin, "/admin/schools?programme=p").await;
    assert!(page.body.contains("data-school=\"s5\"") && page.body.contains("第五中学"));
    let before = w.snapshot();
    let r = post(
        with_csrf(school("add", "s5", "又一个五中", "示范"), &admin.csrf),
        "/admin/schools",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("exists already"));
    let r = post(
        with_csrf(school("edit", "s5", "第五中学", "一流"), &admin.csrf),
        "/admin/schools",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a category the rule book lacks"
    );
    let r = post(
        with_csrf(school("edit", "q1", "抢来的学校", ""), &admin.csrf),
        "/admin/schools",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "another programme's school"
    );
    assert!(r.body.contains("belongs to another programme"));
    assert_eq!(w.snapshot(), before, "the refusals changed nothing");
    let r = post(
        with_csrf(school("edit", "s5", "第五初级中学", "潜质"), &admin.csrf),
        "/admin/schools",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (actor, target, before, after, _) = w.audit("school.add").pop().expect("edit");
    assert_eq!((actor.as_str(), target.as_str()), ("adm", "s5"));
    let before: serde_json::Value = serde_json::from_str(&before.expect("before")).expect("json");
    let after: serde_json::Value = serde_json::from_str(&after.expect("after")).expect("json");
    assert_eq!(
        (
            before["name"].as_str(),
            after["name"].as_str(),
            after["category"].as_str()
        ),
        (Some("第五中学"), Some("第五初级中学"), Some("潜质"))
    );

    // 2. A district-wide task with its source sentence, then edited; a school task.
    let task = |mode: &'static str, target: &'static str, school: &'static str| {
        vec![
            ("programme", "p"),
            ("mode", mode),
            ("id", "visits"),
            ("title", "视导进校"),
            ("target", target),
            ("unit", "次"),
            ("start", "2026-09-01"),
            ("due", "2027-01-31"),
            ("school", school),
            ("source", "每学期视导进校不少于 20 次。"),
        ]
    };
    let r = post(
        with_csrf(task("add", "20", ""), &admin.csrf),
        "/admin/tasks",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = post(
        with_csrf(task("add", "20", ""), &admin.csrf),
        "/admin/tasks",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the same id as add");
    let r = post(
        with_csrf(task("edit", "zwanzig", ""), &admin.csrf),
        "/admin/tasks",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a target that is no number"
    );
    let r = post(
        with_csrf(task("edit", "20", "q1"), &admin.csrf),
        "/admin/tasks",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "another programme's school"
    );
    let r = post(
        with_csrf(task("edit", "24", "s2"), &admin.csrf),
        "/admin/tasks",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let stored: (f64, Option<String>, String) = w.state.with_db(|c| {
        c.query_row(
            "SELECT target, school_id, source FROM tasks WHERE id = 'visits'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("task")
    });
    assert_eq!(
        stored,
        (
            24.0,
            Some("s2".into()),
            "每学期视导进校不少于 20 次。".into()
        )
    );
    let edits = w.audit("task.add");
    assert_eq!(edits.len(), 2, "{edits:?}");
    let after: serde_json::Value =
        serde_json::from_str(edits[1].3.as_deref().expect("after")).expect("json");
    let before: serde_json::Value =
        serde_json::from_str(edits[1].2.as_deref().expect("before")).expect("json");
    assert_eq!(
        (before["target"].as_f64(), after["target"].as_f64()),
        (Some(20.0), Some(24.0))
    );
    let page = w.get(&admin, "/admin/tasks?programme=p&edit=visits").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("每学期视导进校不少于 20 次。") && page.body.contains("value=\"24\"")
    );

    // 3. Disable and enable a person: their session ends; the log holds both.
    let sup = w.session("sup");
    let r = w
        .post(
            &admin,
            "/admin/people/sup/active",
            &[("csrf", &admin.csrf), ("programme", "p"), ("active", "0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = w.get(&sup, "/admin/people").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "a disabled person's session is over"
    );
    let active: bool = w.state.with_db(|c| {
        c.query_row("SELECT active FROM users WHERE id = 'sup'", [], |r| {
            r.get(0)
        })
        .expect("sup")
    });
    assert!(!active);
    let r = w
        .post(
            &admin,
            "/admin/people/sup/active",
            &[("csrf", &admin.csrf), ("programme", "p"), ("active", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(w.audit("user.disable").len(), 1);
    assert_eq!(w.audit("user.enable").len(), 1);
    let r = w
        .post(
            &admin,
            "/admin/people/other/active",
            &[("csrf", &admin.csrf), ("programme", "p"), ("active", "0")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "another programme's person"
    );
}

#[tokio::test]
async fn supervisors_read_the_pages_and_every_post_of_theirs_is_refused_and_changes_nothing() {
    let w = World::new();
    let sup = w.session("sup");
    for path in [
        "/admin/schools",
        "/admin/schools/s1",
        "/admin/people",
        "/admin/people/adm",
        "/admin/tasks",
    ] {
        let r = w.get(&sup, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(
            r.body.contains("id=\"read-only\""),
            "{path} says it is read-only"
        );
        assert!(
            !r.body.contains("method=\"post\" action=\"/admin/"),
            "{path} has no admin form"
        );
    }
    let csv = w.get(&sup, "/admin/schools.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    let before = w.snapshot();
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/admin/schools",
            vec![("mode", "add"), ("id", "s7"), ("name", "七中")],
        ),
        (
            "/admin/schools",
            vec![("mode", "edit"), ("id", "s1"), ("name", "改名")],
        ),
        (
            "/admin/people",
            vec![
                ("mode", "add"),
                ("id", "x1"),
                ("name", "某"),
                ("role", "admin"),
            ],
        ),
        (
            "/admin/people",
            vec![
                ("mode", "edit"),
                ("id", "sup"),
                ("name", "周督导"),
                ("role", "admin"),
            ],
        ),
        ("/admin/people/adm/active", vec![("active", "0")]),
        (
            "/admin/tasks",
            vec![
                ("mode", "add"),
                ("id", "k"),
                ("title", "任务"),
                ("target", "1"),
                ("unit", "次"),
                ("start", "2026-09-01"),
                ("due", "2026-12-31"),
            ],
        ),
        (
            "/admin/programme/team",
            vec![
                ("school", "s1"),
                ("user", "sup"),
                ("action", "assign"),
                ("back", "school"),
            ],
        ),
    ];
    for (path, fields) in &forms {
        let mut form = vec![("csrf", sup.csrf.as_str()), ("programme", "p")];
        form.extend(fields.iter().copied());
        let r = w.post(&sup, path, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    for path in ["/admin/schools/import", "/admin/people/import"] {
        let r = w
            .upload(
                &sup,
                path,
                &[("csrf", &sup.csrf), ("programme", "p"), ("mode", "update")],
                ("x.csv", "id,name,role\nx2,某,admin\n".as_bytes()),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    assert_eq!(w.snapshot(), before, "nothing changed");
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let w = World::new();
    let admin = w.session("adm");
    let other = w.session("sup");
    let before = w.snapshot();
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/admin/schools",
            vec![("mode", "add"), ("id", "s7"), ("name", "七中")],
        ),
        (
            "/admin/people",
            vec![
                ("mode", "add"),
                ("id", "x1"),
                ("name", "某"),
                ("role", "admin"),
            ],
        ),
        ("/admin/people/sup/active", vec![("active", "0")]),
        (
            "/admin/tasks",
            vec![
                ("mode", "add"),
                ("id", "k"),
                ("title", "任务"),
                ("target", "1"),
                ("unit", "次"),
                ("start", "2026-09-01"),
                ("due", "2026-12-31"),
            ],
        ),
    ];
    for (path, fields) in &forms {
        for csrf in [None, Some(""), Some(other.csrf.as_str()), Some("forged")] {
            let mut form: Vec<(&str, &str)> = csrf.map(|c| vec![("csrf", c)]).unwrap_or_default();
            form.push(("programme", "p"));
            form.extend(fields.iter().copied());
            let r = w.post(&admin, path, &form).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{path} with {csrf:?}: {}",
                r.body
            );
        }
    }
    for path in ["/admin/schools/import", "/admin/people/import"] {
        for fields in [
            vec![("programme", "p")],
            vec![("csrf", "forged"), ("programme", "p")],
        ] {
            let r = w
                .upload(
                    &admin,
                    path,
                    &fields,
                    ("x.csv", "id,name,role\nx2,某,admin\n".as_bytes()),
                )
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        }
    }
    assert_eq!(w.snapshot(), before, "nothing changed");
    // Without a session at all the pages send to sign-in.
    let r = w
        .call(
            Request::get("/admin/people")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[test]
fn the_console_imports_the_same_files_with_the_same_problems() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: shidao_server::admin::AdminCommand,
    }
    let w = World::new();
    let dir = tempfile::tempdir().expect("dir");
    let run = |args: &[&str]| {
        let cmd = Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
            .expect("command")
            .command;
        w.state
            .with_db(|c| shidao_server::admin::run(c, cmd, 0))
            .map_err(|e| e.to_string())
    };
    let bad = dir.path().join("bad.xlsx");
    std::fs::write(
        &bad,
        xlsx(&[
            vec!["账号", "姓名", "角色", "学校"],
            vec!["t01", "老师1", "视导员", "s1"],
            vec!["t02", "老师2", "厨师", "q1"],
        ]),
    )
    .expect("write");
    let before = w.snapshot();
    let e = run(&[
        "import-users",
        "--programme",
        "p",
        bad.to_str().expect("path"),
    ])
    .expect_err("a bad file");
    assert!(
        e.contains("row 3, column 角色") && e.contains("row 3, column 学校"),
        "{e}"
    );
    assert_eq!(w.snapshot(), before, "nothing imported");
    let good = dir.path().join("good.xlsx");
    std::fs::write(
        &good,
        xlsx(&[
            vec!["id", "name", "role", "schools"],
            vec!["t01", "老师1", "inspector", "s1、s2"],
        ]),
    )
    .expect("write");
    let out = run(&[
        "import-users",
        "--programme",
        "p",
        good.to_str().expect("path"),
    ])
    .expect("a good file");
    assert_eq!(out, "1 users imported into p");
    let added = w.audit("user.add");
    assert_eq!(
        (added.len(), added[0].0.as_str(), added[0].1.as_str()),
        (1, "console", "t01")
    );
    assert_eq!(w.audit("user.import").len(), 1, "and the import as a whole");
}
