//! `shidao-server demo`: a programme a newcomer can open.
//!
//! Seeds an empty central store with 瓯海区's programme (seed 004's 19 schools with their category
//! and key project) and 鱼峰区's task list with its numeric targets (seed 002), demo accounts for
//! every role, and records that simulated tablets fill offline and sync through the real protocol
//! over loopback: visits written by two or three inspectors at once (with a field in conflict),
//! principals' and experts' lesson observations, guidance logs, baselines, evaluations and task
//! progress; the supervisor returns some records with a comment and approves others.

use std::collections::HashMap;

use rusqlite::Connection;
use shidao_core::record::{Answer, Record};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::Store;
use shidao_core::sync::http::{Cancel, HttpSync};
use shidao_core::template::{FieldKind, Role};
use shidao_core::{DeviceId, Editor, FieldRef, SchoolId, UserId};

use crate::accounts;
use crate::error::{AppError, AppResult};

const SCHOOLS: &str = include_str!("../demo/schools.csv");
const TASKS: &str = include_str!("../demo/tasks.csv");
pub const PROGRAMME: &str = "ouhai";
pub const TERM: (&str, &str) = ("2026-09-01", "2027-01-31");
/// Demo sign-in for the web pages.
pub const SUPERVISOR: (&str, &str) = ("duban", "shidao-demo");
pub const ADMIN: (&str, &str) = ("admin", "shidao-admin");

/// Whether the store already holds the demo programme.
pub fn seeded(conn: &Connection) -> AppResult<bool> {
    Ok(conn.query_row("SELECT COUNT(*) FROM programmes WHERE id = ?1", [PROGRAMME], |r| r.get::<_, i64>(0))? > 0)
}

/// A person of the demo: id, name, role, schools.
struct Person {
    id: String,
    name: String,
    role: Role,
    schools: Vec<String>,
}

fn people(schools: &[String]) -> Vec<Person> {
    let mut out = vec![
        Person { id: SUPERVISOR.0.into(), name: "周督导".into(), role: Role::Supervisor, schools: vec![] },
        Person { id: ADMIN.0.into(), name: "系统管理员".into(), role: Role::Admin, schools: vec![] },
    ];
    // A district inspection team of four covers every school.
    for (i, name) in ["王建国", "李敏", "陈晓东", "刘芳"].iter().enumerate() {
        out.push(Person { id: format!("insp-{}", i + 1), name: (*name).into(), role: Role::Inspector, schools: schools.to_vec() });
    }
    let surnames = ["张", "黄", "吴", "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐"];
    for (i, s) in schools.iter().enumerate() {
        let n = i + 1;
        out.push(Person { id: format!("head-{n:02}"), name: format!("{}校长", surnames[i % surnames.len()]), role: Role::Principal, schools: vec![s.clone()] });
        // Most schools have their three experts (一校一团队); the last five have only two.
        let experts = if n <= 14 { 3 } else { 2 };
        for e in 0..experts {
            out.push(Person {
                id: format!("exp-{n:02}-{}", e + 1),
                name: format!("{}专家{}", surnames[(i + e + 3) % surnames.len()], e + 1),
                role: Role::Expert,
                schools: vec![s.clone()],
            });
        }
    }
    out
}

