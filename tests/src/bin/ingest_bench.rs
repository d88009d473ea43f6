//! The relay's ingest on its own: the sync requests of N tablets are built first (their new
//! records, then one edit on each record), and then replayed against a fresh relay process from
//! several connections, so that what is measured is the relay's work, not the tablets'.
//!
//! 1. A central store with one school per tablet (so a request pulls nothing back: the cost is
//!    the push), the workload's form published; the tablets enrol and take their reference data.
//! 2. The store is copied as it stands (accounts, no records).
//! 3. Each tablet fills its records and syncs through the relay, and every request body it sends
//!    is kept; then one field of every record is changed and synced the same way.
//! 4. A fresh relay on the copy receives the kept bodies, new records first, then the edits,
//!    each phase from `--connections` connections at once; every push must be accepted.
//!
//! Prints records/s, median and p99 per request, relay CPU seconds per 1,000 records, peak RSS
//! and store bytes per record, and a final `key=value` line (`docs/benchmarks.md`).
//!
//! Run: `cargo build --release -p shidao-tests && target/release/ingest-bench [--devices 10]
//! [--records 100] [--connections 4] [--form peer|lesson] [--envelope binary|json]`

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shidao_core::sample::Rng;
use shidao_core::sync::http::{Cancel, Progress};
use shidao_core::sync::protocol::{Envelope, Outcome, SyncResponse};
use shidao_core::RecordId;
use shidao_tests::load::{self, arg, cpu_seconds, peak_rss_mib, percentile, Workload};
use shidao_tests::{school, Relay, Tablet};

/// One kept request: whose token, and the body as the tablet sent it.
struct Kept {
    token: String,
    body: Vec<u8>,
    pushes: usize,
}

struct Replay {
    wall: Duration,
    times: Vec<Duration>,
    cpu: f64,
    accepted: usize,
    bytes_in: u64,
    bytes_out: u64,
}

