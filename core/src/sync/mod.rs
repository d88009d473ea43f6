//! Sync between a device store and the server.
//!
//! [`protocol`] holds the messages. [`SyncClient`] is the device side as a state machine with no
//! network: [`SyncClient::prepare`] turns the store's unacknowledged changes into a request, and
//! [`SyncClient::absorb`] applies a response (acknowledgements, refusals, pulled changes,
//! reference data) to the store. The HTTP driver ([`http`], feature `http`) only moves bytes
//! between the two, with retries, progress and cancellation.
//!
//! What must stay true: a record is marked acknowledged only for heads the server said it stored;
//! a record refused by the rule book has its refused changes set aside (kept whole, listed by
//! [`crate::store::Store::set_asides`]) and is put back to the relay's state with the answers the
//! rules still allow written again, so a refusal never traps it; a record refused for any other
//! reason keeps every local edit (and is not pushed again until it changes); a cut
//! connection at any byte leaves the store as if the round never happened, so the next sync
//! repeats it (pushes are idempotent on the server, pulls restart from the saved cursor).

pub mod enrol_payload;
pub mod enrolment;
pub mod protocol;

#[cfg(feature = "http")]
pub mod http;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::ids::RecordId;
use crate::record::{Editor, RecordError};
use crate::record::rules::RULE_CODES;
use crate::store::{SetAside, Store, StoreError};
use protocol::{Outcome, Push, Reference, SyncRequest, SyncResponse, PROTOCOL};

const CURSOR: &str = "sync.cursor";
const SCOPE: &str = "sync.scope";
const REFERENCE: &str = "sync.reference";
const REFUSED: &str = "sync.refused.";

/// Why a sync round could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server answered with protocol {0}, this app speaks {PROTOCOL}")]
    Protocol(u32),
    /// A delivered form definition did not match its hash or did not load; nothing of the round
    /// was stored.
    #[error("form definition {hash} from the server was refused: {reason}")]
    Form { hash: String, reason: String },
    /// The request could not be encoded for the wire; nothing was sent.
    #[error("the sync request could not be encoded: {0}")]
    Encode(String),
    /// The store holds no enrolment: enrol with a one-time code first.
    #[error("this store is not enrolled with a server: enrol with a one-time code first")]
    NotEnrolled,
    /// The enrolment kept in the store, or the one a server gave, cannot be used.
    #[error("the enrolment cannot be used ({0}): enrol again")]
    Enrolment(String),
}

/// A refusal the server gave for a record, kept until the record changes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub record: String,
    pub code: String,
    pub reason: String,
    /// The heads that were refused; a later edit makes the record eligible again.
    pub heads: Vec<String>,
}

/// A request ready to send, with what it pushed (to acknowledge on success).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub request: SyncRequest,
    pushed: Vec<(RecordId, Vec<ChangeHash>)>,
    /// The set-aside entries this request reports.
    reported: Vec<i64>,
    /// More unacknowledged records wait beyond this request's size limit.
    pub more_to_push: bool,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub accepted: usize,
    pub refused: Vec<Refusal>,
    /// Refused changes set aside this round (one entry per refused record the rules refused).
    pub set_aside: Vec<SetAside>,
    /// The records this round pulled and merged, in the order the server sent them (a record
    /// this app cannot open yet is in `unreadable` instead).
    pub pulled: Vec<RecordId>,
    /// Pulled records this app cannot open (a newer template version), with the reason.
    pub unreadable: Vec<String>,
    /// Records whose pulled changes could not be applied (history missing): the next round
    /// pulls everything again.
    pub reset: bool,
    /// Another round is needed (more to push or to pull).
    pub more: bool,
    /// Form definitions stored this round, or the programme's list of current forms changed:
    /// the app should redraw its list of forms.
    pub forms_changed: bool,
}

/// The device side of the protocol.
#[derive(Debug, Clone)]
pub struct SyncClient {
    /// Stop adding records to a request beyond this many bytes of changes.
    pub max_push_bytes: usize,
    /// Ask the server for at most this many bytes of pulled changes per response.
    pub max_pull_bytes: u64,
    /// The app and its version, sent with every request (admins see it beside the device).
    pub app: String,
}

