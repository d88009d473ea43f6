//! What the load benchmarks share (`sync-load`, `ingest-bench`): the two workloads, a programme
//! of schools and inspectors on a central store, and figures read from the relay's process.

use std::path::Path;

use shidao_core::record::{Answer, FieldRef, Record};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::template::Role;

/// The form of the side-by-side measurement with automerge-repo's sync server: 60 answers (20
/// ratings, 20 single choices, 10 counters, 10 short Chinese texts), published like any
/// district's own form.
pub const PEER_FORM: &str = include_str!("../forms/peer-sixty-v1.json");

/// What the tablets fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// The peer's record: the published 60-answer form (`tests/forms/peer-sixty-v1.json`).
    Peer,
    /// A full lesson observation (the built-in `classroom-observation`, two rows a repeat).
    Lesson,
}

impl Workload {
    pub fn parse(s: &str) -> Option<Workload> {
        match s {
            "peer" => Some(Workload::Peer),
            "lesson" => Some(Workload::Lesson),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Peer => "peer",
            Workload::Lesson => "lesson",
        }
    }

    pub fn template(self) -> &'static str {
        match self {
            Workload::Peer => "peer-sixty",
            Workload::Lesson => "classroom-observation",
        }
    }

    /// Fills a new record completely, as an observer would by the end of a lesson.
    pub fn fill(self, record: &mut Record, rng: &mut Rng) -> shidao_core::record::Result<()> {
        fill_completely(record, 2, rng)
    }

    /// The one edit of the edit-all phase: a field every record of the workload has, changed.
    pub fn edit(self, record: &mut Record) -> shidao_core::record::Result<()> {
        match self {
            Workload::Peer => record.increment(&FieldRef::top("count_0"), 1),
            Workload::Lesson => record.set_answer(&FieldRef::top("teacher_name"), Answer::Text("张老师（复核）".into())),
        }
    }
}

/// Reads `--name value` from the command line.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sets up programme `load` on the central store `db`: `schools` schools, `devices` inspectors
/// spread over them, and, for the peer's workload, its form published; returns one enrolment
/// code per inspector.
pub fn programme(db: &Path, devices: usize, schools: usize, workload: Workload) -> Vec<String> {
    use shidao_server::{accounts, forms};
    let conn = shidao_server::db::open(db).expect("db");
    accounts::add_programme(&conn, "load", "负载测试", None).expect("programme");
    for s in 0..schools {
        accounts::add_school(&conn, "load", &format!("s{s:03}"), &format!("学校{s}"), "优质", "").expect("school");
    }
    let now = shidao_core::Clock::system().now();
    if workload == Workload::Peer {
        let form = forms::check_file("peer-sixty-v1.json", PEER_FORM.as_bytes(), false).expect("the peer's form checks");
        forms::publish(&conn, "load", &form, "peer-sixty-v1.json", "admin", now).expect("publish");
    }
    (0..devices)
        .map(|d| {
            let user = format!("u{d:04}");
            accounts::add_user(&conn, &user, &user, Role::Inspector, Some("load"), &[format!("s{:03}", d % schools)], None, 0)
                .expect("user");
            accounts::new_enrol_code(&conn, &user, now).expect("code")
        })
        .collect()
}

/// The school of tablet `d`.
pub fn school_of(d: usize, schools: usize) -> String {
    format!("s{:03}", d % schools)
}

/// The process's peak resident memory (`VmHWM`), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds the process has used so far, user and system together.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// The `p`-quantile of sorted durations.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}
