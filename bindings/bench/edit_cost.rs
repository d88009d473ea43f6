//! The Rust half of the edit-cost measurement (`bindings/bench/edit_cost.sh` runs both halves):
//! one answer edit made straight on the core (`Store::edit` + `Record::set_answer`) and through
//! the bindings' Rust API (`FormRecord::set_answer`: the guard, locks and conversions, no FFI).
//! `edit_cost.kts` makes the same edits through the generated Kotlin code; the difference per
//! call is the cost of crossing the boundary.
//!
//! Procedure, the same on both sides: a store file with `Durability::Normal` (so the figures are
//! not the disk's fsync), then ROUNDS rounds of: create a lesson observation, set `period` EDITS
//! times (values 1..=12 in turn; core and bindings rounds alternate), each call timed alone (wall clock), and each round's CPU time
//! of the calling thread read before and after (Linux: /proc/thread-self/schedstat; the JVM's
//! ThreadMXBean reads the same clock). The first WARMUP rounds are not counted. On a machine
//! shared with other work the CPU time per call is the steadier figure: it leaves out the time
//! the thread waited for a core.
//!
//! Usage: cargo run --release -p shidao-bindings --example edit-cost

use std::time::Instant;

use shidao_bindings::{AnswerValue, Durability, ShidaoStore};
use shidao_core::store::{Store, StoreOptions};
use shidao_core::{Answer, DeviceId, FieldRef, SchoolId, UserId};

const WARMUP: usize = 5;
const ROUNDS: usize = 20;
const EDITS: usize = 500;

/// Median, 99th percentile and mean of per-call times, in µs.
fn summary(mut ns: Vec<u64>) -> (f64, f64, f64) {
    ns.sort_unstable();
    let pick = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
    (pick(0.5), pick(0.99), mean)
}

/// CPU time this thread has run, in ns (0 where /proc does not say).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The median over rounds of CPU time per call, in µs.
fn cpu_per_call(mut rounds: Vec<u64>) -> f64 {
    rounds.sort_unstable();
    rounds[rounds.len() / 2] as f64 / EDITS as f64 / 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // Straight on the core, and through the bindings' Rust API: rounds alternate, so both
    // sides see the same load.
    let core_store = Store::open_with(
        dir.path().join("core.db"),
        StoreOptions { durability: shidao_core::store::Durability::Normal, ..Default::default() },
    )?;
    let core_editor = shidao_core::Editor {
        user: UserId::new("insp-01")?,
        device: DeviceId::new("bench")?,
        role: shidao_core::Role::Inspector,
    };
    let school = SchoolId::new("ouhai-033")?;
    let period = FieldRef::top("period");
    let api_store = ShidaoStore::open_with(dir.path().join("bindings.db").display().to_string(), Durability::Normal)?;
    let api_editor = core_editor.clone();

    let (mut core_ns, mut core_cpu, mut api_ns, mut api_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..WARMUP + ROUNDS {
        let counted = round >= WARMUP;

        let mut record = core_store.create("classroom-observation", &school, &core_editor)?;
        let cpu = thread_cpu_ns();
        for i in 0..EDITS {
            let value = (i % 12) as i64 + 1;
            let t = Instant::now();
            core_store.edit(&mut record, |r| r.set_answer(&period, Answer::Integer(value)))?;
            let ns = t.elapsed().as_nanos() as u64;
            if counted {
                core_ns.push(ns);
            }
        }
        if counted {
            core_cpu.push(thread_cpu_ns() - cpu);
        }

        let record = api_store.create_record("classroom-observation".into(), "ouhai-033".into(), api_editor.clone())?;
        let cpu = thread_cpu_ns();
        for i in 0..EDITS {
            let (field, answer) = ("period".to_string(), AnswerValue::Integer { value: (i % 12) as i64 + 1 });
            let t = Instant::now();
            record.set_answer(field, answer, None)?;
            let ns = t.elapsed().as_nanos() as u64;
            if counted {
                api_ns.push(ns);
            }
        }
        if counted {
            api_cpu.push(thread_cpu_ns() - cpu);
        }
    }

    let (c50, c99, cmean) = summary(core_ns);
    let (a50, a99, amean) = summary(api_ns);
    println!("{} edits each ({ROUNDS} rounds of {EDITS} after {WARMUP} warm-up rounds), alternating, in Rust:", ROUNDS * EDITS);
    let (ccpu, acpu) = (cpu_per_call(core_cpu), cpu_per_call(api_cpu));
    println!("rust core      set_answer: wall median {c50:7.1} µs  p99 {c99:7.1} µs  mean {cmean:7.1} µs | thread CPU {ccpu:6.1} µs/call");
    println!("rust bindings  set_answer: wall median {a50:7.1} µs  p99 {a99:7.1} µs  mean {amean:7.1} µs | thread CPU {acpu:6.1} µs/call");
    Ok(())
}