fn main() {
    let devices: usize = arg("--devices", 10);
    let records: usize = arg("--records", 100);
    let connections: usize = arg("--connections", 4);
    let workload = Workload::parse(&arg("--form", "peer".to_string())).expect("--form peer or lesson");
    let envelope = match arg("--envelope", "binary".to_string()).as_str() {
        "binary" => Envelope::Binary,
        "json" => Envelope::Json { gzip: true },
        other => panic!("--envelope binary or json, not {other}"),
    };
    let dir = match std::env::var_os("SHIDAO_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("bench dir");
            tempfile::TempDir::new_in(d).expect("dir")
        }
        None => tempfile::tempdir().expect("dir"),
    };
    let db = dir.path().join("central.db");
    let relay_bin: PathBuf = std::env::current_exe().expect("exe").with_file_name("relay");
    assert!(relay_bin.exists(), "build the relay first: cargo build --release -p shidao-tests");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    // 1. Accounts, enrolment and the first sync (reference data and the form).
    let codes = load::programme(&db, devices, devices, workload);
    let mut relay = Relay::start(&relay_bin, &db);
    let mut tablets: Vec<Tablet> = rt.block_on(async {
        let mut out = Vec::new();
        for (d, code) in codes.iter().enumerate() {
            let t = Tablet::enrol(&relay.url, code, &dir.path().join(format!("tablet{d}.db"))).await.expect("enrol");
            t.sync().await.expect("first sync");
            out.push(t);
        }
        out
    });
    relay.kill();
    // 2. The store as the replay starts from.
    let base = dir.path().join("base.db");
    copy_store(&db, &base);
    let base_bytes = store_bytes(&base);
    relay.restart();
    for t in &mut tablets {
        t.reconnect(&relay.url);
        if envelope != Envelope::Binary {
            t.http.use_json();
        }
    }

    // 3. The tablets' requests, kept as they were sent.
    let build = Instant::now();
    let mut fresh = Vec::new();
    let mut edits = Vec::new();
    let mut wire_new = 0u64;
    let mut wire_edit = (0u64, 0u64);
    for (d, t) in tablets.iter().enumerate() {
        let s = school(&load::school_of(d, devices));
        let mut rng = Rng::new(d as u64);
        let mut ids: Vec<RecordId> = Vec::with_capacity(records);
        for _ in 0..records {
            let mut r = t.store.create(workload.template(), &s, &t.editor).expect("create");
            t.store.edit(&mut r, |r| workload.fill(r, &mut rng)).expect("fill");
            ids.push(r.id().clone());
        }
        let (sent, _) = rt.block_on(keep_requests(t, envelope, &mut fresh));
        wire_new += sent;
        for id in &ids {
            let mut r = t.store.load(id, &t.editor).expect("load");
            t.store.edit(&mut r, |r| workload.edit(r)).expect("edit");
        }
        let (sent, received) = rt.block_on(keep_requests(t, envelope, &mut edits));
        wire_edit.0 += sent;
        wire_edit.1 += received;
    }
    let built = build.elapsed();
    relay.kill();
    drop(tablets);

    // 4. The replay, against a fresh relay on the copy.
    let replay_db = dir.path().join("replay.db");
    copy_store(&base, &replay_db);
    let fresh_relay = Relay::start(&relay_bin, &replay_db);
    let total = devices * records;
    let new_phase = rt.block_on(replay(&fresh_relay, envelope, fresh, connections));
    let edit_phase = rt.block_on(replay(&fresh_relay, envelope, edits, connections));
    let rss = peak_rss_mib(fresh_relay.pid());
    drop(fresh_relay);
    assert_eq!(new_phase.accepted, total, "every new record must be accepted");
    assert_eq!(edit_phase.accepted, total, "every edit must be accepted");
    let per_record = (store_bytes(&replay_db).saturating_sub(base_bytes)) as f64 / total as f64;

    println!(
        "{} form, {envelope:?} envelope: {devices} tablets x {records} records = {total}; requests built in {:.1}s (not measured)",
        workload.name(),
        built.as_secs_f64()
    );
    let mut summary = vec![format!("form={} envelope={} records={total} connections={connections}", workload.name(), envelope_name(envelope))];
    for (name, ph) in [("new", &new_phase), ("edit", &edit_phase)] {
        let mut times = ph.times.clone();
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let rate = total as f64 / ph.wall.as_secs_f64();
        println!(
            "{name}: {} requests in {:.2}s = {rate:.0} records/s; per request median {:.1} ms, p99 {:.1} ms; relay CPU {:.3} s per 1,000 records; {} B in and {} B out per record",
            times.len(),
            ph.wall.as_secs_f64(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            ph.cpu * 1000.0 / total as f64,
            ph.bytes_in / total as u64,
            ph.bytes_out / total as u64,
        );
        summary.push(format!("{name}_records_per_s={rate:.0}"));
        summary.push(format!("{name}_p50_ms={:.1}", p50.as_secs_f64() * 1e3));
        summary.push(format!("{name}_p99_ms={:.1}", p99.as_secs_f64() * 1e3));
        summary.push(format!("{name}_cpu_s_per_1000={:.3}", ph.cpu * 1000.0 / total as f64));
    }
    println!(
        "tablets' wire: {:.0} B sent per new record; the edit round {} KB sent + {} KB received in all",
        wire_new as f64 / total as f64,
        wire_edit.0 / 1024,
        wire_edit.1 / 1024
    );
    println!("relay peak memory {rss:.1} MiB; central store {per_record:.0} B per record (projection and indexes included)");
    for (table, bytes) in store_breakdown(&replay_db, &base) {
        println!("  {table}: {:.0} B per record", bytes as f64 / total as f64);
    }
    summary.push(format!("wire_bytes_per_record={:.0}", wire_new as f64 / total as f64));
    summary.push(format!("edit_wire_kb={}", (wire_edit.0 + wire_edit.1) / 1024));
    summary.push(format!("store_bytes_per_record={per_record:.0}"));
    summary.push(format!("relay_peak_rss_mib={rss:.1}"));
    println!("{}", summary.join(" "));
}

fn envelope_name(e: Envelope) -> &'static str {
    if e == Envelope::Binary { "binary" } else { "json" }
}

