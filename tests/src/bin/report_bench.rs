//! Benchmark of the review pages' server time: a school report over 10,000 records, the dashboard
//! (every rule of the programme's rule book checked for every school, the rules read from the
//! store) over 200,000 records, and an XLSX export of 100,000 records (its memory).
//!
//! The central store is filled in bulk: real records of every template are filled through the core
//! and projected as the relay projects them; each synthetic record copies one of them under a new
//! id, school, author and date (reports read only the projection, never documents).
//!
//! Run: `cargo run --release -p shidao-tests --bin report-bench [-- --records N] [--reuse]`
//! Prints a final `key=value` line; `docs/benchmarks.md` records a run.
//!
//! `SHIDAO_BENCH_DIR=DIR` keeps the filled stores in DIR; with `--reuse`, a store already kept
//! there is measured again without refilling (after upgrading it, when it has an older schema,
//! with the time the upgrade took).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::template::{Role, BUILTIN_IDS};
use shidao_core::{builtin, Clock, DeviceId, Editor, NewRecord, Record, RecordId, SchoolId, UserId};
use shidao_server::web::{auth::WebUser, dashboard_html, export_xlsx, report_html, Lang, ReportQuery};
use shidao_server::programme::{presets, rules, store};
use shidao_server::{accounts, db, projection};

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const SCHOOLS: usize = 19;

/// An `answers` row without its record: field, row, value, display, number, author, device, at,
/// conflicts.
type AnswerRow = (String, String, String, String, Option<f64>, Option<String>, Option<i64>, i64);
/// A `computed` row without its record: name, row, number, text, band.
type ComputedRow = (String, String, Option<f64>, String, Option<String>);
/// A `rectifications` row without its record and school: row, index, item, owner, deadline,
/// status, closed.
type RectificationRow = (String, i64, Option<String>, String, Option<String>, String, i64);

/// A sample record per template (several each), projected into a scratch store.
struct Sample {
    template: &'static str,
    doc: Vec<u8>,
    answers: Vec<AnswerRow>,
    computed: Vec<ComputedRow>,
    rectifications: Vec<RectificationRow>,
    task: Option<(String, Option<f64>)>,
    ratings: Vec<(String, f64)>,
}

fn samples(now: i64) -> Vec<Sample> {
    let scratch = db::open_in_memory().expect("scratch");
    // Only the projection rows are wanted here, not the records they belong to.
    scratch.pragma_update(None, "foreign_keys", "OFF").expect("pragma");
    let mut rng = Rng::new(9);
    let mut out = Vec::new();
    for id in BUILTIN_IDS {
        let t = builtin(id).expect("template");
        for k in 0..8 {
            let editor = Editor { user: UserId::new("u").expect("id"), device: DeviceId::new("d").expect("id"), role: t.def.filled_by[0] };
            let mut r = Record::create(t.clone(), NewRecord { id: RecordId::random(), school: SchoolId::new("s").expect("id") }, editor, Clock::fixed(now)).expect("record");
            fill_completely(&mut r, 1 + k % 3, &mut rng).expect("fill");
            let view = r.read();
            // The records row the ratings take their school, status and date from.
            scratch
                .execute(
                    "INSERT INTO records (id, template_id, template_version, school_id, created_by, status, record_date, heads, last_seq, updated_at)
                     VALUES (?1, ?2, ?3, 's', 'u', 'draft', NULL, '[]', 0, 0)",
                    params![r.id().as_str(), id, t.version()],
                )
                .expect("record");
            projection::project(&scratch, &r, &view, false).expect("project");
            let rid = r.id().to_string();
            let mut s = scratch.prepare("SELECT field, row_id, value, display, number, author, at, conflicts FROM answers WHERE record_id = ?1").expect("q");
            let answers = s
                .query_map([&rid], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?, x.get(4)?, x.get(5)?, x.get(6)?, x.get(7)?)))
                .expect("rows")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            let mut s = scratch.prepare("SELECT name, row_id, number, text, band FROM computed WHERE record_id = ?1").expect("q");
            let computed = s
                .query_map([&rid], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?, x.get(4)?)))
                .expect("rows")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            let mut s = scratch.prepare("SELECT row_id, row_index, item, owner, deadline, status, closed FROM rectifications WHERE record_id = ?1").expect("q");
            let rectifications = s
                .query_map([&rid], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?, x.get(4)?, x.get(5)?, x.get(6)?)))
                .expect("rows")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            let task = scratch
                .query_row("SELECT task_ref, achieved FROM task_progress WHERE record_id = ?1", [&rid], |x| Ok((x.get(0)?, x.get(1)?)))
                .optional()
                .expect("task");
            let mut s = scratch.prepare("SELECT meaning, points FROM ratings WHERE record_id = ?1").expect("q");
            let ratings = s.query_map([&rid], |x| Ok((x.get(0)?, x.get(1)?))).expect("rows").collect::<Result<Vec<_>, _>>().expect("rows");
            out.push(Sample { template: id, doc: r.save(), answers, computed, rectifications, task, ratings });
        }
    }
    out
}

