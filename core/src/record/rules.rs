//! The rule book: who may do what to a record in which state, written once.
//!
//! [`RULES`] is the table: for each action, the statuses it may be taken in, who may take it
//! (the roles that fill the template, the reviewing roles, or both) and what it requires. The
//! record's edit methods ([`super::Record::submit`], `set_answer`, …) ask [`permit`] before they
//! touch the document, and the relay asks [`judge_push`] about every change a device pushes,
//! judged against the document **as that change saw it** (the state at the change's own
//! dependencies). Nothing else encodes these rules; the record's key names stay in this crate.
//!
//! What must stay true:
//! - One table: adding or changing a rule is an edit of [`RULES`] (and of `docs/protocol.md`,
//!   which lists it), never of a caller.
//! - A change is judged at its own state: an approve made on a draft is refused even if the
//!   record has since been submitted elsewhere; an edit legal where it was made is accepted even
//!   if the status has since moved, except that nothing the approval did not see may join an
//!   approved record (see [`judge_push`]).
//! - Every refusal carries one of the codes devices understand (listed in `docs/protocol.md`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use automerge::{Automerge, ChangeHash, ObjId, PatchAction, Prop, ReadDoc, Value, ROOT};

use super::{get_str, keys, Clock, Editor, Record, RecordError, Status};
use crate::template::{FieldKind, Role, Template};

/// Something a person does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Make a new record of a template.
    Create,
    /// Set, clear or edit answers (and add, move or remove rows).
    Fill,
    /// Keep one of a field's concurrent values (or clear it) while the field is in conflict.
    ResolveConflict,
    /// Put a signature into a signature field.
    Sign,
    /// Hand the record in for review.
    Submit,
    /// Send a submitted record back to its authors.
    Return,
    /// Approve a submitted record, sealing it.
    Approve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Fill => "edit",
            Action::ResolveConflict => "resolve a conflict in",
            Action::Sign => "sign",
            Action::Submit => "submit",
            Action::Return => "return",
            Action::Approve => "approve",
        }
    }
    /// The review step a status-moving action writes (`review[].action`).
    pub fn review_step(self) -> Option<&'static str> {
        match self {
            Action::Submit => Some("submit"),
            Action::Return => Some("return"),
            Action::Approve => Some("approve"),
            _ => None,
        }
    }
}

/// Who may take an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The roles the template is filled by (`filled_by`).
    Fillers,
    /// Supervisors and admins.
    Reviewers,
    /// Either.
    Both,
    /// Every role whose scope holds the record (a visit team's expert adds to an inspector's
    /// visit record while it is open).
    Anyone,
}

impl Who {
    fn includes(self, template: &Template, role: Role) -> bool {
        let fills = template.def.filled_by.contains(&role);
        match self {
            Who::Fillers => fills,
            Who::Reviewers => role.reviews(),
            Who::Both => fills || role.reviews(),
            Who::Anyone => true,
        }
    }
}

/// What an allowed action also needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    Nothing,
    /// The new record names its pusher as creator, and starts as a draft with no review step.
    OwnCreation,
    /// Validation of the record as it stands finds no blocking problem.
    CleanValidation,
    /// A comment saying what to correct (not blank).
    Comment,
    /// The signature is the signer's own (`user` is the person signing).
    OwnSignature,
    /// The field holds more than one concurrent value.
    FieldInConflict,
}

/// One line of the rule book.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub action: Action,
    /// The statuses the action may be taken in; `None` stands for a record not yet made.
    pub from: &'static [Option<Status>],
    pub who: Who,
    pub requires: Requires,
    /// The status the action moves the record to, if it moves it.
    pub to: Option<Status>,
}

const OPEN: &[Option<Status>] = &[Some(Status::Draft), Some(Status::Returned)];
const IN_WORK: &[Option<Status>] = &[Some(Status::Draft), Some(Status::Returned), Some(Status::Submitted)];

