//! Property: the relay's judgement of a push (`rules::judge_push`) and the core's edit methods
//! are one rule book.
//!
//! Random acts by random people (two inspectors, a supervisor, an admin) on their own replicas of
//! one record, pulled and pushed in random orders. An act the core's method allows becomes a
//! change; an act it refuses is, a third of the time, crafted anyway as raw Automerge operations of the
//! same shape (what a modified tablet would send). Then for every push: the relay accepts it
//! exactly when every change in it was allowed by the core at the state it was made on and no
//! change stands beside an approval that did not see it (the seal, `docs/protocol.md`).
//! What must stay true: the test stays a few seconds in the test command (`SHIDAO_RULE_CASES`
//! raises the number of sequences).

use std::collections::HashSet;
use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ChangeHash, ObjType, ReadDoc, ROOT};
use shidao_core::record::rules::{judge_push, Pusher};
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::template::Role;
use shidao_core::{builtin, Answer, Clock, DeviceId, Editor, FieldRef, NewRecord, Record, RecordId, SchoolId, Template, UserId};

fn templates(id: &str, v: u32) -> Option<Arc<Template>> {
    builtin(id).filter(|t| t.version() == v)
}

fn editor(user: &str, role: Role) -> Editor {
    Editor { user: UserId::new(user).expect("user"), device: DeviceId::new(format!("{user}-tab")).expect("device"), role }
}

struct Replica {
    editor: Editor,
    doc: Automerge,
    /// Changes made here that the core refused (crafted).
    crafted: HashSet<ChangeHash>,
}

impl Replica {
    fn record(&self) -> Record {
        Record::from_doc(self.doc.clone(), templates, self.editor.clone(), Clock::fixed(1_790_000_000)).expect("record")
    }
}

/// A raw status move with its review step, as `Record::review_step` writes it.
fn craft_step(doc: &mut Automerge, status: &str, action: &str, user: &str, comment: Option<&str>) {
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(1_790_000_000),
        |tx| {
            tx.put(ROOT, "status", status)?;
            let review = tx.get(ROOT, "review")?.expect("review").1;
            let n = tx.length(&review);
            let e = tx.insert_object(&review, n, ObjType::Map)?;
            tx.put(&e, "action", action)?;
            tx.put(&e, "user", user)?;
            if let Some(c) = comment {
                tx.put(&e, "comment", c)?;
            }
            Ok(())
        },
    )
    .expect("craft");
}

fn craft_answer(doc: &mut Automerge, field: &str, value: Option<&str>) {
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(1_790_000_000),
        |tx| {
            let answers = tx.get(ROOT, "answers")?.expect("answers").1;
            match value {
                Some(v) => tx.put(&answers, field, v)?,
                None => tx.put(&answers, field, automerge::ScalarValue::Null)?,
            }
            Ok(())
        },
    )
    .expect("craft");
}

/// One act by a replica: through the core's method, or crafted when the core refuses (half the
/// time). Returns whether a change was made.
fn act(rep: &mut Replica, rng: &mut Rng) -> bool {
    let mut record = rep.record();
    let before = record.heads();
    let text = format!("文本{}", rng.below(1000));
    // Weighted so that records get submitted and approved often enough for the seal to matter.
    let which = [0, 0, 1, 2, 2, 3, 4, 5, 5, 5, 6][rng.below(11)];
    let result = match which {
        0 => record.set_answer(&FieldRef::top("visit_focus"), Answer::Text(text.clone())),
        1 => record.clear_answer(&FieldRef::top("visit_focus")),
        2 => record.submit(),
        3 => record.return_for_correction("请补充"),
        4 => record.return_for_correction(""),
        5 => record.approve(None),
        _ => match record.conflicts().first() {
            Some(c) => {
                let pick = c.conflicts[rng.below(c.conflicts.len())].answer.clone();
                match pick {
                    Some(a) => record.set_answer(&c.field, a),
                    None => record.clear_answer(&c.field),
                }
            }
            None => return false,
        },
    };
    if result.is_ok() {
        if record.heads() != before {
            rep.doc = record.doc().clone();
            return true;
        }
        return false;
    }
    if rng.below(3) != 0 {
        return false;
    }
    let user = rep.editor.user.to_string();
    let heads = rep.doc.get_heads();
    match which {
        0 => craft_answer(&mut rep.doc, "visit_focus", Some(&text)),
        1 => craft_answer(&mut rep.doc, "visit_focus", None),
        2 => craft_step(&mut rep.doc, "submitted", "submit", &user, None),
        3 => craft_step(&mut rep.doc, "returned", "return", &user, Some("请补充")),
        4 => craft_step(&mut rep.doc, "returned", "return", &user, None),
        5 => craft_step(&mut rep.doc, "approved", "approve", &user, None),
        _ => return false,
    }
    for m in rep.doc.get_changes_meta(&heads) {
        rep.crafted.insert(m.hash);
    }
    true
}