impl Default for SyncClient {
    fn default() -> Self {
        SyncClient {
            max_push_bytes: 2 * 1024 * 1024,
            max_pull_bytes: protocol::DEFAULT_PULL_BYTES,
            app: format!("shidao-core/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The version of each form new records use: the highest version the programme has not retired.
fn current_forms(reference: &Reference) -> Vec<(String, u32)> {
    let mut current: Vec<(String, u32)> = Vec::new();
    for t in reference.templates.iter().filter(|t| !t.retired) {
        match current.iter_mut().find(|(id, _)| *id == t.id) {
            Some((_, v)) => *v = (*v).max(t.version),
            None => current.push((t.id.clone(), t.version)),
        }
    }
    current
}

/// What the store keeps as JSON (a refusal, the reference data): a value that does not serialise
/// is an error, never an empty entry.
fn json<T: serde::Serialize>(value: &T) -> Result<String, SyncError> {
    serde_json::to_string(value).map_err(|e| SyncError::Encode(e.to_string()))
}

fn hex_heads(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(|h| h.to_string()).collect()
}

impl SyncClient {
    /// The pull cursor saved in the store.
    pub fn cursor(store: &Store) -> Result<u64, SyncError> {
        Ok(store.meta(CURSOR)?.and_then(|c| c.parse().ok()).unwrap_or(0))
    }

    /// The reference data of the last sync (who the user is, their schools, tasks, templates).
    pub fn reference(store: &Store) -> Result<Option<Reference>, SyncError> {
        Ok(store.meta(REFERENCE)?.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// The forms the last reference data lists whose definitions this store lacks.
    pub fn missing_forms(store: &Store) -> Result<Vec<String>, SyncError> {
        let Some(reference) = Self::reference(store)? else { return Ok(Vec::new()) };
        let held = store.form_hashes();
        let mut missing: Vec<String> = Vec::new();
        for t in &reference.templates {
            if store.template(&t.id, Some(t.version)).is_some() {
                continue;
            }
            if let Some(hash) = &t.hash {
                if !held.contains(hash) && !missing.contains(hash) {
                    missing.push(hash.clone());
                }
            }
        }
        Ok(missing)
    }

    /// Refusals still standing (the record has not changed since).
    pub fn refusals(store: &Store) -> Result<Vec<Refusal>, SyncError> {
        let mut out = Vec::new();
        for (id, _) in store.unsynced()? {
            if let Some(json) = store.meta(&format!("{REFUSED}{id}"))? {
                if let Ok(r) = serde_json::from_str(&json) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Builds the next request from the store.
    pub fn prepare(&self, store: &Store) -> Result<Prepared, SyncError> {
        let mut push = Vec::new();
        let mut pushed = Vec::new();
        let mut size = 0usize;
        let mut more_to_push = false;
        for (id, since) in store.unsynced()? {
            let (changes, heads) = store.changes_since(&id, since.as_deref())?;
            let hex = hex_heads(&heads);
            if let Some(json) = store.meta(&format!("{REFUSED}{id}"))? {
                if serde_json::from_str::<Refusal>(&json).is_ok_and(|r| r.heads == hex) {
                    continue; // refused as it stands; wait for the next edit
                }
            }
            if !push.is_empty() && size + changes.len() > self.max_push_bytes {
                more_to_push = true;
                break;
            }
            size += changes.len();
            push.push(Push { record: id.to_string(), changes, heads: hex });
            pushed.push((id, heads));
        }
        // Changes set aside are reported once, beside the pushes, so reviewers see them.
        let (reported, set_aside): (Vec<i64>, Vec<_>) =
            store.unreported_set_asides(self.max_push_bytes / 4)?.into_iter().unzip();
        let request = SyncRequest {
            protocol: PROTOCOL,
            request_id: uuid::Uuid::new_v4().to_string(),
            cursor: Self::cursor(store)?,
            scope: store.meta(SCOPE)?,
            reference: Self::reference(store)?.map(|r| r.version),
            push,
            max_pull_bytes: Some(self.max_pull_bytes),
            want_forms: Self::missing_forms(store)?,
            set_aside,
            app: Some(self.app.clone()),
        };
        Ok(Prepared { request, pushed, reported, more_to_push })
    }

    /// Applies the server's response to the store. `editor` is the device's user (pulled records
    /// are opened as theirs).
    pub fn absorb(&self, store: &Store, editor: &Editor, prepared: Prepared, resp: SyncResponse) -> Result<Round, SyncError> {
        if resp.protocol != PROTOCOL {
            return Err(SyncError::Protocol(resp.protocol));
        }
        // The relay answered: it holds the reports of the set-aside entries this request carried.
        store.mark_set_asides_reported(&prepared.reported)?;
        // Every delivered definition is checked before anything of the round is stored.
        for f in &resp.forms {
            Store::check_form(&f.hash, &f.definition)
                .map_err(|e| SyncError::Form { hash: f.hash.clone(), reason: e.to_string() })?;
        }
        let mut round = Round::default();
        for f in &resp.forms {
            store.store_form(&f.hash, &f.definition)?;
            round.forms_changed = true;
        }
        let mut by_rules = Vec::new();
        for result in &resp.results {
            let Some((id, heads)) = prepared.pushed.iter().find(|(id, _)| id.as_str() == result.record) else { continue };
            match result.outcome {
                Outcome::Accepted => {
                    store.mark_synced(id, heads)?;
                    store.delete_meta(&format!("{REFUSED}{id}"))?;
                    round.accepted += 1;
                }
                Outcome::Refused => {
                    let refusal = Refusal {
                        record: id.to_string(),
                        code: result.code.clone().unwrap_or_else(|| "refused".into()),
                        reason: result.reason.clone().unwrap_or_default(),
                        heads: hex_heads(heads),
                    };
                    store.set_meta(&format!("{REFUSED}{id}"), &json(&refusal)?)?;
                    if RULE_CODES.contains(&refusal.code.as_str()) {
                        by_rules.push(id.clone());
                    }
                    round.refused.push(refusal);
                }
                Outcome::ResendAll => {
                    store.resend_all(id)?;
                    round.more = true;
                }
            }
        }
        // A record of a form this store lacks but the programme lists, not yet asked for: the
        // page is pulled again once the next round has brought the definition.
        let listed = resp.reference.clone().or(Self::reference(store)?);
        let mut hold = false;
        for pull in &resp.pull {
            let Ok(id) = RecordId::new(pull.record.clone()) else { continue };
            match store.apply_from_server(&id, &pull.changes, editor) {
                Ok(_) => round.pulled.push(id),
                Err(StoreError::Record(RecordError::MissingHistory(_))) => round.reset = true,
                Err(StoreError::Record(RecordError::UnknownTemplate { template, version })) => {
                    let hash = listed
                        .as_ref()
                        .and_then(|r| r.templates.iter().find(|t| t.id == template && t.version == version))
                        .and_then(|t| t.hash.clone());
                    match hash {
                        Some(h) if !prepared.request.want_forms.contains(&h) => hold = true,
                        // A version the programme does not list (or one asked for and not
                        // delivered): the record waits on the server until the app is updated
                        // (an update resets the scope, which pulls everything again).
                        _ => round.unreadable.push(format!("{}: template {template} v{version}", pull.record)),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        // After the pull, so the record goes back to the freshest relay state known.
        for id in by_rules {
            let Some(refusal) = round.refused.iter().find(|r| r.record == id.as_str()).cloned() else { continue };
            if let Some(entry) = store.set_aside(&id, &refusal.code, &refusal.reason, editor)? {
                if store.unsynced()?.iter().any(|(u, _)| *u == id) {
                    // Answers written again: they go in the next round (the refusal no longer stands).
                    if !entry.reapplied.is_empty() {
                        store.delete_meta(&format!("{REFUSED}{id}"))?;
                        round.more = true;
                    } else {
                        let heads = store.changes_since(&id, Some(&[]))?.1;
                        let standing = Refusal { heads: hex_heads(&heads), ..refusal };
                        store.set_meta(&format!("{REFUSED}{id}"), &json(&standing)?)?;
                    }
                } else {
                    store.delete_meta(&format!("{REFUSED}{id}"))?;
                }
                round.set_aside.push(entry);
            }
        }
        if let Some(reference) = &resp.reference {
            store.set_meta(REFERENCE, &json(reference)?)?;
            let current = current_forms(reference);
            let before: Vec<(String, u32)> = store.templates().iter().map(|t| (t.id().to_string(), t.version())).collect();
            store.set_current_forms(&current)?;
            round.forms_changed |= before != current;
            // The forms this reference lists that the store lacks are asked for in the next
            // round of the same sync.
            round.more |= !Self::missing_forms(store)?.is_empty();
        }
        store.set_meta(SCOPE, &resp.scope)?;
        // A pull that could not be applied is fetched again from the start; merging is idempotent.
        // A held page is fetched again from where it began.
        let page_start = if prepared.request.scope.as_deref() == Some(resp.scope.as_str()) { prepared.request.cursor } else { 0 };
        let cursor = if round.reset { 0 } else if hold { page_start } else { resp.cursor };
        store.set_meta(CURSOR, &cursor.to_string())?;
        round.more = round.more || hold || resp.more || prepared.more_to_push;
        Ok(round)
    }
}