/// The rule book. An approved record is sealed: no line admits `Approved`.
pub const RULES: &[Rule] = &[
    Rule { action: Action::Create, from: &[None], who: Who::Fillers, requires: Requires::OwnCreation, to: Some(Status::Draft) },
    Rule { action: Action::Fill, from: OPEN, who: Who::Anyone, requires: Requires::Nothing, to: None },
    Rule { action: Action::Sign, from: OPEN, who: Who::Anyone, requires: Requires::OwnSignature, to: None },
    Rule { action: Action::ResolveConflict, from: OPEN, who: Who::Anyone, requires: Requires::FieldInConflict, to: None },
    Rule { action: Action::ResolveConflict, from: IN_WORK, who: Who::Reviewers, requires: Requires::FieldInConflict, to: None },
    Rule { action: Action::Submit, from: OPEN, who: Who::Fillers, requires: Requires::CleanValidation, to: Some(Status::Submitted) },
    Rule { action: Action::Return, from: &[Some(Status::Submitted)], who: Who::Reviewers, requires: Requires::Comment, to: Some(Status::Returned) },
    Rule { action: Action::Approve, from: &[Some(Status::Submitted)], who: Who::Reviewers, requires: Requires::Nothing, to: Some(Status::Approved) },
];

/// The rule that lets `role` take `action` on a record of `template` in `status` (`None`: not
/// made yet), or why not: [`RecordError::Sealed`] on an approved record, else
/// [`RecordError::NotAllowed`]. The caller then checks the rule's [`Requires`].
pub fn permit(action: Action, status: Option<Status>, template: &Template, role: Role, record: &super::RecordId) -> Result<&'static Rule, RecordError> {
    if status == Some(Status::Approved) {
        return Err(RecordError::Sealed(record.clone()));
    }
    RULES
        .iter()
        .find(|r| r.action == action && r.from.contains(&status) && r.who.includes(template, role))
        .ok_or(RecordError::NotAllowed {
            role: role.as_str(),
            action: action.as_str(),
            status: status.map_or("new", Status::as_str),
        })
}

/// Why the relay refuses a pushed record: a code devices understand and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub reason: String,
}

fn refused(code: &'static str, reason: impl Into<String>) -> Refused {
    Refused { code, reason: reason.into() }
}

/// Rule codes: the refusals [`judge_push`] gives. A device sets the refused changes aside on
/// these (see `docs/protocol.md`); other codes (scope, identity, bytes) are not about the rules.
pub const RULE_CODES: &[&str] = &[
    "sealed",
    "stale_approval",
    "status_not_allowed",
    "not_allowed",
    "not_ready",
    "comment_required",
    "structure",
    "meta_changed",
    "review_rewritten",
    "signature_rewritten",
    "foreign_signature",
];

/// Who pushes: the user and role the relay authenticated (not what the document claims).
#[derive(Debug, Clone, Copy)]
pub struct Pusher<'a> {
    pub user: &'a str,
    pub role: Role,
}

/// Judges every change of `doc` that is not in the history of `before` (the relay's heads before
/// the push), each against the document at its own dependencies, with the rule book.
///
/// `doc` holds the relay's copy with the pushed changes applied and no missing dependencies;
/// `templates` resolves the record's template. Beyond the per-change rules, an approval seals
/// exactly what it saw: a change concurrent with an approval (the approval did not depend on it,
/// it did not depend on the approval) is refused `sealed` when it is the one pushed, and an
/// approval pushed after the relay took a change it did not see is refused `stale_approval`.
pub fn judge_push(
    doc: &Automerge,
    before: &[ChangeHash],
    pusher: Pusher<'_>,
    templates: impl Fn(&str, u32) -> Option<Arc<Template>>,
) -> Result<(), Refused> {
    let new: Vec<_> = doc.get_changes_meta(before);
    if new.is_empty() {
        return Ok(());
    }
    let reader = Editor {
        user: crate::UserId::new(pusher.user).map_err(|e| refused("not_a_record", e.to_string()))?,
        device: crate::DeviceId::new("judge").map_err(|e| refused("not_a_record", e.to_string()))?,
        role: pusher.role,
    };
    let (template, id) = frame(doc, &templates)?;
    let new_hashes: HashSet<ChangeHash> = new.iter().map(|m| m.hash).collect();
    let plain = plain_changes(doc, &new);
    let mut creations = 0usize;
    let mut i = 0;
    while i < new.len() {
        let m = &new[i];
        if m.deps.is_empty() {
            creations += 1;
            if !before.is_empty() || creations > 1 {
                return Err(refused("structure", "a change starts the record anew"));
            }
            judge_creation(doc, m.hash, pusher, &template)?;
            i += 1;
            continue;
        }
        // A run of plain changes, each on the one before, made where the pusher may fill: one
        // act (the same status throughout, nothing but answers touched), judged by one diff.
        let mut end = i;
        if plain.contains(&m.hash)
            && permit(Action::Fill, Some(status_at(doc, &m.deps)), &template, pusher.role, &id).is_ok()
        {
            while end + 1 < new.len() && plain.contains(&new[end + 1].hash) && new[end + 1].deps == [new[end].hash] {
                end += 1;
            }
        }
        let hashes: HashSet<ChangeHash> = new[i..=end].iter().map(|m| m.hash).collect();
        let change = Change { doc, head: new[end].hash, hashes, deps: &m.deps, time: new[end].timestamp };
        change.judge(pusher, &template, &id, &templates, &reader)?;
        i = end + 1;
    }
    judge_seal(doc, &new_hashes)
}

