//! Load generator: many simulated tablets against a real relay process on loopback.
//!
//! Each tablet (its own thread and device store) enrols and takes its reference data, fills
//! records offline, then all sync at once (push phase); then all sync again to pull their
//! teammates' records (pull phase); then each changes one field of every record it holds and
//! syncs once more (edit phase), and all sync a last time to take their teammates' edits.
//! Prints figures and a final `key=value` line; `docs/benchmarks.md` records a run.
//!
//! The workload (`--form`): `lesson`, a full lesson observation (the built-in form), or `peer`,
//! the 60-answer form of the side-by-side measurement with automerge-repo, published like a
//! district's own.
//!
//! Run: `cargo run --release -p shidao-tests --bin sync-load -- [--devices N] [--records R]
//! [--form lesson|peer]`
//! (the `relay` binary of this package must be built in the same profile: `cargo build --release
//! -p shidao-tests` builds both).

use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use shidao_core::sample::Rng;
use shidao_core::sync::http::{Cancel, Progress};
use shidao_tests::load::{self, arg, peak_rss_mib, percentile, Workload};
use shidao_tests::{school, Relay, Tablet};

struct Phase {
    times: Vec<Duration>,
    sent: u64,
    received: u64,
    wall: Duration,
}

fn main() {
    let devices: usize = arg("--devices", 20);
    let records: usize = arg("--records", 50);
    let workload = Workload::parse(&arg("--form", "lesson".to_string())).expect("--form lesson or peer");
    let schools = (devices / 4).max(1);
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let relay_bin: PathBuf = std::env::current_exe().expect("exe").with_file_name("relay");
    assert!(relay_bin.exists(), "build the relay first: cargo build --release -p shidao-tests");

    // The programme: `schools` schools, four inspectors per school.
    let codes = load::programme(&db, devices, schools, workload);
    let relay = Relay::start(&relay_bin, &db);
    let url = relay.url.clone();

    // Every tablet on its own thread: enrol, fill offline, then push and pull at the same moments.
    let barrier = Arc::new(Barrier::new(devices + 1));
    let phase = || Arc::new(Mutex::new(Phase { times: vec![], sent: 0, received: 0, wall: Duration::ZERO }));
    let (push, pull, edit, settle) = (phase(), phase(), phase(), phase());
    let mut threads = Vec::new();
    for (d, code) in codes.into_iter().enumerate() {
        let (url, barrier) = (url.clone(), barrier.clone());
        let phases = [push.clone(), pull.clone(), edit.clone(), settle.clone()];
        let path = dir.path().join(format!("tablet{d}.db"));
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let tablet = Tablet::enrol(&url, &code, &path).await.expect("enrol");
                tablet.sync().await.expect("reference data and forms");
                let s = school(&load::school_of(d, schools));
                let mut rng = Rng::new(d as u64);
                let mut own = Vec::with_capacity(records);
                for _ in 0..records {
                    let mut r = tablet.store.create(workload.template(), &s, &tablet.editor).expect("create");
                    tablet.store.edit(&mut r, |r| workload.fill(r, &mut rng)).expect("fill");
                    own.push(r.id().clone());
                }
                for (i, phase) in phases.iter().enumerate() {
                    if i == 2 {
                        // The edit phase: one field changed on every record, by its author.
                        for id in &own {
                            let mut r = tablet.store.load(id, &tablet.editor).expect("load");
                            tablet.store.edit(&mut r, |r| workload.edit(r)).expect("edit");
                        }
                    }
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
    for phase in [&push, &pull, &edit, &settle] {
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
    for (name, phase) in [("push", &push), ("pull", &pull), ("edit", &edit), ("settle", &settle)] {
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
        match name {
            "push" => {
                summary.push(format!("records_per_s={:.0}", total / ph.wall.as_secs_f64()));
                summary.push(format!("wire_bytes_per_record={:.0}", ph.sent as f64 / total));
            }
            "pull" => summary.push(format!("pulled_records={}", held.iter().sum::<u64>() - total as u64)),
            // One field changed on every record: the bytes both ways of the round that sends the
            // edits, and of the round that brings them to the teammates.
            _ => summary.push(format!("{name}_wire_kb={}", (ph.sent + ph.received) / 1024)),
        }
    }
    println!("relay peak memory: {rss:.1} MiB");
    summary.insert(0, format!("form={} devices={devices} records={}", workload.name(), total as u64));
    summary.push(format!("server_peak_rss_mib={rss:.1}"));
    println!("{}", summary.join(" "));
}
