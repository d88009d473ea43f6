//! The forms admin page through the router without a socket: who may see and act (supervisors
//! read only, their POSTs refused with nothing changed; every POST needs the session's CSRF
//! token), refusals shown with their place and nothing stored (a broken form, an oversized
//! upload, an unreadable workbook, an incompatible version, a definition changed after its
//! preview), the preview of a good form, publishing it, and retiring a version.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shidao_core::template::Role;
use shidao_server::web::auth::{hash_password, sign_in, SignIn};
use shidao_server::{accounts, app, forms, AppState};
use tower::ServiceExt;

const GOOD: &str = include_str!("../../tests/forms/tingke-pingjia-v1.json");
const BOUNDARY: &str = "----shidao-form-boundary";

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let state = AppState::open(&dir.path().join("central.db")).expect("store");
        state.with_db(|c| {
            accounts::add_programme(c, "p", "测试项目", None).expect("programme");
            accounts::add_programme(c, "q", "另一个项目", None).expect("programme");
            let hash = hash_password("correct-horse").expect("hash");
            accounts::add_user(c, "adm", "管理员", Role::Admin, Some("p"), &[], Some(&hash), 0).expect("admin");
            accounts::add_user(c, "sup", "督导", Role::Supervisor, Some("p"), &[], Some(&hash), 0).expect("supervisor");
            accounts::add_user(c, "root", "区级管理员", Role::Admin, None, &[], Some(&hash), 0).expect("admin of every programme");
        });
        World { state, _dir: dir }
    }

    /// A session cookie of `user`, and its CSRF token.
    fn session(&self, user: &str) -> (String, String) {
        let now = shidao_core::Clock::system().now();
        self.state.with_db(|c| {
            let SignIn::Session(id) = sign_in(c, user, "correct-horse", "127.0.0.1", now).expect("sign in") else { panic!("no session for {user}") };
            let csrf: String = c
                .query_row("SELECT csrf FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC LIMIT 1", [user], |r| r.get(0))
                .expect("csrf");
            (format!("shidao_session={id}"), csrf)
        })
    }

    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone()).oneshot(req).await.expect("response");
        let status = resp.status();
        let location = resp.headers().get("location").map(|v| v.to_str().expect("location").to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        Answer { status, location, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, cookie: &str, path: &str) -> Answer {
        self.call(Request::get(path).header("cookie", cookie).body(Body::empty()).expect("request")).await
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
        let req = Request::post(path)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.call(req).await
    }

    /// Uploads a file to the preview, as the page's form does (token first, then the file).
    async fn upload(&self, cookie: &str, csrf: &str, name: &str, bytes: &[u8], skip: bool) -> Answer {
        let mut body = Vec::new();
        let mut text = |k: &str, v: &str| {
            body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
        };
        text("csrf", csrf);
        text("programme", "p");
        if skip {
            text("skip_unsupported", "1");
        }
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let req = Request::post("/admin/forms/preview")
            .header("cookie", cookie)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(Body::from(body))
            .expect("request");
        self.call(req).await
    }

    /// Every row of the registry and its retirement, to show that nothing changed.
    fn registry(&self) -> Vec<(String, String, u32, Option<i64>)> {
        self.state.with_db(|c| {
            c.prepare("SELECT programme_id, template_id, version, retired_at FROM form_versions ORDER BY 1, 2, 3")
                .expect("query")
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .expect("rows")
                .collect::<rusqlite::Result<_>>()
                .expect("rows")
        })
    }

    fn definitions(&self) -> i64 {
        self.state.with_db(|c| c.query_row("SELECT COUNT(*) FROM form_defs", [], |r| r.get(0)).expect("count"))
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The (HTML-escaped) value of a hidden input, read as a browser reads it.
fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html.find(&key).unwrap_or_else(|| panic!("no hidden {name} in {html}")) + key.len();
    unescape(html[at..].split('"').next().expect("value"))
}

/// Replaces each character reference (`&#34;`, `&amp;` …) by its character.
fn unescape(s: &str) -> String {
    let (mut out, mut rest) = (String::new(), s);
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').unwrap_or_else(|| panic!("an unterminated reference in {s}")) + at;
        let r = &rest[at + 1..end];
        let c = match r {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => r.strip_prefix('#').and_then(|n| n.parse().ok()).and_then(char::from_u32).unwrap_or_else(|| panic!("an unknown reference &{r};")),
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn supervisors_read_admins_act_and_every_post_needs_the_token() {
    let w = World::new();
    let (sup, sup_csrf) = w.session("sup");
    let (adm, adm_csrf) = w.session("adm");

    // 1. No session: sent to sign-in, for the page and its POSTs.
    let a = w.get("", "/admin/forms").await;
    assert_eq!((a.status, a.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    assert_eq!(w.post("", "/admin/forms/retire", &[("form", "visit"), ("version", "1")]).await.status, StatusCode::SEE_OTHER);

    // 2. The supervisor sees the programme's versions (the built-in library) read only.
    let page = w.get(&sup, "/admin/forms").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"href="/admin/forms""#), "linked from the header");
    assert!(page.body.contains("classroom-observation") && page.body.contains("当前版本") && page.body.contains("内置"), "{}", page.body);
    assert!(page.body.contains(r#"id="read-only""#));
    assert!(!page.body.contains(r#"id="form-file""#) && !page.body.contains("/admin/forms/retire"), "no upload form, no buttons");
    // The admin sees the upload form and a retire button per live version.
    let page = w.get(&adm, "/admin/forms").await;
    assert!(page.body.contains(r#"id="form-file""#) && page.body.contains(r#"id="skip-unsupported""#));
    let live = w.state.with_db(|c| forms::list(c, "p")).expect("list").iter().filter(|f| f.retired_at.is_none()).count();
    assert!(live >= 6);
    assert_eq!(page.body.matches("class=\"secondary retire\"").count(), live);
    // In English on request.
    let en = w.get(&format!("{adm}; shidao_lang=en"), "/admin/forms").await;
    assert!(en.body.contains("Upload a form or a new version") && en.body.contains(">current<") && !en.body.contains("上传新表单"), "{}", en.body);
    // Another programme's page is not theirs.
    assert_eq!(w.get(&adm, "/admin/forms?programme=q").await.status, StatusCode::FORBIDDEN);

    // 3. The supervisor's POSTs, with their valid token: refused, nothing changed.
    let before = (w.registry(), w.definitions());
    let a = w.upload(&sup, &sup_csrf, "tingke-pingjia-v1.json", GOOD.as_bytes(), false).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let checked = forms::check_file("tingke-pingjia-v1.json", GOOD.as_bytes(), false).expect("the good form checks");
    let publish = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("programme", "p".to_string()),
            ("file", "tingke-pingjia-v1.json".to_string()),
            ("hash", checked.hash.clone()),
            ("definition", checked.definition.clone()),
        ]
    };
    let form = publish(&sup_csrf);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(w.post(&sup, "/admin/forms/publish", &form).await.status, StatusCode::FORBIDDEN);
    let retire = [("csrf", sup_csrf.as_str()), ("programme", "p"), ("form", "classroom-observation"), ("version", "1")];
    assert_eq!(w.post(&sup, "/admin/forms/retire", &retire).await.status, StatusCode::FORBIDDEN);
    assert_eq!((w.registry(), w.definitions()), before, "a supervisor changed nothing");

    // 4. The admin's POSTs without the token, or with another session's: refused, nothing changed.
    for csrf in ["", "forged", sup_csrf.as_str()] {
        let form = publish(csrf);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).filter(|(k, _)| !(csrf.is_empty() && *k == "csrf")).collect();
        assert_eq!(w.post(&adm, "/admin/forms/publish", &form).await.status, StatusCode::FORBIDDEN, "publish with csrf {csrf:?}");
        let retire: Vec<(&str, &str)> =
            [("csrf", csrf), ("form", "classroom-observation"), ("version", "1")].into_iter().filter(|(k, _)| !(csrf.is_empty() && *k == "csrf")).collect();
        assert_eq!(w.post(&adm, "/admin/forms/retire", &retire).await.status, StatusCode::FORBIDDEN, "retire with csrf {csrf:?}");
        assert_eq!(w.upload(&adm, csrf, "tingke-pingjia-v1.json", GOOD.as_bytes(), false).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!((w.registry(), w.definitions()), before, "no token, no change");

    // 5. With the token the admin publishes and retires.
    let form = publish(&adm_csrf);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = w.post(&adm, "/admin/forms/publish", &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location.as_deref(), Some("/admin/forms?done=published&form=tingke-pingjia&version=1"));
    let page = w.get(&adm, a.location.as_deref().expect("back")).await;
    assert!(page.body.contains(r#"id="result""#) && page.body.contains("已发布：tingke-pingjia v1"), "{}", page.body);
    assert!(page.body.contains(r#"data-form="tingke-pingjia" data-version="1""#) && page.body.contains("区教研室课堂教学评价表"));
    let listed = w.state.with_db(|c| forms::list(c, "p")).expect("list");
    let mine = listed.iter().find(|f| f.id == "tingke-pingjia").expect("published");
    assert_eq!((mine.version, mine.published_by.as_str(), mine.source.as_str(), mine.current), (1, "adm", "file tingke-pingjia-v1.json", true));
    // Publishing it again changes nothing and says so.
    let again = w.post(&adm, "/admin/forms/publish", &form).await;
    assert_eq!(again.location.as_deref(), Some("/admin/forms?done=already&form=tingke-pingjia&version=1"));

    let retire = [("csrf", adm_csrf.as_str()), ("form", "tingke-pingjia"), ("version", "1")];
    let a = w.post(&adm, "/admin/forms/retire", &retire).await;
    assert_eq!((a.status, a.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/forms?done=retired&form=tingke-pingjia&version=1")));
    let retired = w.state.with_db(|c| forms::retired_at(c, "p", "tingke-pingjia", 1)).expect("retired_at");
    assert!(retired.is_some(), "the version is retired");
    let page = w.get(&adm, "/admin/forms").await;
    assert!(page.body.contains("已停用"));
    // An admin of no programme picks one; the forms go where the page says.
    let (root, root_csrf) = w.session("root");
    let page = w.get(&root, "/admin/forms?programme=q").await;
    assert!(page.body.contains("另一个项目") && page.body.contains(r#"href="/admin/forms?programme=p""#), "{}", page.body);
    assert_eq!(hidden(&page.body, "programme"), "q");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| if *k == "programme" { (*k, "q") } else if *k == "csrf" { (*k, root_csrf.as_str()) } else { (*k, *v) }).collect();
    let a = w.post(&root, "/admin/forms/publish", &form).await;
    assert_eq!(a.location.as_deref(), Some("/admin/forms?programme=q&done=published&form=tingke-pingjia&version=1"), "{}", a.body);
    assert!(w.state.with_db(|c| forms::list(c, "q")).expect("list").iter().any(|f| f.id == "tingke-pingjia" && f.published_by == "root"));
    let a = w.get(&root, "/admin/forms?programme=nowhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let unknown = [("csrf", adm_csrf.as_str()), ("form", "tingke-pingjia"), ("version", "7")];
    let a = w.post(&adm, "/admin/forms/retire", &unknown).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains(r#"id="refusal""#) && a.body.contains("tingke-pingjia v7 is not published in p"), "{}", a.body);
}

#[tokio::test]
async fn uploads_are_previewed_and_refusals_name_their_place() {
    let w = World::new();
    let (adm, csrf) = w.session("adm");
    let before = (w.registry(), w.definitions());

    // 1. A broken form: the refusal names the file, the field and the problem; nothing stored.
    let broken = GOOD.replace("answered(${r_goal})", "answered(${r_gaol})");
    let a = w.upload(&adm, &csrf, "broken.json", broken.as_bytes(), false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains(r#"id="refusal""#), "{}", a.body);
    assert!(a.body.contains("broken.json") && a.body.contains("field `comment`") && a.body.contains("r_gaol"), "{}", a.body);
    // Not JSON at all, and a workbook that cannot be read: refused naming the file.
    let a = w.upload(&adm, &csrf, "notes.json", "{\"id\": ".as_bytes(), false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("notes.json") && a.body.contains("not a valid template file"), "{}", a.body);
    let a = w.upload(&adm, &csrf, "听课表.xlsx", b"PK\x03\x04 not really a workbook", true).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains(r#"id="refusal""#) && a.body.contains("听课表.xlsx"), "{}", a.body);
    // No file chosen.
    let a = w.upload(&adm, &csrf, "", b"", false).await;
    assert!(a.status == StatusCode::BAD_REQUEST && a.body.contains("请选择一个表单文件"), "{}", a.body);

    // 2. Over the size cap: just over (checked by the registry) and far over (cut at the body
    //    limit); both say the limit.
    let just_over = vec![b' '; forms::MAX_FORM_BYTES + 1];
    let a = w.upload(&adm, &csrf, "big.json", &just_over, false).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("big.json") && a.body.contains("over the limit"), "{}", &a.body[..a.body.len().min(2000)]);
    let far_over = vec![b' '; forms::MAX_FORM_BYTES + 200 * 1024];
    let a = w.upload(&adm, &csrf, "huge.json", &far_over, false).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body.contains("超过 5 MiB 上限") && a.body.contains(r#"id="refusal""#), "{}", &a.body[..a.body.len().min(2000)]);
    assert_eq!((w.registry(), w.definitions()), before, "no refusal stored anything");

    // 3. The good form: a preview as a tablet draws it, in Chinese and English, new, publishable.
    let a = w.upload(&adm, &csrf, "tingke-pingjia-v1.json", GOOD.as_bytes(), false).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let p = &a.body;
    for text in [
        "区教研室课堂教学评价表", "District lesson evaluation sheet", // title
        "1. 基本信息", "2. 评价",                                   // sections in order
        "听课日期", "授课教师", "学科", "语文", "Maths", "学生人数",   // fields, options
        "一个班不超过60人", "At most 60 in a class", ". &#60;= 60",    // constraint and its message
        "等级评分", "学生参与度", "差", "Excellent",                  // ratings and levels
        "参与学生比例", "计算值", "if(${students} &#62; 0, ${r_participation} * 25, 0)", // computed
        "显示条件", "answered(${r_goal})", "条件必填", "${r_goal} &#60;= 2", // relevance, required when
        "总分", "r_goal</code> × 50", "≥ 85：优秀", "待改进",         // score, weights, bands
        "新表单：可以发布。",
    ] {
        assert!(p.contains(text), "the preview lacks {text}");
    }
    assert!(p.find("1. 基本信息") < p.find("2. 评价"), "sections in order");
    assert!(p.contains(r#"id="publish""#));
    assert_eq!(hidden(p, "definition"), forms::check_file("x.json", GOOD.as_bytes(), false).expect("checks").definition);
    assert_eq!((w.registry(), w.definitions()), before, "a preview stores nothing");

    // 4. A definition changed between preview and publish is refused: checked again, hash compared.
    let hash = hidden(p, "hash");
    let changed = hidden(p, "definition").replace("授课教师", "任课教师");
    let a = w.post(&adm, "/admin/forms/publish", &[("csrf", &csrf), ("file", "t.json"), ("hash", &hash), ("definition", &changed)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("不一致"), "{}", a.body);
    let unchecked = hidden(p, "definition").replace("\"kind\":\"date\"", "\"kind\":\"calendar\"");
    let a = w.post(&adm, "/admin/forms/publish", &[("csrf", &csrf), ("file", "t.json"), ("hash", &hash), ("definition", &unchecked)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("t.json") && a.body.contains("calendar"), "{}", a.body);
    assert_eq!((w.registry(), w.definitions()), before, "nothing unchecked is stored");

    // 5. Publish the previewed one; a second preview of the same file says it is published.
    let definition = hidden(p, "definition");
    let a = w.post(&adm, "/admin/forms/publish", &[("csrf", &csrf), ("programme", "p"), ("file", "tingke-pingjia-v1.json"), ("hash", &hash), ("definition", &definition)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let a = w.upload(&adm, &csrf, "tingke-pingjia-v1.json", GOOD.as_bytes(), false).await;
    assert!(a.body.contains("此版本已发布") && !a.body.contains(r#"id="publish""#), "{}", a.body);
    // Other content under the published version number is refused, saying which number to use.
    let reworded = GOOD.replace("授课教师", "任课教师");
    let a = w.upload(&adm, &csrf, "reworded.json", reworded.as_bytes(), false).await;
    assert!(a.body.contains("不能发布") && a.body.contains("publish it as v2") && !a.body.contains(r#"id="publish""#), "{}", a.body);

    // 6. A compatible v2 (a field added) is a new version; an incompatible one (a kind changed)
    //    is refused against the published v1 naming the field, with no publish button.
    let v2 = GOOD.replace("\"version\": 1", "\"version\": 2").replace(
        r#"{"id": "teacher", "kind": "text", "label": {"zh": "授课教师", "en": "Teacher"}, "required": true},"#,
        r#"{"id": "teacher", "kind": "text", "label": {"zh": "授课教师", "en": "Teacher"}, "required": true},
           {"id": "grade", "kind": "text", "label": {"zh": "年级", "en": "Grade"}},"#,
    );
    assert_ne!(v2, GOOD);
    let a = w.upload(&adm, &csrf, "v2.json", v2.as_bytes(), false).await;
    assert!(a.body.contains("新版本，与已发布的 v1兼容") && a.body.contains("年级") && a.body.contains(r#"id="publish""#), "{}", a.body);
    // (Its meaning `lesson.subject` goes too: a multiple choice cannot carry it.)
    let v3 = GOOD
        .replace("\"version\": 1", "\"version\": 3")
        .replace(r#""id": "subject", "kind": "single_choice""#, r#""id": "subject", "kind": "multiple_choice""#)
        .replace(r#", "lesson.subject": "subject""#, "");
    let before = (w.registry(), w.definitions());
    let a = w.upload(&adm, &csrf, "v3.json", v3.as_bytes(), false).await;
    assert!(a.body.contains("不能发布") && a.body.contains("field `subject`") && a.body.contains("published v1"), "{}", a.body);
    assert!(!a.body.contains(r#"id="publish""#));
    // Posted anyway, the publish step refuses it the same way.
    let c3 = forms::check_file("v3.json", v3.as_bytes(), false).expect("v3 loads");
    let a = w.post(&adm, "/admin/forms/publish", &[("csrf", &csrf), ("file", "v3.json"), ("hash", &c3.hash), ("definition", &c3.definition)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("field `subject`"), "{}", a.body);
    assert_eq!((w.registry(), w.definitions()), before, "the refused versions stored nothing");

    // 7. The built-in forms preview with what the tablet form above lacks: repeat groups with
    //    their sub-fields, hints, units, level descriptions. Unchanged, they are published already.
    let visit = shidao_core::template::builtin_source("inspection-visit").expect("built-in");
    let a = w.upload(&adm, &csrf, "inspection-visit.json", visit.as_bytes(), false).await;
    assert_eq!(a.status, StatusCode::OK);
    let p = &a.body;
    let team = p.find(r#"<tr data-field="team">"#).expect("the team repeat group");
    let member = p.find(r#"<tr data-field="member_name">"#).expect("its sub-field");
    let inner = p[team..].find("<table class=\"fields\">").map(|i| i + team).expect("a table of sub-fields in the group's row");
    assert!(team < inner && inner < member, "the sub-field sits inside the group's row");
    for text in ["重复组", "视导组成员", "行数：1 – …", "推门视导选", "单位：节 <span class=\"muted\" lang=\"en\">lessons</span>", "此版本已发布"] {
        assert!(p.contains(text), "the visit preview lacks {text}");
    }
    let lesson = shidao_core::template::builtin_source("classroom-observation").expect("built-in");
    let a = w.upload(&adm, &csrf, "classroom-observation.json", lesson.as_bytes(), false).await;
    assert!(
        a.body.contains("<b>1</b> 差 <span class=\"muted\" lang=\"en\">Very poor</span> <span class=\"points\">（30 分）</span>：无明确目标，或目标与教学内容明显不符"),
        "a level with its points and description"
    );
    assert!(a.body.contains("<b>3</b> 一般 <span class=\"muted\" lang=\"en\">Adequate</span> <span class=\"points\">（70 分）</span>"), "一般 is a pass");
    assert!(a.body.contains("课堂评价总分") && a.body.contains("r_content</code> × 10"));

    // 8. Texts of a definition are escaped.
    let nasty = GOOD
        .replace("区教研室课堂教学评价表", "<script>alert(1)</script>评价表")
        .replace("授课教师", r#"授课&amp;教师 'A' \"B\" <i>"#)
        .replace("\"version\": 1", "\"version\": 4");
    let a = w.upload(&adm, &csrf, "<b>x</b>.json", nasty.as_bytes(), false).await;
    assert!(a.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;评价表") && a.body.contains("&#60;b&#62;x&#60;/b&#62;.json"), "{}", a.body);
    assert!(a.body.contains("授课&#38;amp;教师 &#39;A&#39; &#34;B&#34; &#60;i&#62;"), "{}", a.body);
    assert!(!a.body.contains("<script>") && !a.body.contains("<b>x</b>") && !a.body.contains("<i>"));
    // The escaped definition in the hidden field reads back as the one checked, and publishes.
    let checked = forms::check_file("x.json", nasty.as_bytes(), false).expect("the form checks");
    assert_eq!(hidden(&a.body, "definition"), checked.definition);
    assert_eq!(hidden(&a.body, "file"), "<b>x</b>.json");
    let form = ["csrf", "programme", "file", "hash", "definition"].map(|k| (k, hidden(&a.body, k)));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = w.post(&adm, "/admin/forms/publish", &form).await;
    assert_eq!((a.status, a.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/forms?done=published&form=tingke-pingjia&version=4")), "{}", a.body);
    let stored = w.state.with_db(|c| forms::template(c, "p", "tingke-pingjia", 4)).expect("lookup").expect("published");
    assert_eq!(stored.definition(), checked.definition, "stored as previewed");
}

#[tokio::test]
async fn an_upload_far_over_the_cap_gets_its_refusal_over_a_real_socket() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let w = World::new();
    let (adm, csrf) = w.session("adm");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(shidao_server::serve(listener, w.state.clone(), std::future::pending()));
    let mut body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n").into_bytes();
    body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.json\"\r\n\r\n").as_bytes());
    body.extend(std::iter::repeat_n(b' ', 3 * forms::MAX_FORM_BYTES));
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{base}/admin/forms/preview"))
        .header("cookie", adm)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .expect("the answer arrives (the connection is not cut)");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = resp.text().await.expect("body");
    assert!(text.contains(r#"id="refusal""#) && text.contains("超过 5 MiB 上限"), "{text}");
}