/// The new changes that touch neither the record's top, nor its identity, nor its review steps:
/// what they did is inside the answers and the bookkeeping maps. Asked of those three small
/// objects alone, over a run of changes at once (Automerge reports a rewrite even of the same
/// value): a run of changes each on the one before is split in halves only where something was
/// touched, so a push of answers costs one question, and one with a submit a few.
fn plain_changes(doc: &Automerge, new: &[automerge::ChangeMetadata<'_>]) -> HashSet<ChangeHash> {
    let object = |key: &str| match doc.get(ROOT, key) {
        Ok(Some((Value::Object(_), o))) => Some(o),
        _ => None,
    };
    let (meta, review) = (object(keys::META), object(keys::REVIEW));
    let untouched = |obj: &ObjId, deps: &[ChangeHash], hash: ChangeHash, recursive: bool| {
        doc.diff_obj(obj, deps, &[hash], recursive).is_ok_and(|p| p.is_empty())
    };
    let plain = |lo: usize, hi: usize| {
        let (deps, hash) = (&new[lo].deps, new[hi].hash);
        untouched(&ROOT, deps, hash, false)
            && meta.as_ref().is_some_and(|o| untouched(o, deps, hash, true))
            && review.as_ref().is_some_and(|o| untouched(o, deps, hash, true))
    };
    let mut out = HashSet::new();
    let mut i = 0;
    while i < new.len() {
        if new[i].deps.is_empty() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < new.len() && new[j + 1].deps == [new[j].hash] {
            j += 1;
        }
        let mut stack = vec![(i, j)];
        while let Some((lo, hi)) = stack.pop() {
            if plain(lo, hi) {
                out.extend(new[lo..=hi].iter().map(|m| m.hash));
            } else if lo < hi {
                let mid = lo + (hi - lo) / 2;
                stack.push((lo, mid));
                stack.push((mid + 1, hi));
            }
        }
        i = j + 1;
    }
    out
}

/// The record's template and id, read from its identity.
fn frame(doc: &Automerge, templates: &impl Fn(&str, u32) -> Option<Arc<Template>>) -> Result<(Arc<Template>, super::RecordId), Refused> {
    let meta = super::obj(doc, &ROOT, keys::META).map_err(|e| refused("not_a_record", e.to_string()))?;
    let id = get_str(doc, &meta, "id").and_then(|s| super::RecordId::new(s).ok());
    let tid = get_str(doc, &meta, "template");
    let version = super::get_int(doc, &meta, "version").and_then(|v| u32::try_from(v).ok());
    match (id, tid, version) {
        (Some(id), Some(tid), Some(version)) => match templates(&tid, version) {
            Some(t) => Ok((t, id)),
            None => Err(refused("unknown_template", format!("template {tid} v{version} is not known"))),
        },
        _ => Err(refused("not_a_record", "the record's identity is incomplete")),
    }
}

/// The first change of a record: made by a role that fills the template, naming the pusher as
/// creator, a draft with no review step.
fn judge_creation(doc: &Automerge, hash: ChangeHash, pusher: Pusher<'_>, template: &Template) -> Result<(), Refused> {
    let at = [hash];
    let meta = match doc.get_at(ROOT, keys::META, &at) {
        Ok(Some((Value::Object(_), m))) => m,
        _ => return Err(refused("not_a_record", "the first change makes no record")),
    };
    let id = get_str_at(doc, &meta, "id", &at).and_then(|s| super::RecordId::new(s).ok());
    let id = id.ok_or_else(|| refused("not_a_record", "the first change gives the record no id"))?;
    let rule = permit(Action::Create, None, template, pusher.role, &id).map_err(|_| {
        refused("not_allowed", format!("a {} may not create a {} record", pusher.role.as_str(), template.id()))
    })?;
    debug_assert_eq!(rule.requires, Requires::OwnCreation);
    if get_str_at(doc, &meta, "created_by", &at).as_deref() != Some(pusher.user) {
        return Err(refused("foreign_author", "a new record must be created by the pushing user"));
    }
    if get_str_at(doc, &ROOT, keys::STATUS, &at).as_deref() != Some(Status::Draft.as_str()) {
        return Err(refused("status_not_allowed", "a new record starts as a draft"));
    }
    if let Ok(Some((Value::Object(_), review))) = doc.get_at(ROOT, keys::REVIEW, &at) {
        if doc.length_at(&review, &at) > 0 {
            return Err(refused("status_not_allowed", "a new record has no review step yet"));
        }
    }
    Ok(())
}

fn get_str_at(doc: &Automerge, obj: &ObjId, key: &str, heads: &[ChangeHash]) -> Option<String> {
    match doc.get_at(obj, key, heads).ok()?? {
        (Value::Scalar(s), _) => s.as_str().map(str::to_string),
        _ => None,
    }
}

/// The status of the record at some heads, as [`Record::status`] reads it.
fn status_at(doc: &Automerge, heads: &[ChangeHash]) -> Status {
    get_str_at(doc, &ROOT, keys::STATUS, heads).and_then(|s| Status::parse(&s)).unwrap_or(Status::Draft)
}

/// One pushed change (or a run of plain ones, see [`judge_push`]) and the state it was made on.
struct Change<'a> {
    doc: &'a Automerge,
    /// The (last) change.
    head: ChangeHash,
    /// Every change of the run.
    hashes: HashSet<ChangeHash>,
    /// The dependencies of the (first) change: the state it was made on.
    deps: &'a [ChangeHash],
    time: i64,
}