/// Seeds programme, schools, tasks and people; returns enrolment codes by user.
fn seed_accounts(conn: &Connection, now: i64) -> AppResult<(Vec<String>, HashMap<String, (String, Role)>)> {
    accounts::add_programme(conn, PROGRAMME, "瓯海区初中全面提升行动", Some(TERM))?;
    accounts::import_schools_csv(conn, PROGRAMME, SCHOOLS)?;
    let mut reader = csv::Reader::from_reader(TASKS.as_bytes());
    for row in reader.records() {
        let row = row.map_err(|e| AppError::Internal(format!("demo tasks: {e}")))?;
        let target: f64 = row[2].parse().map_err(|_| AppError::Internal(format!("demo task {}: target", &row[0])))?;
        accounts::add_task(conn, PROGRAMME, None, &row[0], &row[1], target, &row[3], &row[4], &row[5])?;
    }
    let schools: Vec<String> = {
        let mut stmt = conn.prepare("SELECT id FROM schools WHERE programme_id = ?1 ORDER BY id")?;
        stmt.query_map([PROGRAMME], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let mut codes = HashMap::new();
    for p in people(&schools) {
        let hash = match p.id.as_str() {
            id if id == SUPERVISOR.0 => Some(crate::web::auth::hash_password(SUPERVISOR.1)?),
            id if id == ADMIN.0 => Some(crate::web::auth::hash_password(ADMIN.1)?),
            _ => None,
        };
        accounts::add_user(conn, &p.id, &p.name, p.role, Some(PROGRAMME), &p.schools, hash.as_deref(), now)?;
        if !p.role.reviews() || p.id == SUPERVISOR.0 {
            codes.insert(p.id.clone(), (accounts::new_enrol_code(conn, &p.id, now)?, p.role));
        }
    }
    Ok((schools, codes))
}

/// A simulated tablet.
struct Tablet {
    store: Store,
    editor: Editor,
    token: String,
}

impl Tablet {
    async fn enrol(http: &HttpSync, code: &str) -> AppResult<Tablet> {
        let e = http.enrol(code, "演示平板").await.map_err(|e| AppError::Internal(format!("demo enrol: {e}")))?;
        let role = Role::parse(&e.role).unwrap_or(Role::Inspector);
        let editor = Editor {
            user: UserId::new(e.user).map_err(|e| AppError::Internal(e.to_string()))?,
            device: DeviceId::new(e.device).map_err(|e| AppError::Internal(e.to_string()))?,
            role,
        };
        let store = Store::open_in_memory().map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(Tablet { store, editor, token: e.token })
    }

    async fn sync(&self, http: &HttpSync) -> AppResult<()> {
        http.sync(&self.store, &self.token, &self.editor, &Cancel::new(), |_| {})
            .await
            .map(|_| ())
            .map_err(|e| AppError::Internal(format!("demo sync of {}: {e}", self.editor.user)))
    }

    fn create(&self, template: &str, school: &str, date: Option<&str>, rng: &mut Rng) -> AppResult<Record> {
        let s = SchoolId::new(school).map_err(|e| AppError::Internal(e.to_string()))?;
        let internal = |e: shidao_core::store::StoreError| AppError::Internal(format!("demo record: {e}"));
        let mut r = self.store.create(template, &s, &self.editor).map_err(internal)?;
        self.store.edit(&mut r, |r| fill_completely(r, 2, rng)).map_err(internal)?;
        if let (Some(d), Some(field)) = (date, r.template().def.date_field.clone()) {
            self.store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&field), Answer::Date(d.to_string()))).map_err(internal)?;
        }
        Ok(r)
    }

    fn set(&self, r: &mut Record, field: &str, a: Answer) -> AppResult<()> {
        self.store.edit(r, |r| r.set_answer(&FieldRef::top(field), a)).map_err(|e| AppError::Internal(format!("demo edit {field}: {e}")))
    }
}

fn day(offset_from_term_start: i64) -> String {
    let start = shidao_core::expr::parse_date(TERM.0).unwrap_or(0);
    shidao_core::expr::format_date(start + offset_from_term_start)
}

/// Seeds the demo through a relay listening at `url` on the store `conn` points to.
pub async fn seed(state: &crate::AppState, url: &str) -> AppResult<String> {
    seed_scaled(state, url, 1.0).await
}

