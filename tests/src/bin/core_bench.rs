//! Benchmark of the device core: durable edit latency, opening and listing a large store, loading
//! a much-edited record, the size of a filled observation, and peak memory.
//!
//! Run: `cargo run --release -p shidao-tests --bin core-bench` (add `-- --quick` for a short run,
//! `-- --encrypted` to measure an encrypted store (SQLCipher) beside the plain one in the same run).
//! The last line is a `key=value` summary; `docs/benchmarks.md` records a run.

use std::time::{Duration, Instant};

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::{Durability, RecordFilter, Store, StoreKey, StoreOptions};
use shidao_core::template::FieldKind;
use shidao_core::{FieldRef, Role, SchoolId};
use shidao_tests::{person, school};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let encrypted = std::env::args().any(|a| a == "--encrypted");
    let key = StoreKey::from([0x5c; 32]);
    let open = |path: &std::path::Path, opts: StoreOptions, key: Option<&StoreKey>| match key {
        Some(k) => Store::open_encrypted_with(path, k, opts),
        None => Store::open_with(path, opts),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let inspector = person("bench-insp", Role::Inspector);
    let mut summary: Vec<(String, String)> = Vec::new();

    // 1. One answer edit made durable, on a file store: FULL (the default, survives a power cut)
    //    and NORMAL (survives a killed app), measured in the same run.
    let edits = if quick { 300 } else { 3000 };
    let mut variants = vec![("full", Durability::Full, None), ("normal", Durability::Normal, None)];
    if encrypted {
        variants.extend([("full_enc", Durability::Full, Some(&key)), ("normal_enc", Durability::Normal, Some(&key))]);
    }
    for (name, durability, key) in variants {
        let opts = StoreOptions { durability, ..Default::default() };
        let store = open(&dir.path().join(format!("edits-{name}.db")), opts, key).expect("store");
        let mut r = store.create("classroom-observation", &school("s-1"), &inspector).expect("create");
        let t = r.template().clone();
        let targets: Vec<_> = t
            .top_fields()
            .filter(|f| matches!(f.kind(), FieldKind::Rating | FieldKind::Integer | FieldKind::Text | FieldKind::Counter))
            .cloned()
            .collect();
        let mut times = Vec::with_capacity(edits);
        for i in 0..edits {
            let f = &targets[i % targets.len()];
            let at = FieldRef::top(f.id());
            let start = Instant::now();
            match f.kind() {
                FieldKind::Counter => store.edit(&mut r, |r| r.increment(&at, 1)),
                FieldKind::Rating => {
                    let (lo, hi) = f.scale_range().expect("scale");
                    store.edit(&mut r, |r| r.set_answer(&at, Answer::Rating(lo + (i as i64 % (hi - lo + 1)))))
                }
                FieldKind::Integer => {
                    let v = f.def.min.unwrap_or(0.0) as i64 + (i as i64 % 3);
                    store.edit(&mut r, |r| r.set_answer(&at, Answer::Integer(v)))
                }
                _ => store.edit(&mut r, |r| r.set_answer(&at, Answer::Text(format!("记录{i}")))),
            }
            .unwrap_or_else(|e| panic!("edit of {}: {e}", f.id()));
            times.push(start.elapsed());
        }
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!(
            "durable edit ({name}): n={edits} median={:.0}us p99={:.0}us max={:.0}us",
            us(p50),
            us(p99),
            us(*times.last().expect("times"))
        );
        summary.push((format!("edit_{name}_p50_us"), format!("{:.0}", us(p50))));
        summary.push((format!("edit_{name}_p99_us"), format!("{:.0}", us(p99))));
    }

    // 2. A store of 10,000 records over 20 schools: open it, list one school's records.
    let n_records = if quick { 2000 } else { 10_000 };
    {
        let path = dir.path().join("big.db");
        let seed_start = Instant::now();
        {
            let store = Store::open_with(&path, StoreOptions { durability: Durability::Normal, ..Default::default() }).expect("store");
            let mut rng = Rng::new(1);
            for i in 0..n_records {
                let s = SchoolId::new(format!("school-{:02}", i % 20)).expect("id");
                let mut r = store.create("classroom-observation", &s, &inspector).expect("create");
                let date = format!("2026-{:02}-{:02}", 8 + i % 3, 1 + i % 28);
                store.edit(&mut r, |r| r.set_answer(&FieldRef::top("lesson_date"), Answer::Date(date))).expect("date");
                if i % 100 == 0 {
                    store.edit(&mut r, |r| fill_completely(r, 2, &mut rng)).expect("fill");
                }
            }
        }
        println!("seeded {n_records} records in {:.1}s", seed_start.elapsed().as_secs_f64());
        let mut variants: Vec<(&str, std::path::PathBuf, Option<&StoreKey>)> = vec![("", path.clone(), None)];
        if encrypted {
            // The same store encrypted on its first open with a key (what an app update does).
            let enc = dir.path().join("big-enc.db");
            std::fs::copy(&path, &enc).expect("copy");
            let start = Instant::now();
            drop(Store::open_encrypted(&enc, &key).expect("encrypt"));
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            println!(
                "encrypt plain store of {n_records} on first keyed open: {ms:.0}ms ({} B plain, {} B encrypted)",
                size(&path),
                size(&enc)
            );
            summary.push(("encrypt_10k_ms".into(), format!("{ms:.0}")));
            variants.push(("_enc", enc, Some(&key)));
        }
        for (suffix, path, key) in variants {
            let mut opens = Vec::new();
            let mut lists = Vec::new();
            let mut listed = 0;
            for _ in 0..7 {
                let start = Instant::now();
                let store = open(&path, StoreOptions::default(), key).expect("open");
                opens.push(start.elapsed());
                for _ in 0..5 {
                    let start = Instant::now();
                    let rows = store.list(&RecordFilter { school: Some(school("school-07")), ..Default::default() }).expect("list");
                    lists.push(start.elapsed());
                    listed = rows.len();
                }
            }
            opens.sort();
            lists.sort();
            println!(
                "open{} store of {n_records}: median={:.1}ms; list one school ({listed} records): median={:.2}ms p99={:.2}ms",
                if key.is_some() { " encrypted" } else { "" },
                us(percentile(&opens, 0.5)) / 1000.0,
                us(percentile(&lists, 0.5)) / 1000.0,
                us(percentile(&lists, 0.99)) / 1000.0
            );
            summary.push((format!("open_10k{suffix}_ms"), format!("{:.1}", us(percentile(&opens, 0.5)) / 1000.0)));
            summary.push((format!("list_school{suffix}_ms"), format!("{:.2}", us(percentile(&lists, 0.5)) / 1000.0)));
            summary.push((format!("list_school{suffix}_rows"), listed.to_string()));
        }
    }

    // 3. Load a record with 500 edits (as stored: snapshot plus chunks since the last compaction).
    {
        let store = Store::open(dir.path().join("history.db")).expect("store");
        let expert = person("bench-exp", Role::Expert);
        let mut r = store.create("guidance-log", &school("s-1"), &expert).expect("create");
        let long = r.template().top_fields().find(|f| f.kind() == FieldKind::LongText).expect("text").id().to_string();
        let hours = r.template().top_fields().find(|f| f.kind() == FieldKind::Decimal).expect("decimal").id().to_string();
        for i in 0..500 {
            if i % 2 == 0 {
                store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&long), 0, 0, "指导")).expect("splice");
            } else {
                store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&hours), Answer::Decimal(1.0 + (i % 5) as f64))).expect("hours");
            }
        }
        let id = r.id().clone();
        let mut loads = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            let loaded = store.load(&id, &expert).expect("load");
            loads.push(start.elapsed());
            std::hint::black_box(loaded);
        }
        loads.sort();
        let mut reads = Vec::new();
        let loaded = store.load(&id, &expert).expect("load");
        for _ in 0..50 {
            let start = Instant::now();
            std::hint::black_box(loaded.read());
            reads.push(start.elapsed());
        }
        reads.sort();
        let bytes = store.record_bytes(&id).expect("bytes").len();
        println!(
            "load 500-edit record ({bytes} B stored): median={:.0}us p99={:.0}us; full read with validation: median={:.0}us",
            us(percentile(&loads, 0.5)),
            us(percentile(&loads, 0.99)),
            us(percentile(&reads, 0.5))
        );
        summary.push(("load_500_edits_us".into(), format!("{:.0}", us(percentile(&loads, 0.5)))));
        summary.push(("read_500_edits_us".into(), format!("{:.0}", us(percentile(&reads, 0.5)))));
    }

    // 4. A 60-field observation filled once by one author: bytes of its compacted document.
    {
        let store = Store::open(dir.path().join("size.db")).expect("store");
        let mut r = store.create("classroom-observation", &school("s-1"), &inspector).expect("create");
        let t = r.template().clone();
        let mut rng = Rng::new(11);
        let mut filled = 0;
        for f in t.top_fields().filter(|f| f.kind().holds_answer() && f.kind() != FieldKind::Repeat) {
            if filled == 60 {
                break;
            }
            if shidao_core::sample::answer_field(&mut r, &FieldRef::top(f.id()), &mut rng).expect("answer") {
                filled += 1;
            }
        }
        // The rest from the first time-sampling snapshot, as an observer does in class.
        if let Some(group) = t.top_fields().find(|f| f.kind() == FieldKind::Repeat).map(|f| f.id().to_string()) {
            let row = r.add_row(&group, None).expect("row");
            for s in t.sub_fields(&group).filter(|s| s.kind().holds_answer()) {
                if filled == 60 {
                    break;
                }
                if shidao_core::sample::answer_field(&mut r, &FieldRef::in_row(s.id(), &row), &mut rng).expect("answer") {
                    filled += 1;
                }
            }
        }
        store.save(&mut r).expect("save");
        store.compact(r.id()).expect("compact");
        let on_disk = store.record_bytes(r.id()).expect("bytes").len();
        println!("observation with {filled} answers, one author: {on_disk} B compacted on disk");
        summary.push(("record_60_fields_bytes".into(), on_disk.to_string()));
        summary.push(("record_60_fields_answers".into(), filled.to_string()));
    }

    let rss = peak_rss_kb();
    println!("peak memory: {:.1} MiB", rss as f64 / 1024.0);
    summary.push(("peak_rss_mib".into(), format!("{:.1}", rss as f64 / 1024.0)));
    println!("{}", summary.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
}
