//! Property: several replicas of one record, random edits of every field kind offline, merged in
//! random orders (in memory, through bytes, through device stores) always end identical, and
//! every value written concurrently to one field is reported, with its author.

use std::collections::{BTreeMap, HashMap};

use shidao_core::record::{Answer, FieldValue};
use shidao_core::sample::{candidates, Rng};
use shidao_core::store::{Store, StoreOptions};
use shidao_core::template::{FieldKind, BUILTIN_IDS};
use shidao_core::{builtin, Clock, FieldRef, NewRecord, Record, RecordId, Role};
use shidao_tests::{person, school};

/// 2026-11-22 10:00 in China: every replica and the store share this clock.
const NOW: i64 = 1_795_312_800;

/// What one replica did to a field during one offline round.
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Set(Option<Answer>),
    Increment(i64),
    Insert(String),
}

struct Round {
    /// (field, replica) → the last thing that replica did to it this round.
    last: BTreeMap<(FieldRef, usize), Did>,
}

fn random_edit(r: &mut Record, me: usize, rng: &mut Rng, round: &mut Round) {
    let t = r.template().clone();
    let fields: Vec<_> = t.fields.iter().filter(|f| f.kind().holds_answer()).collect();
    let f = fields[rng.below(fields.len())];
    let at = match f.parent {
        shidao_core::template::Parent::Top => FieldRef::top(f.id()),
        shidao_core::template::Parent::Repeat(gi) => {
            let group = t.fields[gi].id();
            let rows = r.row_ids(group).expect("rows");
            // Sometimes add, move or remove a row instead.
            match rng.below(6) {
                0 => {
                    r.add_row(group, Some(rng.below(rows.len() + 1))).expect("add row");
                    return;
                }
                1 if rows.len() > 1 => {
                    r.move_row(group, &rows[rng.below(rows.len())], rng.below(rows.len())).expect("move row");
                    return;
                }
                2 if rows.len() > 2 => {
                    r.remove_row(group, &rows[rng.below(rows.len())]).expect("remove row");
                    return;
                }
                _ => {}
            }
            match rng.pick(&rows) {
                Some(row) => FieldRef::in_row(f.id(), row),
                None => {
                    r.add_row(group, None).expect("add row");
                    return;
                }
            }
        }
    };
    let did = match f.kind() {
        FieldKind::Counter => {
            let by = 1 + rng.below(3) as i64;
            if r.increment(&at, by).is_err() {
                return;
            }
            let prev = match round.last.get(&(at.clone(), me)) {
                Some(Did::Increment(n)) => *n,
                _ => 0,
            };
            Did::Increment(prev + by)
        }
        FieldKind::LongText => {
            let frag = format!("[{me}:{}]", rng.next_u64() % 10_000);
            let len = match r.answer(&at).expect("answer").answer {
                Some(Answer::LongText(t)) => t.chars().count(),
                _ => 0,
            };
            // At either end, so a fragment of this round is never split by a later one of the same
            // replica (the check looks for each fragment whole).
            let pos = if rng.below(2) == 0 { 0 } else { len };
            r.splice_text(&at, pos, 0, &frag).expect("splice");
            Did::Insert(frag)
        }
        FieldKind::Signature => {
            r.sign(&at, Some(format!("签名{}", rng.below(100))), None).expect("sign");
            Did::Set(r.answer(&at).expect("answer").answer)
        }
        FieldKind::MultipleChoice => {
            // Ticks merge per option; the property checks convergence only.
            let c = candidates(f, &r.today(), rng);
            if let Some(a) = c.into_iter().next() {
                let _ = r.set_answer(&at, a);
            }
            return;
        }
        _ => {
            // Writing the value a field already holds is no edit (Automerge records nothing), so
            // the model counts only real changes.
            let current = r.answer(&at).expect("answer").answer;
            if rng.below(8) == 0 && current.is_some() {
                r.clear_answer(&at).expect("clear");
                Did::Set(None)
            } else {
                let c = candidates(f, &r.today(), rng);
                let mut done = None;
                for a in c.into_iter().filter(|a| Some(a) != current.as_ref()) {
                    if r.set_answer(&at, a.clone()).is_ok() {
                        done = Some(a);
                        break;
                    }
                }
                match done {
                    Some(a) => Did::Set(Some(a)),
                    None => return,
                }
            }
        }
    };
    // A later edit by the same replica replaces its earlier one (inserts accumulate separately).
    if let Did::Insert(frag) = &did {
        let key = (at.clone(), me);
        let prev = match round.last.remove(&key) {
            Some(Did::Insert(p)) => p,
            _ => String::new(),
        };
        round.last.insert(key, Did::Insert(format!("{prev}\u{1}{frag}")));
    } else {
        round.last.insert((at, me), did);
    }
}

fn merge_into(replicas: &mut [Record], into: usize, from: usize, how: usize) {
    let (a, b) = if into < from {
        let (l, r) = replicas.split_at_mut(from);
        (&mut l[into], &r[0])
    } else {
        let (l, r) = replicas.split_at_mut(into);
        (&mut r[0], &l[from])
    };
    match how {
        0 => {
            a.merge(b).expect("merge");
        }
        _ => {
            a.merge_bytes(&b.save()).expect("merge bytes");
        }
    }
}

fn converged(replicas: &[Record]) -> bool {
    let mut h0 = replicas[0].heads();
    h0.sort();
    replicas.iter().all(|r| {
        let mut h = r.heads();
        h.sort();
        h == h0
    })
}