/// Seeds with the principals' lessons scaled by `scale` (tests use a small demo).
pub async fn seed_scaled(state: &crate::AppState, url: &str, scale: f64) -> AppResult<String> {
    let now = state.clock.now();
    let today = state.clock.today();
    let today_n = shidao_core::expr::parse_date(&today).unwrap_or(0);
    let days_in = (today_n - shidao_core::expr::parse_date(TERM.0).unwrap_or(0)).clamp(30, 140);
    let (schools, codes) = state.with_db(|conn| seed_accounts(conn, now))?;
    let http = HttpSync::new(url, None).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut rng = Rng::new(2026);
    let mut tablets: HashMap<String, Tablet> = HashMap::new();
    for (user, (code, _)) in &codes {
        tablets.insert(user.clone(), Tablet::enrol(&http, code).await?);
    }
    let t = |id: &str| tablets.get(id).ok_or_else(|| AppError::Internal(format!("demo: no tablet for {id}")));
    let mut stats = (0usize, 0usize, 0usize);

    for (i, school) in schools.iter().enumerate() {
        let n = i + 1;
        // Principals' lesson observations: some reach the quota of 30 this term, some do not.
        let head = t(&format!("head-{n:02}"))?;
        let lessons = ([34, 31, 12, 30, 22, 36, 8, 27, 33, 15, 30, 19, 25, 32, 6, 14, 30, 21, 11][i % 19] as f64 * scale).round() as usize;
        for k in 0..lessons {
            let mut r = head.create("classroom-observation", school, Some(&day((k as i64 * 3) % days_in)), &mut rng)?;
            head.set(&mut r, "purpose", Answer::Choice("principal".into()))?;
            stats.0 += 1;
        }
        // Experts' guidance logs (two this month for most of them) and an observation each.
        let experts = if n <= 14 { 3 } else { 2 };
        for e in 1..=experts {
            let exp = t(&format!("exp-{n:02}-{e}"))?;
            let this_month = if n % 6 == 0 && e == 3 { 0 } else { 2 };
            let earlier = if scale < 1.0 { 0 } else { 2 };
            for k in 0..(this_month + earlier) {
                let date = if k < this_month { day(days_in - 3 - k as i64 * 7) } else { day(10 + k as i64 * 20) };
                exp.create("guidance-log", school, Some(&date), &mut rng)?;
                stats.1 += 1;
            }
            let mut obs = exp.create("classroom-observation", school, Some(&day(days_in - 5)), &mut rng)?;
            exp.set(&mut obs, "purpose", Answer::Choice("embedded".into()))?;
            stats.0 += 1;
        }
        // A baseline at the start of the term, and a mid-term evaluation for half the schools.
        t("insp-1")?.create("baseline-assessment", school, Some(&day(3)), &mut rng)?;
        // The initial evaluation at the start of the term, and a mid-term one for half the
        // schools (value added is the difference).
        let mut first = t("insp-2")?.create("supervision-evaluation", school, Some(&day(5)), &mut rng)?;
        t("insp-2")?.set(&mut first, "stage", Answer::Choice("initial".into()))?;
        if n % 2 == 1 {
            let mut ev = t("insp-2")?.create("supervision-evaluation", school, Some(&day(days_in - 10)), &mut rng)?;
            t("insp-2")?.set(&mut ev, "stage", Answer::Choice("midterm".into()))?;
        }
        // Task progress on three of the programme's tasks.
        for (k, task) in ["yufeng-03", "yufeng-08", "yufeng-12"].iter().enumerate() {
            if (n + k) % 3 == 0 {
                let p = t(&format!("head-{n:02}"))?;
                let mut r = p.create("task-progress", school, Some(&day(0)), &mut rng)?;
                p.set(&mut r, "task_ref", Answer::Text((*task).into()))?;
            }
        }
    }
    for tab in tablets.values() {
        tab.sync(&http).await?;
    }

    // Visits by two or three inspectors together: each writes on their own tablet offline, and
    // two of them type the visit's focus differently (a conflict the supervisor sees).
    for (i, school) in schools.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let lead = t("insp-1")?;
        let mut visit = lead.create("inspection-visit", school, Some(&day(days_in - 8 - i as i64)), &mut rng)?;
        lead.sync(&http).await?;
        let second = t("insp-2")?;
        second.sync(&http).await?;
        // Both now write offline, neither seeing the other's edits.
        lead.set(&mut visit, "visit_focus", Answer::Text("课堂教学与作业管理".into()))?;
        let mut copy = second.store.load(visit.id(), &second.editor).map_err(|e| AppError::Internal(e.to_string()))?;
        let findings = copy.template().top_fields().find(|f| f.kind() == FieldKind::LongText).map(|f| f.id().to_string());
        if let Some(f) = findings {
            second
                .store
                .edit(&mut copy, |r| r.splice_text(&FieldRef::top(&f), 0, 0, "（李敏补充）部分班级作业量偏大，需统筹。"))
                .map_err(|e| AppError::Internal(e.to_string()))?;
        }
        if i % 4 == 0 {
            second.set(&mut copy, "visit_focus", Answer::Text("作业设计与分层教学".into()))?;
        }
        second.sync(&http).await?;
        lead.sync(&http).await?;
        stats.2 += 1;
    }

    // Submissions, then the supervisor's review: some approved, some returned with a comment.
    let mut submitted = Vec::new();
    for tab in tablets.values().filter(|t| t.editor.role != Role::Supervisor) {
        for s in tab.store.list(&Default::default()).map_err(|e| AppError::Internal(e.to_string()))? {
            if s.created_by != tab.editor.user.as_str() {
                continue;
            }
            let mut r = tab.store.load(&s.id, &tab.editor).map_err(|e| AppError::Internal(e.to_string()))?;
            if rng.below(3) > 0 && r.submit().is_ok() {
                tab.store.save(&mut r).map_err(|e| AppError::Internal(e.to_string()))?;
                submitted.push(s.id.clone());
            }
        }
        tab.sync(&http).await?;
    }
    let sup = t(SUPERVISOR.0)?;
    sup.sync(&http).await?;
    let comments = ["请补充整改责任人和完成时限。", "评分与证据记录不一致，请核实后重新提交。", "请补充学生学习活动的观察证据。"];
    for (k, id) in submitted.iter().enumerate() {
        let Ok(mut r) = sup.store.load(id, &sup.editor) else { continue };
        let done = match k % 7 {
            0 => r.return_for_correction(comments[k % comments.len()]).is_ok(),
            1 | 2 | 3 => r.approve(Some("同意")).is_ok(),
            _ => false,
        };
        if done {
            sup.store.save(&mut r).map_err(|e| AppError::Internal(e.to_string()))?;
        }
    }
    sup.sync(&http).await?;
    for tab in tablets.values() {
        tab.sync(&http).await?;
    }
    Ok(format!(
        "seeded {} schools, {} lesson observations, {} guidance logs, {} team visits, {} submitted records",
        schools.len(),
        stats.0,
        stats.1,
        stats.2,
        submitted.len()
    ))
}