/// Syncs a tablet to the end, keeping each request body it sends; returns the bytes sent and
/// received.
async fn keep_requests(t: &Tablet, envelope: Envelope, kept: &mut Vec<Kept>) -> (u64, u64) {
    let mut progress = Progress::default();
    loop {
        let prepared = t.http.sync.prepare(&t.store).expect("prepare");
        let pushes = prepared.request.push.len();
        kept.push(Kept { token: t.token.clone(), body: envelope.encode(&prepared.request).expect("encode"), pushes });
        let resp = t.http.round_trip(&t.token, &prepared.request, &Cancel::new(), &mut progress).await.expect("sync");
        let round = t.http.sync.absorb(&t.store, &t.editor, prepared, resp).expect("absorb");
        assert!(round.refused.is_empty(), "refused: {:?}", round.refused);
        if !round.more {
            return (progress.bytes_sent, progress.bytes_received);
        }
    }
}

/// Sends the kept bodies from `connections` connections at once; one connection sends one
/// tablet's requests in order.
async fn replay(relay: &Relay, envelope: Envelope, kept: Vec<Kept>, connections: usize) -> Replay {
    let queue = Arc::new(Mutex::new(kept.into_iter().collect::<VecDeque<_>>()));
    let cpu_before = cpu_seconds(relay.pid());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (queue, url) = (queue.clone(), relay.url.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut out = (Vec::new(), 0usize, 0u64, 0u64);
            loop {
                let Some(k) = queue.lock().expect("queue").pop_front() else { return out };
                let mut req = client
                    .post(format!("{url}/v1/sync"))
                    .bearer_auth(&k.token)
                    .header("content-type", envelope.content_type())
                    .header("accept-encoding", "gzip");
                if let Some(e) = envelope.content_encoding() {
                    req = req.header("content-encoding", e);
                }
                out.2 += k.body.len() as u64;
                let sent = Instant::now();
                let resp = req.body(k.body).send().await.expect("send");
                let status = resp.status();
                let gzip = resp.headers().get("content-encoding").is_some_and(|v| v.as_bytes() == b"gzip");
                let bytes = resp.bytes().await.expect("answer");
                out.0.push(sent.elapsed());
                assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&bytes));
                out.3 += bytes.len() as u64;
                let answer: SyncResponse = match envelope {
                    Envelope::Binary => envelope.decode(&bytes).expect("binary answer"),
                    Envelope::Json { .. } => Envelope::Json { gzip }.decode(&bytes).expect("json answer"),
                };
                let accepted = answer.results.iter().filter(|r| r.outcome == Outcome::Accepted).count();
                assert_eq!(accepted, k.pushes, "every push of a request is accepted: {:?}", answer.results.first());
                out.1 += accepted;
            }
        }));
    }
    let mut phase = Replay { wall: Duration::ZERO, times: Vec::new(), cpu: 0.0, accepted: 0, bytes_in: 0, bytes_out: 0 };
    for w in workers {
        let (times, accepted, bytes_in, bytes_out) = w.await.expect("worker");
        phase.times.extend(times);
        phase.accepted += accepted;
        phase.bytes_in += bytes_in;
        phase.bytes_out += bytes_out;
    }
    phase.wall = start.elapsed();
    phase.cpu = cpu_seconds(relay.pid()) - cpu_before;
    phase
}

/// A consistent copy of a (closed) central store.
fn copy_store(from: &Path, to: &Path) {
    let conn = rusqlite::Connection::open(from).expect("open");
    conn.execute("VACUUM INTO ?1", [to.display().to_string()]).expect("copy");
}

/// What each table and index of a store grew by over `base`, largest first (SQLite's `dbstat`).
fn store_breakdown(path: &Path, base: &Path) -> Vec<(String, i64)> {
    let sizes = |p: &Path| -> std::collections::HashMap<String, i64> {
        let conn = rusqlite::Connection::open(p).expect("open");
        let Ok(mut stmt) = conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name") else { return Default::default() };
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("dbstat").filter_map(Result::ok).collect()
    };
    let before = sizes(base);
    let mut grown: Vec<(String, i64)> =
        sizes(path).into_iter().map(|(name, size)| (name.clone(), size - before.get(&name).copied().unwrap_or(0))).filter(|(_, d)| *d > 0).collect();
    grown.sort_by_key(|(_, d)| -d);
    grown
}

/// The bytes a store holds once its log is folded in.
fn store_bytes(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page size");
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).expect("free");
    ((pages - free) * size) as u64
}