fn check_round(r: &Record, round: &Round, case: &str) {
    let mut by_field: HashMap<&FieldRef, Vec<(usize, &Did)>> = HashMap::new();
    for ((at, who), did) in &round.last {
        by_field.entry(at).or_default().push((*who, did));
    }
    for (at, dids) in by_field {
        let Ok(view) = r.answer(at) else { continue }; // the row was removed concurrently
        match dids[0].1 {
            Did::Set(_) => {
                let wrote: Vec<&Option<Answer>> = dids
                    .iter()
                    .map(|(_, d)| match d {
                        Did::Set(a) => a,
                        _ => unreachable!("one field, one kind"),
                    })
                    .collect();
                if wrote.len() == 1 {
                    assert_eq!(&view.answer, wrote[0], "{case}: {at} lost its only write");
                    assert!(view.conflicts.is_empty(), "{case}: {at} reports a conflict nobody made");
                } else {
                    let mut reported: Vec<String> =
                        view.conflicts.iter().map(|c: &FieldValue| format!("{:?}", c.answer)).collect();
                    let mut expected: Vec<String> = wrote.iter().map(|a| format!("{a:?}")).collect();
                    reported.sort();
                    expected.sort();
                    assert_eq!(reported, expected, "{case}: concurrent values of {at} not all reported");
                    let mut authors: Vec<String> =
                        view.conflicts.iter().map(|c| c.by.as_ref().expect("author").user.clone()).collect();
                    authors.sort();
                    let mut want: Vec<String> = dids.iter().map(|(w, _)| format!("u{w}")).collect();
                    want.sort();
                    assert_eq!(authors, want, "{case}: authors of {at}");
                }
            }
            Did::Insert(_) => {
                let Some(Answer::LongText(text)) = &view.answer else { panic!("{case}: {at} lost its text") };
                for (_, d) in &dids {
                    let Did::Insert(frags) = d else { unreachable!() };
                    for frag in frags.split('\u{1}').filter(|f| !f.is_empty()) {
                        assert!(text.contains(frag), "{case}: {at} lost insert {frag}: {text}");
                    }
                }
            }
            Did::Increment(_) => {}
        }
    }
}

fn run_case(template: &str, seed: u64, replicas_n: usize, rounds: usize) {
    let case = format!("{template} seed {seed}");
    let mut rng = Rng::new(seed);
    let t = builtin(template).expect("template");
    let role = t.def.filled_by[0];
    let editors: Vec<_> = (0..replicas_n).map(|i| person(&format!("u{i}"), role)).collect();
    let first = Record::create(
        t,
        NewRecord { id: RecordId::random(), school: school("s") },
        editors[0].clone(),
        Clock::fixed(NOW),
    )
    .expect("create");
    let mut replicas: Vec<Record> = (0..replicas_n).map(|i| first.fork(editors[i].clone())).collect();
    let counters: Vec<FieldRef> = first
        .template()
        .top_fields()
        .filter(|f| f.kind() == FieldKind::Counter)
        .map(|f| FieldRef::top(f.id()))
        .collect();
    let mut counter_totals: HashMap<FieldRef, i64> = HashMap::new();
    for _ in 0..rounds {
        let mut round = Round { last: BTreeMap::new() };
        for (i, r) in replicas.iter_mut().enumerate() {
            for _ in 0..rng.below(12) + 1 {
                random_edit(r, i, &mut rng, &mut round);
            }
        }
        for ((at, _), d) in &round.last {
            if let Did::Increment(n) = d {
                *counter_totals.entry(at.clone()).or_default() += n;
            }
        }
        // Random pairwise merges until everyone has everything.
        let mut steps = 0;
        while !converged(&replicas) {
            let a = rng.below(replicas_n);
            let b = rng.below(replicas_n);
            if a != b {
                merge_into(&mut replicas, a, b, rng.below(2));
            }
            steps += 1;
            assert!(steps < 10_000, "{case}: merges never converge");
        }
        let view = replicas[0].read();
        for r in &replicas[1..] {
            assert_eq!(r.read(), view, "{case}: replicas differ after merging");
        }
        check_round(&replicas[0], &round, &case);
        for c in &counters {
            let want = counter_totals.get(c).copied().unwrap_or(0);
            let got = match replicas[0].answer(c).expect("counter").answer {
                Some(Answer::Counter(n)) => n,
                _ => 0,
            };
            assert_eq!(got, want, "{case}: counter {c} does not add up");
        }
    }
    // The same result through device stores: each replica's bytes merged into a fresh store.
    let opts = StoreOptions { clock: Clock::fixed(NOW), ..Default::default() };
    let store = Store::open_in_memory_with(opts).expect("store");
    for (i, r) in replicas.iter().enumerate() {
        store.merge_remote(&r.save(), &editors[i]).expect("merge into store");
    }
    let stored = store.load(first.id(), &editors[0]).expect("load");
    assert_eq!(stored.read(), replicas[0].read(), "{case}: store copy differs");
}

#[test]
fn replicas_converge_and_report_every_concurrent_value() {
    let cases: u64 = std::env::var("SHIDAO_PROPERTY_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    for (i, template) in BUILTIN_IDS.iter().enumerate() {
        for seed in 0..cases {
            run_case(template, seed * 31 + i as u64, 2 + (seed as usize % 3), 3);
        }
    }
}

#[test]
fn a_principal_cannot_create_a_visit_record() {
    // The generator above only uses roles that fill each form; the rule itself holds too.
    let t = builtin("inspection-visit").expect("template");
    let err = Record::create(
        t,
        NewRecord { id: RecordId::random(), school: school("s") },
        person("p", Role::Principal),
        Clock::fixed(0),
    )
    .expect_err("principals do not fill visit records");
    assert!(err.to_string().contains("principal"), "{err}");
}