/// What one change did to an answer container.
#[derive(Default)]
struct Acts {
    /// The status value it wrote (raw), if it wrote one.
    status: Option<Option<String>>,
    /// Review steps it appended.
    steps: Vec<ObjId>,
    /// Answers it wrote: (container, field id, is the field in conflict where it wrote it).
    fills: Vec<(String, bool)>,
    /// Signatures it put: (field id, signature object).
    signs: Vec<(String, ObjId)>,
    /// Writes to the record's bookkeeping maps (`files`, `touched`).
    aux: bool,
}

impl Change<'_> {
    fn made_here(&self, obj: &ObjId) -> bool {
        self.doc.hash_for_opid(obj).is_some_and(|h| self.hashes.contains(&h))
    }

    fn judge(
        &self,
        pusher: Pusher<'_>,
        template: &Template,
        id: &super::RecordId,
        templates: &impl Fn(&str, u32) -> Option<Arc<Template>>,
        reader: &Editor,
    ) -> Result<(), Refused> {
        let status = status_at(self.doc, self.deps);
        let acts = self.acts(template)?;
        let denied = |e: RecordError, code: &'static str| match e {
            RecordError::Sealed(_) => refused("sealed", format!("record {id} was approved and sealed when this change was made")),
            other => refused(code, other.to_string()),
        };
        if status == Status::Approved {
            return Err(denied(RecordError::Sealed(id.clone()), "sealed"));
        }

        // Review steps: each names the pusher, and goes with the status move of its action.
        let mut step_actions = Vec::new();
        for step in &acts.steps {
            let at = [self.head];
            let user = get_str_at(self.doc, step, "user", &at);
            if user.as_deref() != Some(pusher.user) {
                return Err(refused("foreign_author", "a review step names someone other than the pushing user"));
            }
            step_actions.push((get_str_at(self.doc, step, "action", &at).unwrap_or_default(), get_str_at(self.doc, step, "comment", &at)));
        }
        match &acts.status {
            Some(value) => {
                let target = value.as_deref().and_then(Status::parse);
                let rule = RULES.iter().find(|r| r.to.is_some() && r.to == target && r.action != Action::Create);
                let Some(rule) = rule else {
                    return Err(refused("status_not_allowed", format!("a change sets the status to {value:?}")));
                };
                permit(rule.action, Some(status), template, pusher.role, id).map_err(|e| match e {
                    RecordError::Sealed(_) => denied(e, "sealed"),
                    _ => refused(
                        "status_not_allowed",
                        format!("a {} may not {} a record that is {}", pusher.role.as_str(), rule.action.as_str(), status.as_str()),
                    ),
                })?;
                let expected = rule.action.review_step();
                if step_actions.len() != 1 || Some(step_actions[0].0.as_str()) != expected {
                    return Err(refused(
                        "status_not_allowed",
                        format!("a change that moves the status to {} must write exactly one `{}` review step", status_label(target), expected.unwrap_or("?")),
                    ));
                }
                match rule.requires {
                    Requires::Comment => {
                        if step_actions[0].1.as_deref().is_none_or(|c| c.trim().is_empty()) {
                            return Err(refused("comment_required", RecordError::CommentRequired.to_string()));
                        }
                    }
                    Requires::CleanValidation => self.validates(templates, reader)?,
                    _ => {}
                }
            }
            None => {
                if let Some((action, _)) = step_actions.first() {
                    return Err(refused("status_not_allowed", format!("a review step `{action}` that moves no status")));
                }
            }
        }

        // Answers, signatures and the bookkeeping that goes with them.
        for (field, in_conflict) in &acts.fills {
            let result = permit(Action::Fill, Some(status), template, pusher.role, id).or_else(|e| {
                if *in_conflict { permit(Action::ResolveConflict, Some(status), template, pusher.role, id) } else { Err(e) }
            });
            result.map_err(|e| match e {
                RecordError::Sealed(_) => denied(e, "sealed"),
                _ => refused(
                    "not_allowed",
                    format!("a {} may not edit `{field}` of a record that is {}", pusher.role.as_str(), status.as_str()),
                ),
            })?;
        }
        for (field, sig) in &acts.signs {
            permit(Action::Sign, Some(status), template, pusher.role, id).map_err(|e| denied(e, "not_allowed"))?;
            let user = get_str_at(self.doc, sig, "user", &[self.head]);
            if user.as_deref() != Some(pusher.user) {
                return Err(refused("foreign_signature", format!("signature `{field}` is signed as {user:?}, not as {}", pusher.user)));
            }
        }
        if acts.aux && acts.fills.is_empty() && acts.signs.is_empty() {
            permit(Action::Fill, Some(status), template, pusher.role, id)
                .or_else(|_| permit(Action::ResolveConflict, Some(status), template, pusher.role, id))
                .map_err(|e| denied(e, "not_allowed"))?;
        }
        Ok(())
    }

    /// A submit: the record as its maker saw it passes validation, on the maker's own date (so a
    /// tablet whose clock is off is judged as it judged itself).
    fn validates(&self, templates: &impl Fn(&str, u32) -> Option<Arc<Template>>, reader: &Editor) -> Result<(), Refused> {
        let seen = self.doc.fork_at(self.deps).map_err(|e| refused("corrupt", e.to_string()))?;
        let seen = Record::from_doc(seen, templates, reader.clone(), Clock::fixed(self.time))
            .map_err(|e| refused("not_a_record", e.to_string()))?;
        let report = seen.validate();
        if let Some(first) = report.blocking().next() {
            return Err(refused(
                "not_ready",
                format!("submitted with {} problem(s), first: `{}` {}", report.blocking().count(), first.field, first.message.zh),
            ));
        }
        Ok(())
    }

    /// Reads what the change did from the patches between its dependencies and itself.
    fn acts(&self, template: &Template) -> Result<Acts, Refused> {
        let mut acts = Acts::default();
        let signature = |id: &str| template.field(id).is_some_and(|f| f.kind() == FieldKind::Signature);
        for patch in self.doc.diff(self.deps, &[self.head]) {
            if patch.obj == ROOT {
                match &patch.action {
                    PatchAction::PutMap { key, value, .. } if key == keys::STATUS => {
                        let v = match &value.0 {
                            Value::Scalar(s) => s.as_str().map(str::to_string),
                            Value::Object(_) => None,
                        };
                        acts.status = Some(v);
                    }
                    PatchAction::Conflict { prop: Prop::Map(key) } if key == keys::STATUS => {}
                    PatchAction::DeleteMap { key } if key == keys::STATUS => {
                        return Err(refused("status_not_allowed", "a change removes the record's status"));
                    }
                    _ => return Err(refused("structure", "a change rewrites or removes a part of the record's frame")),
                }
                continue;
            }
            // The root key the patched object hangs from, and the chain of (object, key, child).
            let Some((_, Prop::Map(top))) = patch.path.first() else {
                return Err(refused("structure", "a change writes outside the record's parts"));
            };
            let children: Vec<&ObjId> = patch.path.iter().skip(1).map(|(o, _)| o).chain(std::iter::once(&patch.obj)).collect();
            match top.as_str() {
                keys::META => return Err(refused("meta_changed", "a change rewrites or removes part of the record's identity")),
                keys::REVIEW => {
                    let review = children[0];
                    if patch.obj == *review {
                        match &patch.action {
                            PatchAction::Insert { values, .. } => {
                                for (v, obj, _) in values.iter() {
                                    if !matches!(v, Value::Object(_)) || !self.made_here(obj) {
                                        return Err(refused("review_rewritten", "a review step must be a new entry"));
                                    }
                                    acts.steps.push(obj.clone());
                                }
                            }
                            _ => return Err(refused("review_rewritten", "a change rewrites or removes a review step")),
                        }
                    } else if !children.get(1).is_some_and(|e| self.made_here(e)) {
                        return Err(refused("review_rewritten", "a change rewrites a review step already written"));
                    }
                }
                keys::ANSWERS => self.answer_patch(&patch, &children, &signature, &mut acts)?,
                keys::FILES | keys::TOUCHED => acts.aux = true,
                _ => return Err(refused("structure", "a change writes outside the record's parts")),
            }
        }
        Ok(acts)
    }

    fn answer_patch(
        &self,
        patch: &automerge::Patch,
        children: &[&ObjId],
        signature: &impl Fn(&str) -> bool,
        acts: &mut Acts,
    ) -> Result<(), Refused> {
        // Keys from `answers` down to the patched object, then the patch's own key.
        let mut keys_down: Vec<String> =
            patch.path.iter().skip(1).filter_map(|(_, p)| if let Prop::Map(k) = p { Some(k.clone()) } else { None }).collect();
        let own = match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            PatchAction::Increment { prop: Prop::Map(k), .. } | PatchAction::Conflict { prop: Prop::Map(k) } => Some(k.clone()),
            _ => None,
        };
        // Inside an existing signature object: a rewrite of what was signed.
        for (i, (_, prop)) in patch.path.iter().enumerate().skip(1) {
            if let Prop::Map(k) = prop {
                if signature(k) && !children.get(i).is_some_and(|c| self.made_here(c)) {
                    return Err(refused("signature_rewritten", format!("a change alters signature `{k}` after it was signed")));
                }
            }
        }
        if matches!(patch.action, PatchAction::Conflict { .. }) {
            return Ok(());
        }
        // The field: the first key under `answers`, or the sub-field inside a row.
        keys_down.extend(own.clone());
        let field = match keys_down.as_slice() {
            [_group, rows, _row, sub, ..] if rows.as_str() == keys::ROWS => sub.clone(),
            [first, ..] => first.clone(),
            [] => return Err(refused("structure", "a change rewrites the answers")),
        };
        // A put straight into the answer's container: a new value, possibly a signature or the
        // pick of one of several concurrent values.
        let container = patch.obj.clone();
        let direct = own.as_deref() == Some(field.as_str()) && patch.path.len() == keys_down.len();
        if let (true, PatchAction::PutMap { value: (Value::Object(_), obj), .. }) = (direct, &patch.action) {
            if signature(&field) {
                acts.signs.push((field, obj.clone()));
                return Ok(());
            }
        }
        let in_conflict = direct
            && matches!(patch.action, PatchAction::PutMap { .. })
            && self.doc.get_all_at(&container, field.as_str(), self.deps).map_err(|e| refused("corrupt", e.to_string()))?.len() > 1;
        acts.fills.push((field, in_conflict));
        Ok(())
    }
}