/// Whether some change of `doc` stands beside an approval of `doc` that did not see it, with
/// one of the two among `new`.
fn beside_an_approval(doc: &Automerge, new: &HashSet<ChangeHash>) -> bool {
    let approvals: Vec<ChangeHash> = doc
        .get_all(ROOT, "status")
        .expect("status")
        .into_iter()
        .filter(|(v, _)| v.as_str() == Some("approved"))
        .filter_map(|(_, op)| doc.hash_for_opid(&op))
        .collect();
    approvals.iter().any(|a| {
        let not_seen: HashSet<ChangeHash> = doc.get_changes_meta(&[*a]).iter().map(|m| m.hash).collect();
        not_seen.iter().any(|c| {
            let after = !doc.get_changes_meta(&[*c]).iter().any(|m| m.hash == *a);
            !after && (new.contains(c) || new.contains(a))
        })
    })
}

#[test]
fn the_relay_accepts_exactly_what_the_core_allows_at_each_changes_own_state() {
    let cases: u64 = std::env::var("SHIDAO_RULE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let (mut accepted, mut refused, mut sealed) = (0, 0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    let mut finals = std::collections::BTreeMap::new();
    for case in 0..cases {
        let mut rng = Rng::new(0x5eed + case);
        let people = [editor("ins-a", Role::Inspector), editor("ins-b", Role::Inspector), editor("sup", Role::Supervisor), editor("adm", Role::Admin)];
        let t = builtin("inspection-visit").expect("template");
        let new = NewRecord { id: RecordId::random(), school: SchoolId::new("s1").expect("school") };
        let mut first = Record::create(t, new, people[0].clone(), Clock::fixed(1_790_000_000)).expect("create");
        fill_completely(&mut first, 1, &mut Rng::new(case)).expect("fill");
        let mut central = Automerge::new();
        let mut created = first.doc().clone();
        central.merge(&mut created).expect("merge");
        judge_push(&central, &[], Pusher { user: "ins-a", role: Role::Inspector }, templates).expect("the creation is accepted");
        let mut replicas: Vec<Replica> = people
            .iter()
            .map(|e| {
                let mut doc = central.fork();
                doc.set_author(Some(e.author()));
                Replica { editor: e.clone(), doc, crafted: HashSet::new() }
            })
            .collect();
        for _ in 0..40 {
            let who = rng.below(replicas.len());
            match [0, 0, 1, 1, 2, 2][rng.below(6)] {
                0 => {
                    act(&mut replicas[who], &mut rng);
                }
                1 => {
                    // Pull: the replica merges the relay's copy.
                    let mut theirs = central.clone();
                    replicas[who].doc.merge(&mut theirs).expect("pull");
                }
                _ => {
                    let rep = &mut replicas[who];
                    let before = central.get_heads();
                    let mut merged = central.clone();
                    let mut mine = rep.doc.clone();
                    merged.merge(&mut mine).expect("merge");
                    let new: HashSet<ChangeHash> = merged.get_changes_meta(&before).iter().map(|m| m.hash).collect();
                    if new.is_empty() {
                        continue;
                    }
                    let pusher = Pusher { user: rep.editor.user.as_str(), role: rep.editor.role };
                    let verdict = judge_push(&merged, &before, pusher, templates);
                    let crafted = new.iter().any(|h| rep.crafted.contains(h));
                    let beside = beside_an_approval(&merged, &new);
                    let expect_ok = !crafted && !beside;
                    assert_eq!(
                        verdict.is_ok(),
                        expect_ok,
                        "case {case}: {} pushed {} change(s) (crafted: {crafted}, beside an approval: {beside}): {verdict:?}",
                        rep.editor.user,
                        new.len()
                    );
                    if let Err(r) = &verdict {
                        *statuses.entry(r.code).or_insert(0) += 1;
                    }
                    match verdict {
                        Ok(()) => {
                            central = merged;
                            accepted += 1;
                        }
                        Err(r) => {
                            refused += 1;
                            sealed += usize::from(r.code == "sealed" || r.code == "stale_approval");
                            // What a device does after a refusal: back to the relay's state.
                            let mut doc = central.fork();
                            doc.set_author(Some(rep.editor.author()));
                            rep.doc = doc;
                        }
                    }
                }
            }
        }
        let last = Record::from_doc(central.clone(), templates, people[0].clone(), Clock::fixed(0)).expect("record").status();
        *finals.entry(last.as_str()).or_insert(0) += 1;
    }
    println!("refusals: {statuses:?}; final: {finals:?}");
    println!("rule property: {cases} sequences, {accepted} pushes accepted, {refused} refused ({sealed} by the seal)");
    assert!(accepted > 0 && refused > 0 && sealed > 0, "every outcome must occur: {accepted} accepted, {refused} refused, {sealed} by the seal");
}

