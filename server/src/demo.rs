//! `shidao-server demo`: programmes a newcomer can open.
//!
//! Seeds an empty central store with one programme per district document it draws on, each
//! created from that document's preset (`programme::presets`) with its own rules: 瓯海区
//! (seed 004: its 19 schools with their category and key project, principal ≥30 lessons a term,
//! ≥3 experts, 25% 骨干) and 鱼峰区 (seed 002: its task list with the targets). The current
//! school year's two terms are added. Demo accounts for every role, and records that simulated
//! tablets fill offline and sync through the real protocol over loopback, all dated inside the
//! current term: visits written by two or three inspectors at once (with a field in conflict),
//! principals' and experts' lesson observations scored the way real ones spread (mostly 70–95),
//! guidance logs, baselines, evaluations; the supervisor returns some records with a comment
//! and approves others. Most schools meet every rule; a handful do not (a principal short of
//! the quota, a team of two, a backbone share under 25%), so the first dashboard shows a few
//! flags, each with its reason.

use std::collections::HashMap;

use rusqlite::Connection;
use shidao_core::record::{Answer, Record};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::Store;
use shidao_core::sync::enrolment::Enrolment;
use shidao_core::sync::http::{Cancel, HttpSync};
use shidao_core::template::{FieldKind, Role};
use shidao_core::{Editor, FieldRef, RecordId, SchoolId};

use crate::accounts;
use crate::error::{AppError, AppResult};
use crate::programme::{presets, rules, store};

pub const PROGRAMME: &str = "ouhai";
/// The 鱼峰 programme: its targets, from its own preset.
pub const YUFENG: &str = "yufeng";
/// Demo sign-in for the web pages (the 瓯海 supervisor).
pub const SUPERVISOR: (&str, &str) = ("duban", "shidao-demo");
/// The 鱼峰 supervisor.
pub const YUFENG_SUPERVISOR: (&str, &str) = ("yufeng-duban", "shidao-demo");
pub const ADMIN: (&str, &str) = ("admin", "shidao-admin");

/// The school year's two terms around `today` (第一学期 September–January, 第二学期
/// February–July) and the index of the one `today` falls in.
pub fn school_year(today: &str) -> (Vec<rules::Term>, usize) {
    let year: i32 = today[..4].parse().unwrap_or(2026);
    let month: u32 = today[5..7].parse().unwrap_or(9);
    let first = if month >= 8 { year } else { year - 1 };
    let terms = vec![
        rules::Term { id: format!("{first}-1"), name: format!("{first}学年第一学期"), start: format!("{first}-09-01"), end: format!("{}-01-31", first + 1) },
        rules::Term { id: format!("{first}-2"), name: format!("{first}学年第二学期"), start: format!("{}-02-01", first + 1), end: format!("{}-07-15", first + 1) },
    ];
    let at = if month >= 8 || month == 1 { 0 } else { 1 };
    (terms, at)
}

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
        Person { id: YUFENG_SUPERVISOR.0.into(), name: "韦督导".into(), role: Role::Supervisor, schools: vec![] },
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
        // Every school has three experts on the system; the last two have only two on their
        // team (一校一团队), the rule they are short of.
        let experts = 3;
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

