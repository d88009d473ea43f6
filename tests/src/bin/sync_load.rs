//! Load generator: many simulated tablets against a real relay process on loopback.
//!
//! Each tablet (its own thread and device store) fills observation records offline, then all
//! sync at once (push phase); then all sync again to pull their teammates' records (pull phase).
//! Prints figures and a final `key=value` line; `docs/benchmarks.md` records a run.
//!
//! Run: `cargo run --release -p shidao-tests --bin sync-load -- [--devices N] [--records R]`
//! (the `relay` binary of this package must be built in the same profile: `cargo build --release
//! -p shidao-tests` builds both).

use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use shidao_core::sample::{fill_completely, Rng};
use shidao_core::sync::http::{Cancel, Progress};
use shidao_core::template::Role;
use shidao_tests::{school, Relay, Tablet};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Phase {
    times: Vec<Duration>,
    sent: u64,
    received: u64,
    wall: Duration,
}

fn main() {
    let devices = arg("--devices", 20);
    let records = arg("--records", 50);
    let schools = (devices / 4).max(1);
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let relay_bin: PathBuf = std::env::current_exe().expect("exe").with_file_name("relay");
    assert!(relay_bin.exists(), "build the relay first: cargo build --release -p shidao-tests");

    // The programme: `schools` schools, four inspectors per school.
    let codes: Vec<String> = {
        use shidao_server::accounts;
        let conn = shidao_server::db::open(&db).expect("db");
        accounts::add_programme(&conn, "load", "负载测试", None).expect("programme");
        for s in 0..schools {
            accounts::add_school(&conn, "load", &format!("s{s:03}"), &format!("学校{s}"), "优质", "").expect("school");
        }
        let now = shidao_core::Clock::system().now();
        (0..devices)
            .map(|d| {
                let user = format!("u{d:04}");
                accounts::add_user(&conn, &user, &user, Role::Inspector, Some("load"), &[format!("s{:03}", d % schools)], None, 0)
                    .expect("user");
                accounts::new_enrol_code(&conn, &user, now).expect("code")
            })
            .collect()
    };
    let relay = Relay::start(&relay_bin, &db);
    let url = relay.url.clone();

    // Every tablet on its own thread: enrol, fill offline, then push and pull at the same moments.
    let barrier = Arc::new(Barrier::new(devices + 1));
    let push = Arc::new(Mutex::new(Phase { times: vec![], sent: 0, received: 0, wall: Duration::ZERO }));
    let pull = Arc::new(Mutex::new(Phase { times: vec![], sent: 0, received: 0, wall: Duration::ZERO }));
    let mut threads = Vec::new();
    for (d, code) in codes.into_iter().enumerate() {
        let (url, barrier, push, pull) = (url.clone(), barrier.clone(), push.clone(), pull.clone());
        let path = dir.path().join(format!("tablet{d}.db"));
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let tablet = Tablet::enrol(&url, &code, &path).await.expect("enrol");
                let s = school(&format!("s{:03}", d % schools));
                let mut rng = Rng::new(d as u64);
                for _ in 0..records {
                    let mut r = tablet.store.create("classroom-observation", &s, &tablet.editor).expect("create");
                    tablet.store.edit(&mut r, |r| fill_completely(r, 2, &mut rng)).expect("fill");
                }
                for phase in [&push, &pull] {
                    barrier.wait();
                    let mut last = Progress::default();
                    let start = Instant::now();
                    tablet
                        .http
                        .sync(&tablet.store, &tablet.token, &tablet.editor, &Cancel::new(), |p| last = p.clone())
                        .await
                        .expect("sync");
                    let took = start.elapsed();
                    let mut ph = phase.lock().expect("lock");
                    ph.times.push(took);
                    ph.sent += last.bytes_sent;
                    ph.received += last.bytes_received;
                    drop(ph);
                    barrier.wait();
                }
                tablet.store.count().expect("count")
            })
        }));
    }
    for phase in [&push, &pull] {
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        phase.lock().expect("lock").wall = start.elapsed();
    }
    let held: Vec<u64> = threads.into_iter().map(|t| t.join().expect("tablet thread")).collect();
    let rss = peak_rss_mib(relay.pid());
    let total = (devices * records) as f64;
    let per_school = devices / schools;
    let expected = (records * per_school) as u64;
    assert!(held.iter().all(|n| *n >= expected), "a tablet lacks its teammates' records: {held:?}");

    let mut summary = Vec::new();
    for (name, phase) in [("push", &push), ("pull", &pull)] {
        let mut ph = phase.lock().expect("lock");
        ph.times.sort();
        let (p50, p99) = (percentile(&ph.times, 0.5), percentile(&ph.times, 0.99));
        println!(
            "{name}: {devices} tablets at once, wall {:.2}s; per-tablet sync median {:.0} ms, p99 {:.0} ms; sent {} KB, received {} KB",
            ph.wall.as_secs_f64(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            ph.sent / 1024,
            ph.received / 1024
        );
        summary.push(format!("{name}_wall_s={:.2}", ph.wall.as_secs_f64()));
        summary.push(format!("{name}_p50_ms={:.0}", p50.as_secs_f64() * 1e3));
        summary.push(format!("{name}_p99_ms={:.0}", p99.as_secs_f64() * 1e3));
        if name == "push" {
            summary.push(format!("records_per_s={:.0}", total / ph.wall.as_secs_f64()));
            summary.push(format!("wire_bytes_per_record={:.0}", ph.sent as f64 / total));
        } else {
            summary.push(format!("pulled_records={}", held.iter().sum::<u64>() - total as u64));
        }
    }
    println!("relay peak memory: {rss:.1} MiB");
    summary.insert(0, format!("devices={devices} records={}", total as u64));
    summary.push(format!("server_peak_rss_mib={rss:.1}"));
    println!("{}", summary.join(" "));
}