fn status_label(s: Option<Status>) -> &'static str {
    s.map_or("?", Status::as_str)
}

/// An approval seals what it saw: no change concurrent with it may stand beside it.
fn judge_seal(doc: &Automerge, new: &HashSet<ChangeHash>) -> Result<(), Refused> {
    let approvals: Vec<ChangeHash> = doc
        .get_all(ROOT, keys::STATUS)
        // A status that cannot be read could hide an approval: refused, never passed.
        .map_err(|e| refused("corrupt", e.to_string()))?
        .into_iter()
        .filter(|(v, _)| v.as_str() == Some(Status::Approved.as_str()))
        .filter_map(|(_, op)| doc.hash_for_opid(&op))
        .collect();
    if approvals.is_empty() {
        return Ok(());
    }
    let all = doc.get_changes_meta(&[]);
    let deps: HashMap<ChangeHash, Vec<ChangeHash>> = all.iter().map(|m| (m.hash, m.deps.clone())).collect();
    for approval in approvals {
        let mut seen: HashSet<ChangeHash> = HashSet::new();
        let mut stack = vec![approval];
        while let Some(h) = stack.pop() {
            if seen.insert(h) {
                stack.extend(deps.get(&h).into_iter().flatten().copied());
            }
        }
        // Changes after the approval were judged at an approved state already; the rest of the
        // changes outside its history are concurrent with it.
        let unseen: Vec<ChangeHash> = all.iter().map(|m| m.hash).filter(|h| !seen.contains(h)).collect();
        if unseen.is_empty() {
            continue;
        }
        if new.contains(&approval) && unseen.iter().all(|h| !new.contains(h)) {
            return Err(refused(
                "stale_approval",
                "the record changed at the relay after this approval was made; review it again",
            ));
        }
        return Err(refused("sealed", "this change was made beside an approval that did not see it; the approval seals the record as approved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::builtin;

    #[test]
    fn no_rule_admits_an_approved_record_and_every_action_has_a_rule() {
        for r in RULES {
            assert!(!r.from.contains(&Some(Status::Approved)), "{:?} admits an approved record", r.action);
        }
        for a in [Action::Create, Action::Fill, Action::ResolveConflict, Action::Sign, Action::Submit, Action::Return, Action::Approve] {
            assert!(RULES.iter().any(|r| r.action == a), "{a:?} has no rule");
        }
    }

    #[test]
    fn permit_follows_the_table() {
        let t = builtin("inspection-visit").expect("template");
        let id = crate::RecordId::random();
        assert!(permit(Action::Submit, Some(Status::Draft), &t, Role::Inspector, &id).is_ok());
        assert!(matches!(permit(Action::Submit, Some(Status::Draft), &t, Role::Supervisor, &id), Err(RecordError::NotAllowed { .. })));
        assert!(matches!(permit(Action::Approve, Some(Status::Draft), &t, Role::Supervisor, &id), Err(RecordError::NotAllowed { .. })));
        assert!(permit(Action::Approve, Some(Status::Submitted), &t, Role::Supervisor, &id).is_ok());
        assert!(matches!(permit(Action::Fill, Some(Status::Submitted), &t, Role::Inspector, &id), Err(RecordError::NotAllowed { .. })));
        assert!(matches!(permit(Action::Fill, Some(Status::Approved), &t, Role::Admin, &id), Err(RecordError::Sealed(_))));
        assert_eq!(permit(Action::Return, Some(Status::Submitted), &t, Role::Admin, &id).map(|r| r.requires).ok(), Some(Requires::Comment));
    }
}