/// Seeds the programmes (from their presets), their terms, people and expert teams; returns the
/// 瓯海 schools and enrolment codes by user.
fn seed_accounts(conn: &Connection, now: i64, today: &str) -> AppResult<(Vec<String>, HashMap<String, (String, Role)>)> {
    let (terms, _) = school_year(today);
    for (id, name, preset) in [(PROGRAMME, "瓯海区初中全面提升行动", "ouhai"), (YUFENG, "鱼峰区初中强校工程试点", "yufeng")] {
        presets::apply(conn, id, name, preset, "demo", now)?;
        for t in &terms {
            store::add_term(conn, id, t.clone(), "demo", now)?;
        }
    }
    let schools: Vec<String> = {
        let mut stmt = conn.prepare("SELECT id FROM schools WHERE programme_id = ?1 ORDER BY id")?;
        stmt.query_map([PROGRAMME], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let mut codes = HashMap::new();
    for p in people(&schools) {
        let hash = match p.id.as_str() {
            id if id == SUPERVISOR.0 => Some(crate::web::auth::hash_password(SUPERVISOR.1)?),
            id if id == YUFENG_SUPERVISOR.0 => Some(crate::web::auth::hash_password(YUFENG_SUPERVISOR.1)?),
            id if id == ADMIN.0 => Some(crate::web::auth::hash_password(ADMIN.1)?),
            _ => None,
        };
        let programme = if p.id == YUFENG_SUPERVISOR.0 { YUFENG } else { PROGRAMME };
        accounts::add_user(conn, &p.id, &p.name, p.role, Some(programme), &p.schools, hash.as_deref(), now)?;
        if p.role == Role::Expert {
            // The last two schools' teams have two experts: short of the ≥3 rule.
            let n: usize = p.id[4..6].parse().unwrap_or(0);
            if !(n > schools.len() - 2 && p.id.ends_with("-3")) {
                store::assign_expert(conn, &p.schools[0], &p.id, "demo", now)?;
            }
        }
        if (!p.role.reviews() || p.id == SUPERVISOR.0) && programme == PROGRAMME {
            codes.insert(p.id.clone(), (accounts::new_enrol_code(conn, &p.id, now)?, p.role));
        }
    }
    Ok((schools, codes))
}

/// A simulated tablet, enrolled as an app enrols (the core keeps the enrolment in its store).
struct Tablet {
    store: Store,
    enrolment: Enrolment,
    editor: Editor,
}

impl Tablet {
    async fn enrol(http: &HttpSync, code: &str) -> AppResult<Tablet> {
        let store = Store::open_in_memory().map_err(|e| AppError::Internal(e.to_string()))?;
        let enrolment = Enrolment::enrol(http, &store, code, "演示平板", None).await.map_err(|e| AppError::Internal(format!("demo enrol: {e}")))?;
        Ok(Tablet { editor: enrolment.editor.clone(), store, enrolment })
    }

    async fn sync(&self, http: &HttpSync) -> AppResult<()> {
        self.enrolment
            .sync(http, &self.store, &Cancel::new(), |_, _| {})
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

    /// Rates every rubric item around `level` (one below, at, or one above it), the way real
    /// lessons spread: at 4 (良好) the totals fall mostly between 75 and 95.
    fn rate(&self, r: &mut Record, level: i64, rng: &mut Rng) -> AppResult<()> {
        let ratings: Vec<String> =
            r.template().top_fields().filter(|f| f.kind() == FieldKind::Rating && !f.id().starts_with("r2_")).map(|f| f.id().to_string()).collect();
        let levels: Vec<(String, i64)> = ratings.into_iter().map(|id| (id, (level + [-1, 0, 0, 1][rng.below(4)]).clamp(1, 5))).collect();
        // One edit for all of them (as a rater fills the rubric in one go).
        self.store
            .edit(r, |r| levels.iter().try_for_each(|(id, l)| r.set_answer(&FieldRef::top(id), Answer::Rating(*l)).map(|_| ())))
            .map_err(|e| AppError::Internal(format!("demo ratings: {e}")))
    }

    fn set(&self, r: &mut Record, field: &str, a: Answer) -> AppResult<()> {
        self.store.edit(r, |r| r.set_answer(&FieldRef::top(field), a)).map_err(|e| AppError::Internal(format!("demo edit {field}: {e}")))
    }
}

fn day(term_start: &str, offset: i64) -> String {
    shidao_core::date::format_date(shidao_core::date::parse_date(term_start).unwrap_or(0) + offset)
}

/// Seeds the demo through a relay listening at `url` on the store `conn` points to.
pub async fn seed(state: &crate::AppState, url: &str) -> AppResult<String> {
    seed_scaled(state, url, 1.0).await
}

/// Seeds with the experts' earlier logs scaled by `scale` (tests use a small demo); the
/// principals' lessons are the figures the quota is judged on and are never scaled.
pub async fn seed_scaled(state: &crate::AppState, url: &str, scale: f64) -> AppResult<String> {
    let now = state.clock.now();
    let today = state.clock.today();
    let (terms, at) = school_year(&today);
    let start = terms[at].start.clone();
    let today_n = shidao_core::date::parse_date(&today).unwrap_or(0);
    // Days of the term so far: every record is dated inside the term and not after today.
    let days_in = (today_n - shidao_core::date::parse_date(&start).unwrap_or(0)).max(0);
    let within = |offset: i64| day(&start, offset.clamp(0, days_in));
    let (schools, codes) = state.with_db(|conn| seed_accounts(conn, now, &today))?;
    let http = HttpSync::new(url, None).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut rng = Rng::new(2026);
    let mut tablets: HashMap<String, Tablet> = HashMap::new();
    for (user, (code, _)) in &codes {
        tablets.insert(user.clone(), Tablet::enrol(&http, code).await?);
    }
    let t = |id: &str| tablets.get(id).ok_or_else(|| AppError::Internal(format!("demo: no tablet for {id}")));
    let mut stats = (0usize, 0usize, 0usize);
    // Records that stay as they are in the review below: the principals' counted lessons and
    // the baselines (the figures the rules are judged on), and the drafts.
    let mut keep: Vec<RecordId> = Vec::new();
    let mut drafts: Vec<RecordId> = Vec::new();

    for (i, school) in schools.iter().enumerate() {
        let n = i + 1;
        // How well this school's lessons go (the level its ratings centre on: 4 = 良好).
        let level = [4, 4, 5, 4, 3, 4, 4, 5, 4, 4, 3, 4, 4, 4, 5, 4, 4, 4, 3][i % 19];
        // Principals' 校长听评课 this term, submitted: three schools are short of 30, the
        // others meet it; two more stay drafts (drafts do not count).
        let head = t(&format!("head-{n:02}"))?;
        let lessons = [34, 31, 26, 30, 32, 36, 18, 33, 31, 35, 30, 32, 31, 33, 29, 34, 30, 31, 32][i % 19];
        for k in 0..lessons + 2 {
            let mut r = head.create("classroom-observation", school, Some(&within(k as i64 * 3 % (days_in + 1))), &mut rng)?;
            head.set(&mut r, "purpose", Answer::Choice("principal".into()))?;
            head.rate(&mut r, level, &mut rng)?;
            if k < lessons {
                keep.push(r.id().clone());
            } else {
                drafts.push(r.id().clone());
            }
            stats.0 += 1;
        }
        // Experts' guidance logs (this month and earlier) and an observation each.
        for e in 1..=3 {
            let exp = t(&format!("exp-{n:02}-{e}"))?;
            let recent = if n % 6 == 0 && e == 3 { 0 } else { 2 };
            let earlier = if scale < 1.0 { 0 } else { 2 };
            for k in 0..(recent + earlier) {
                let date = if k < recent { within(days_in - 3 - k as i64 * 7) } else { within(10 + k as i64 * 20) };
                exp.create("guidance-log", school, Some(&date), &mut rng)?;
                stats.1 += 1;
            }
            let mut obs = exp.create("classroom-observation", school, Some(&within(days_in - 5)), &mut rng)?;
            exp.set(&mut obs, "purpose", Answer::Choice("embedded".into()))?;
            exp.rate(&mut obs, level, &mut rng)?;
            stats.0 += 1;
        }
        // A baseline at the start of the term: 瓯海's 25% 骨干 share met by all but one school.
        let insp = t("insp-1")?;
        let mut base = insp.create("baseline-assessment", school, Some(&within(3)), &mut rng)?;
        insp.set(&mut base, "teachers", Answer::Integer(80))?;
        insp.set(&mut base, "backbone_teachers", Answer::Integer(40))?;
        insp.set(&mut base, "backbone_county", Answer::Integer(if n == 10 { 14 } else { 22 + (n as i64 % 5) }))?;
        keep.push(base.id().clone());
        // The initial evaluation at the start of the term, and a mid-term one for half the
        // schools (value added is the difference).
        let mut first = t("insp-2")?.create("supervision-evaluation", school, Some(&within(5)), &mut rng)?;
        t("insp-2")?.set(&mut first, "stage", Answer::Choice("initial".into()))?;
        if n % 2 == 1 {
            let mut ev = t("insp-2")?.create("supervision-evaluation", school, Some(&within(days_in - 10)), &mut rng)?;
            t("insp-2")?.set(&mut ev, "stage", Answer::Choice("midterm".into()))?;
        }
    }
    for tab in tablets.values() {
        tab.sync(&http).await?;
    }

    // Visits by two or three inspectors together: each writes on their own tablet offline, and
    // two of them type the visit's focus differently (a conflict the supervisor sees).
    for (i, school) in schools.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let lead = t("insp-1")?;
        let mut visit = lead.create("inspection-visit", school, Some(&within(days_in - 8 - i as i64)), &mut rng)?;
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
            if drafts.contains(&s.id) {
                continue;
            }
            let mut r = tab.store.load(&s.id, &tab.editor).map_err(|e| AppError::Internal(e.to_string()))?;
            let submit = keep.contains(&s.id) || rng.below(4) > 0;
            if submit && r.submit().is_ok() {
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
            0 if !keep.contains(id) => r.return_for_correction(comments[k % comments.len()]).is_ok(),
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
        "seeded programmes {PROGRAMME} (preset ouhai) and {YUFENG} (preset yufeng, its targets): {} schools, {} lesson observations, {} guidance logs, {} team visits, {} submitted records",
        schools.len(),
        stats.0,
        stats.1,
        stats.2,
        submitted.len()
    ))
}