/// Fills a central store with `n` records over 19 schools in one term.
fn fill(conn: &mut Connection, n: usize, samples: &[Sample], now: i64) {
    // The programme from the 瓯海 preset: its rules (principal ≥30 a term, ≥3 experts, 25% 骨干)
    // are read from the store by every dashboard.
    presets::apply(conn, "ouhai", "瓯海区初中全面提升行动", "ouhai", "bench", now).expect("programme");
    let term = rules::Term { id: "2026-1".into(), name: "2026学年第一学期".into(), start: "2026-09-01".into(), end: "2027-01-31".into() };
    store::add_term(conn, "ouhai", term, "bench", now).expect("term");
    for s in 0..SCHOOLS {
        let cat = ["示范", "优质", "潜质"][s % 3];
        accounts::add_school(conn, "ouhai", &format!("ouhai-{:02}", s + 1), &format!("学校{}", s + 1), cat, "重点项目").expect("school");
    }
    for s in 1..=SCHOOLS {
        let school = vec![format!("ouhai-{s:02}")];
        accounts::add_user(conn, &format!("head-{s:02}"), "校长", Role::Principal, Some("ouhai"), &school, None, 0).expect("user");
        for e in 1..=3 {
            accounts::add_user(conn, &format!("exp-{s:02}-{e}"), "专家", Role::Expert, Some("ouhai"), &school, None, 0).expect("user");
            // Two schools in three have their whole team.
            if e < 3 || s % 3 != 0 {
                store::assign_expert(conn, &school[0], &format!("exp-{s:02}-{e}"), "bench", now).expect("team");
            }
        }
    }
    accounts::add_user(conn, "insp", "视导员", Role::Inspector, Some("ouhai"), &[], None, 0).expect("user");
    accounts::add_user(conn, "duban", "督导", Role::Supervisor, Some("ouhai"), &[], None, 0).expect("user");
    for t in 1..=13 {
        accounts::add_task(conn, "ouhai", None, &format!("yufeng-{t:02}"), "任务", 30.0, "名", "2024-09-01", "2026-08-31").expect("task");
    }
    // Mostly lesson observations, as in a real term.
    let mix: Vec<&str> = std::iter::repeat_n("classroom-observation", 12)
        .chain(std::iter::repeat_n("guidance-log", 4))
        .chain(["inspection-visit", "inspection-visit", "supervision-evaluation", "task-progress", "baseline-assessment"])
        .collect();
    let mut rng = Rng::new(1);
    let mut done = 0;
    while done < n {
        let tx = conn.transaction().expect("tx");
        {
            let mut rec = tx
                .prepare("INSERT INTO records (id, template_id, template_version, school_id, created_by, status, record_date, heads, last_seq, updated_at, author_role, score) VALUES (?1, ?2, ?10, ?3, ?4, ?5, ?6, '[]', 0, ?7, ?8, ?9)")
                .expect("prep");
            let mut docs = tx.prepare("INSERT INTO documents (record_id, doc) VALUES (?1, ?2)").expect("prep");
            let mut ans = tx
                .prepare("INSERT INTO answers (record_id, field, row_id, value, display, number, author, at, conflicts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .expect("prep");
            let mut comp = tx.prepare("INSERT INTO computed (record_id, name, row_id, number, text, band) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").expect("prep");
            let mut rect = tx
                .prepare("INSERT INTO rectifications (record_id, row_id, row_index, school_id, item, owner, deadline, status, closed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .expect("prep");
            let mut task = tx.prepare("INSERT INTO task_progress (record_id, school_id, task_ref, achieved) VALUES (?1, ?2, ?3, ?4)").expect("prep");
            let mut rating = tx
                .prepare("INSERT INTO ratings (record_id, meaning, school_id, status, record_date, points) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .expect("prep");
            for _ in 0..5000.min(n - done) {
                let template = mix[rng.below(mix.len())];
                let options: Vec<&Sample> = samples.iter().filter(|s| s.template == template).collect();
                let s = options[rng.below(options.len())];
                let id = uuid_like(&mut rng);
                let school = 1 + rng.below(SCHOOLS);
                let author = match template {
                    "classroom-observation" if rng.below(2) == 0 => format!("head-{school:02}"),
                    "classroom-observation" | "guidance-log" => format!("exp-{school:02}-{}", 1 + rng.below(3)),
                    "task-progress" => format!("head-{school:02}"),
                    _ => "insp".to_string(),
                };
                let date = shidao_core::date::format_date(shidao_core::date::parse_date("2026-09-01").unwrap_or(0) + rng.below(83) as i64);
                let status = ["draft", "submitted", "submitted", "approved", "returned"][rng.below(5)];
                let role = if author.starts_with("head") { "principal" } else if author.starts_with("exp") { "expert" } else { "inspector" };
                let score = s.computed.iter().find(|c| c.1.is_empty() && builtin(template).is_some_and(|t| t.scores.first().is_some_and(|f| f.def.id == c.0))).and_then(|c| c.2);
                let version = builtin(template).map_or(1, |t| t.version());
                rec.execute(params![id, template, format!("ouhai-{school:02}"), author, status, date, now, role, score, version]).expect("record");
                docs.execute(params![id, s.doc]).expect("document");
                for a in &s.answers {
                    ans.execute(params![id, a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7]).expect("answer");
                }
                for c in &s.computed {
                    comp.execute(params![id, c.0, c.1, c.2, c.3, c.4]).expect("computed");
                }
                for r in &s.rectifications {
                    rect.execute(params![id, r.0, r.1, format!("ouhai-{school:02}"), r.2, r.3, r.4, r.5, r.6]).expect("rectification");
                }
                for (meaning, points) in &s.ratings {
                    rating.execute(params![id, meaning, format!("ouhai-{school:02}"), status, date, points]).expect("rating");
                }
                if let Some((task_ref, achieved)) = &s.task {
                    task.execute(params![id, format!("ouhai-{school:02}"), task_ref, achieved]).expect("task progress");
                }
            }
        }
        tx.commit().expect("commit");
        done += 5000.min(n - done);
    }
}

fn uuid_like(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let big = args.iter().position(|a| a == "--records").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let reuse = args.iter().any(|a| a == "--reuse");
    let dir = tempfile::tempdir().expect("dir");
    // SHIDAO_BENCH_DIR keeps the filled stores for a closer look.
    let keep = std::env::var_os("SHIDAO_BENCH_DIR").map(std::path::PathBuf::from);
    let now = Clock::system().now();
    let today = Clock::system().today();
    let user = WebUser { id: "duban".into(), name: "督导".into(), role: Role::Supervisor, programme: Some("ouhai".into()), csrf: String::new() };
    let lang = Lang { en: false };
    let samples = samples(now);
    let mut summary = Vec::new();

    for (label, n) in [("10k", 10_000usize), ("big", big)] {
        let path = keep.clone().unwrap_or_else(|| dir.path().to_path_buf()).join(format!("central-{label}.db"));
        let kept = reuse && keep.is_some() && path.exists();
        let how = if kept {
            let version: i64 = Connection::open(&path).and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0))).expect("version");
            let start = Instant::now();
            let conn = db::open(&path).expect("db");
            if version < db::VERSION {
                let took = start.elapsed();
                // Statistics for the indexes the upgrade created; the rest kept theirs from the fill.
                let new: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT IN (SELECT idx FROM sqlite_stat1 WHERE idx IS NOT NULL)")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .expect("indexes");
                for index in new {
                    conn.execute_batch(&format!("ANALYZE \"{index}\"")).expect("analyze");
                }
                format!("kept store upgraded from version {version} in {:.1}s", took.as_secs_f64())
            } else {
                "kept store".to_string()
            }
        } else {
            let _ = std::fs::remove_file(&path);
            let mut conn = db::open(&path).expect("db");
            let start = Instant::now();
            fill(&mut conn, n, &samples, now);
            conn.execute_batch("ANALYZE").expect("analyze");
            format!("filled in {:.1}s", start.elapsed().as_secs_f64())
        };
        let conn = db::open(&path).expect("db");
        let (records, rows): (i64, i64) = conn
            .query_row("SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM answers)", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("count");
        println!("{label}: {records} records, {rows} answer rows, {how}");
        let q = ReportQuery::default();
        let mut report = Vec::new();
        let mut dash = Vec::new();
        for i in 0..15 {
            let school = format!("ouhai-{:02}", 1 + i % SCHOOLS);
            let t = Instant::now();
            let (_, html) = report_html(&conn, &user, lang, &school, &q, &today).expect("report");
            report.push(t.elapsed());
            assert!(html.contains("一、学校基本情况") && html.contains("二、工作开展情况") && html.contains("评估组组长"));
            let t = Instant::now();
            let html = dashboard_html(&conn, &user, lang, &today).expect("dashboard");
            dash.push(t.elapsed());
            assert!(html.contains("示范") && html.contains("（≥30）"));
        }
        let (r, d) = (median(report), median(dash));
        // The server itself never runs ANALYZE: the dashboard again as the planner sees a store
        // without statistics (hidden inside a transaction that is rolled back).
        conn.execute_batch("BEGIN; DELETE FROM sqlite_stat1; ANALYZE sqlite_schema;").expect("hide statistics");
        let mut bare = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            let html = dashboard_html(&conn, &user, lang, &today).expect("dashboard");
            bare.push(t.elapsed());
            assert!(html.contains("示范") && html.contains("（≥30）"));
        }
        conn.execute_batch("ROLLBACK; ANALYZE sqlite_schema;").expect("statistics back");
        let b = median(bare);
        println!(
            "{label}: school report median {:.1} ms; dashboard median {:.1} ms ({:.1} ms without statistics)",
            r.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3
        );
        summary.push(format!("report_{label}_ms={:.1}", r.as_secs_f64() * 1e3));
        summary.push(format!("dashboard_{label}_ms={:.1}", d.as_secs_f64() * 1e3));
        summary.push(format!("dashboard_{label}_nostat_ms={:.1}", b.as_secs_f64() * 1e3));
        if label == "big" {
            // XLSX of the lesson observations (most of the records), to a sink: memory stays flat.
            let before = rss_kb();
            let t = Instant::now();
            let template = builtin("classroom-observation").expect("template");
            let written = export_xlsx(&conn, &template, lang, false, false, Some("ouhai"), None, std::io::sink()).expect("xlsx");
            let took = t.elapsed();
            let peak = hwm_kb();
            println!(
                "xlsx export: {written} records in {:.1}s; RSS before {:.1} MiB, peak {:.1} MiB",
                took.as_secs_f64(),
                before as f64 / 1024.0,
                peak as f64 / 1024.0
            );
            summary.push(format!("xlsx_records={written}"));
            summary.push(format!("xlsx_s={:.1}", took.as_secs_f64()));
            summary.push(format!("xlsx_rss_before_mib={:.1}", before as f64 / 1024.0));
            summary.push(format!("peak_rss_mib={:.1}", peak as f64 / 1024.0));
        }
    }
    println!("{}", summary.join(" "));
}
