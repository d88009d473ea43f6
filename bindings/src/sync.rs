//! Sync with `shidao-server`, and change notifications.
//!
//! These bindings wrap the core's sync (`shidao_core::sync`: the `SyncClient` state machine and
//! the `HttpSync` driver) with no network code of their own:
//!
//! - [`ShidaoStore::enrol`] → `HttpSync::enrol`: a one-time code from the programme's admin
//!   gives this store a device identity and a token. Both are kept in the store's own meta table
//!   (`Store::set_meta`, key `enrol.identity`, one JSON value written in one statement), so the
//!   app never handles the token; [`ShidaoStore::enrolment`] reads the identity back, and
//!   [`ShidaoStore::set_server_url`] moves it to another address of the same server.
//! - [`ShidaoStore::sync`]: an `async` call on tokio (`#[uniffi::export(async_runtime =
//!   "tokio")]` with uniffi's `tokio` feature: reqwest needs a tokio reactor), with a foreign
//!   [`SyncProgress`] told after every round and a [`SyncCancel`] to stop it (uniffi has no
//!   cancellation of its own). Attachments go up first (`HttpSync::upload_attachments`), then
//!   rounds of `SyncClient::prepare` → `HttpSync::round_trip` → `SyncClient::absorb` until the
//!   server has nothing more. The store's mutex is held only inside `prepare` and `absorb` (the
//!   core's `StoreAccess`), never across a network wait, so the app goes on editing while a sync
//!   waits on the server.
//! - [`ChangeListener`] is told the id of every record a round pulled from the server (someone
//!   else's edit, merged), after the round is on disk and with no lock held.
//! - [`ShidaoStore::fetch_attachment`] → `HttpSync::download_attachment`: a file another device
//!   attached, fetched once and kept.
//!
//! Errors come through the one conversion in `error.rs`: a bad address, an unreachable or failing
//! server → `Network`; a 401 → `Unauthorized` with the server's code (`revoked`, `bad_code`); a
//! cancel → `Cancelled`.
//!
//! Deviation from "one call into the core", and why: the core's `HttpSync::sync` runs exactly
//! this loop but reports only counts (`Summary::pulled`), not which records it pulled, so the
//! listener could not be told. `sync` therefore drives the same public steps itself (the loop
//! below mirrors `HttpSync::sync` line for line) and reads the pulled ids from each response
//! before absorbing it. Once the core's `Round`/`Summary` carry the pulled record ids, the loop
//! becomes one `HttpSync::sync` call.
//!
//! What must stay true: the store lock is never held across an `.await`, nor while calling into
//! the app (progress, listener); one sync per store at a time.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shidao_core::store::{Store, StoreError};
use shidao_core::sync::enrol_payload::{pem_fingerprint, EnrolPayload};
use shidao_core::sync::http::{Cancel, HttpSync, Progress, StoreAccess};
use shidao_core::{DeviceId, UserId};

use crate::error::{guard, guard_async, Result, ShidaoError};
use crate::store::{ShidaoStore, Shared};
use crate::types::{Editor, SetAsideEntry, StoredFile};

/// Told when a record of the store changed, so a screen showing it can refresh. Implemented by
/// the app (Kotlin `ChangeListener`, Swift `ChangeListener` protocol).
///
/// Called on the thread that made the change (for a sync: the thread running it), after the
/// change is on disk and with no lock held, so it may read the record at once; keep it short
/// (post to the UI thread). An exception thrown by it is ignored.
#[uniffi::export(foreign)]
pub trait ChangeListener: Send + Sync {
    /// `record_id` changed: created, edited, merged from another copy, or pulled by a sync.
    fn on_record_changed(&self, record_id: String);
}

/// Told when the list of forms to fill changed (a sync brought a form the programme published, or
/// the programme changed which version new records use): call `ShidaoStore.templates` again.
/// Called like `ChangeListener`, with no lock held; an exception thrown by it is ignored.
#[uniffi::export(foreign)]
pub trait FormsListener: Send + Sync {
    fn on_forms_changed(&self);
}

/// Told after every round of a sync, for a progress bar. Called on the thread running the sync,
/// with no lock held; an exception thrown by it is ignored.
#[uniffi::export(foreign)]
pub trait SyncProgress: Send + Sync {
    fn on_progress(&self, status: SyncStatus);
}

/// Where a sync is, after a round.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// The round just finished (1, 2, …); one round is one request to the server.
    pub round: u32,
    /// Records the server stored so far in this sync.
    pub pushed: u64,
    /// Records received from the server so far (others' edits).
    pub pulled: u64,
    /// Records the server refused so far (see `SyncReport.refused`).
    pub refused: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The attempt that succeeded for this round (1 unless the network needed retries).
    pub attempt: u32,
    /// The last call of this sync.
    pub done: bool,
}

impl From<&Progress> for SyncStatus {
    fn from(p: &Progress) -> Self {
        SyncStatus {
            round: p.round,
            pushed: p.pushed as u64,
            pulled: p.pulled as u64,
            refused: p.refused as u64,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            attempt: p.attempt,
            done: p.done,
        }
    }
}

/// A record the server would not store, and why. Refused by the server's rules (`sealed`,
/// `status_not_allowed`, …), its refused changes are set aside (`SyncReport.set_aside`); refused
/// for another reason (`out_of_scope`, …), it keeps every local edit and is not sent again until
/// it changes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncRefusal {
    pub record: String,
    /// The server's code, e.g. `out_of_scope`, `status_not_allowed`, `foreign_author`.
    pub code: String,
    pub reason: String,
}

/// What the last sync brought for filling forms: the user's schools, the programme's tasks and
/// its indicator bank, so that a tablet offers a school, a task or an indicator from a list
/// instead of a typed id. Kept by the store; `None` before the first sync.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ReferenceData {
    pub schools: Vec<SchoolChoice>,
    pub tasks: Vec<TaskChoice>,
    pub indicators: Vec<IndicatorChoice>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SchoolChoice {
    pub id: String,
    pub name: String,
    /// The programme's category of the school (示范, 实验校, …), or empty.
    pub category: String,
    pub key_project: String,
}

/// A task a task-progress record reports on.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TaskChoice {
    pub id: String,
    pub title: String,
    pub target: f64,
    pub unit: String,
    /// The school whose own target it is; `None` for a district-wide task.
    pub school: Option<String>,
    pub due_date: String,
}

/// An indicator of the programme's bank, for an evaluation's indicator rows.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct IndicatorChoice {
    pub id: String,
    pub name: String,
    pub name_en: String,
    /// The report chapter it is under.
    pub chapter: String,
    pub unit: String,
    pub target: Option<f64>,
}

impl From<shidao_core::sync::protocol::Reference> for ReferenceData {
    fn from(r: shidao_core::sync::protocol::Reference) -> Self {
        ReferenceData {
            schools: r.schools.into_iter().map(|s| SchoolChoice { id: s.id, name: s.name, category: s.category, key_project: s.key_project }).collect(),
            tasks: r
                .tasks
                .into_iter()
                .map(|t| TaskChoice { id: t.id, title: t.title, target: t.target, unit: t.unit, school: t.school, due_date: t.due_date })
                .collect(),
            indicators: r
                .indicators
                .into_iter()
                .map(|i| IndicatorChoice { id: i.id, name: i.name, name_en: i.name_en, chapter: i.chapter, unit: i.unit, target: i.target })
                .collect(),
        }
    }
}

/// What a whole sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub rounds: u32,
    /// Records the server stored.
    pub pushed: u64,
    /// Records received from the server.
    pub pulled: u64,
    /// Files uploaded before the records.
    pub uploaded: u64,
    pub refused: Vec<SyncRefusal>,
    /// Refused changes set aside (records refused by the server's rules): which record, which
    /// fields, why, and which answers were written again. Also listed by `ShidaoStore.set_aside`.
    pub set_aside: Vec<SetAsideEntry>,
    /// Pulled records this app version cannot open (a newer template version), with the reason;
    /// they arrive after an app update.
    pub unreadable: Vec<String>,
    /// Ids of the records this sync pulled and merged, each once: the `ChangeListener` was told
    /// about each of them.
    pub changed: Vec<String>,
    /// The list of forms changed (the `FormsListener` was told).
    pub forms_changed: bool,
}

/// Who this store is enrolled as with a server.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Enrolment {
    /// The server's address, as given to `enrol` or `set_server_url` (no trailing `/`).
    pub server_url: String,
    /// Who edits on this tablet: the user, this device's id (given by the server) and the role.
    /// Create and open records with it: the server accepts only changes made by this user on
    /// this device.
    pub editor: Editor,
    /// The person's name as the server knows it.
    pub name: String,
    /// The name this tablet was enrolled under.
    pub device_name: String,
}

/// Stops a running sync: pass one to `ShidaoStore.sync` and call `cancel()` from anywhere (a
/// "Stop" button). The sync then fails with `ShidaoError.Cancelled` at once, even while it waits
/// on the network; rounds already absorbed stay stored. A cancelled `SyncCancel` stays cancelled:
/// make a new one for the next sync.
#[derive(Debug, Default, uniffi::Object)]
pub struct SyncCancel {
    cancel: Cancel,
}

#[uniffi::export]
impl SyncCancel {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(SyncCancel::default())
    }

    /// Asks the sync to stop; it fails with `Cancelled` as soon as it notices (at once while it
    /// waits on the network).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// The enrolment as kept in the store's meta table (with the token, which never leaves Rust).
#[derive(Serialize, Deserialize)]
struct Stored {
    server_url: String,
    token: String,
    device: String,
    user: String,
    role: String,
    name: String,
    device_name: String,
    /// A certificate (PEM) trusted besides the system's roots: the district's own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_certificate: Option<String>,
}

/// A client of the server at `url`, trusting `certificate` (PEM) besides the system's roots.
/// A malformed address is `Network` ("bad server address"); a certificate that cannot be read
/// is `InvalidAnswer` naming `server_certificate`.
/// Every request names the bindings and their version as its app (admins see it beside the
/// device).
fn client(url: &str, certificate: Option<&str>) -> Result<HttpSync> {
    let plain = HttpSync::new(url, None)?;
    let mut http = match certificate {
        None => plain,
        Some(pem) => HttpSync::new(url, Some(pem.as_bytes())).map_err(|e| ShidaoError::InvalidAnswer {
            field: "server_certificate".into(),
            reason: format!("the server certificate cannot be used: {e}"),
        })?,
    };
    http.sync.app = format!("shidao-bindings/{}", env!("CARGO_PKG_VERSION"));
    Ok(http)
}

impl Stored {
    fn client(&self) -> Result<HttpSync> {
        client(&self.server_url, self.server_certificate.as_deref())
    }
}

const ENROLMENT_KEY: &str = "enrol.identity";

impl Stored {
    fn load(store: &Store) -> Result<Option<Stored>> {
        let Some(json) = store.meta(ENROLMENT_KEY)? else { return Ok(None) };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| ShidaoError::Storage { reason: format!("the stored enrolment cannot be read ({e}): enrol again") })
    }

    fn required(store: &Store) -> Result<Stored> {
        Stored::load(store)?.ok_or_else(|| ShidaoError::Unauthorized {
            code: "not_enrolled".into(),
            reason: "this store is not enrolled with a server: call enrol with a one-time code first".into(),
        })
    }

    fn save(&self, store: &Store) -> Result<()> {
        let json = serde_json::to_string(self).map_err(|e| ShidaoError::Other { reason: e.to_string() })?;
        Ok(store.set_meta(ENROLMENT_KEY, &json)?)
    }

    fn editor(&self) -> Result<shidao_core::Editor> {
        let role = shidao_core::Role::parse(&self.role)
            .ok_or_else(|| ShidaoError::Other { reason: format!("the server gave an unknown role `{}`", self.role) })?;
        Ok(shidao_core::Editor { user: UserId::new(self.user.clone())?, device: DeviceId::new(self.device.clone())?, role })
    }

    fn public(&self) -> Result<Enrolment> {
        let e = self.editor()?;
        Ok(Enrolment {
            server_url: self.server_url.clone(),
            editor: e.into(),
            name: self.name.clone(),
            device_name: self.device_name.clone(),
        })
    }
}

/// The store as the core's sync steps take it: locked for one synchronous step at a time.
struct Locked<'a>(&'a Shared);

impl StoreAccess for Locked<'_> {
    fn with<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.0.store())
    }
}

/// Marks the store as syncing until dropped (however the sync ends).
struct Running<'a>(&'a AtomicBool);

impl<'a> Running<'a> {
    fn start(flag: &'a AtomicBool) -> Result<Running<'a>> {
        if flag.swap(true, Ordering::SeqCst) {
            return Err(ShidaoError::NotAllowed { reason: "a sync of this store is already running".into() });
        }
        Ok(Running(flag))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn tell(progress: Option<&Arc<dyn SyncProgress>>, p: &Progress) {
    if let Some(progress) = progress {
        let status = SyncStatus::from(p);
        let _ = catch_unwind(AssertUnwindSafe(|| progress.on_progress(status)));
    }
}

/// One sync of the store: `HttpSync::sync`'s loop, also noting which records each round pulled
/// (see the module comment).
async fn run_sync(shared: &Shared, progress: Option<Arc<dyn SyncProgress>>, cancel: Cancel) -> Result<SyncReport> {
    let _running = Running::start(&shared.syncing)?;
    let enrolment = Stored::required(&shared.store())?;
    let editor = enrolment.editor()?;
    let http = enrolment.client()?;
    let token = enrolment.token.as_str();
    let store = Locked(shared);

    let mut status = Progress::default();
    let mut report = SyncReport::default();
    let mut changed = BTreeSet::new();
    let mut reset_before = false;
    // Files first, so that no record reaches others before the photos it refers to.
    report.uploaded = http.upload_attachments(&store, token, &cancel).await? as u64;
    loop {
        status.round += 1;
        let prepared = store.with(|s| http.sync.prepare(s))?;
        let resp = http.round_trip(token, &prepared.request, &cancel, &mut status).await?;
        let pulled: Vec<String> = resp.pull.iter().map(|p| p.record.clone()).collect();
        let round = store.with(|s| http.sync.absorb(s, &editor, prepared, resp))?;
        report.rounds = status.round;
        report.pushed += round.accepted as u64;
        report.pulled += round.pulled as u64;
        report.refused.extend(round.refused.iter().map(|r| SyncRefusal { record: r.record.clone(), code: r.code.clone(), reason: r.reason.clone() }));
        report.unreadable.extend(round.unreadable.iter().cloned());
        report.set_aside.extend(round.set_aside.iter().cloned().map(SetAsideEntry::from));
        for entry in &round.set_aside {
            // The record went back to the server's state: screens showing it refresh.
            shared.notify(&entry.record);
            changed.insert(entry.record.clone());
        }
        status.pushed += round.accepted;
        status.pulled += round.pulled;
        status.refused += round.refused.len();
        // The round is on disk and the store unlocked: screens showing these records refresh.
        if round.forms_changed {
            report.forms_changed = true;
            shared.notify_forms();
        }
        for id in pulled {
            let unreadable = round.unreadable.iter().any(|u| u.strip_prefix(id.as_str()).is_some_and(|rest| rest.starts_with(':')));
            if !unreadable {
                shared.notify(&id);
                changed.insert(id);
            }
        }
        // A reset pulls everything once more; a second one in a row would not help.
        let more = round.more || (round.reset && !reset_before);
        reset_before = round.reset;
        status.done = !more || status.round >= 1000;
        tell(progress.as_ref(), &status);
        if status.done {
            report.changed = changed.into_iter().collect();
            return Ok(report);
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl ShidaoStore {
    /// Enrols this store with the server at `server_url` (`https://…`, or `http://…` on a
    /// trusted network) using a one-time code from the programme's admin, under `device_name`
    /// (shown to admins, e.g. "王老师的平板"). The identity and its token are kept in the store;
    /// the app never sees the token. Enrolling again replaces them.
    ///
    /// `server_certificate`: for a server whose HTTPS certificate is issued by the district's
    /// own authority rather than a public one, that authority's certificate (PEM, as the
    /// district's IT hands it out); kept with the enrolment and trusted for every later sync.
    ///
    /// Errors: `Network` (bad address, server unreachable, a certificate nobody trusts),
    /// `Unauthorized` with code `bad_code` (unknown, used or expired code), `InvalidAnswer`
    /// (`server_certificate` cannot be read).
    #[uniffi::method(default(server_certificate = None))]
    pub async fn enrol(
        &self,
        server_url: String,
        one_time_code: String,
        device_name: String,
        server_certificate: Option<String>,
    ) -> Result<Enrolment> {
        guard_async(async {
            let http = client(&server_url, server_certificate.as_deref())?;
            let e = http.enrol(&one_time_code, &device_name).await?;
            let stored = Stored {
                server_url: server_url.trim_end_matches('/').to_string(),
                token: e.token,
                device: e.device,
                user: e.user,
                role: e.role,
                name: e.name,
                device_name,
                server_certificate,
            };
            let enrolment = stored.public()?;
            stored.save(&self.shared.store())?;
            Ok(enrolment)
        })
        .await
    }

    /// Enrols this store from a scanned enrolment QR code (`shidao://enrol?v=1&…`, the format
    /// of docs/protocol.md, "Enrolment by QR code"), under `device_name`. The code carries the
    /// relay's address, the one-time code and, for a relay whose certificate is issued by the
    /// district's own authority, that authority's SHA-256 fingerprint: the authority's
    /// certificate is then fetched from the relay, trusted only when its fingerprint matches,
    /// and kept with the enrolment like `enrol`'s `server_certificate`.
    ///
    /// Errors: `BadEnrolPayload` (not an enrolment code, another version, a field missing or
    /// malformed), `EnrolCodeExpired`, `EnrolCodeUsed`, `WrongServer` (this store is enrolled
    /// with another relay, or the relay's authority is not the one the code names), `Network`.
    pub async fn enrol_from_qr(&self, payload: String, device_name: String) -> Result<Enrolment> {
        guard_async(async {
            let p = EnrolPayload::parse(&payload).map_err(|e| ShidaoError::BadEnrolPayload { reason: e.to_string() })?;
            if let Some(stored) = Stored::load(&self.shared.store())? {
                if stored.server_url != p.server {
                    return Err(ShidaoError::WrongServer {
                        reason: format!(
                            "this tablet is enrolled with {}, the code is for {}; a tablet enrols with one server",
                            stored.server_url, p.server
                        ),
                    });
                }
            }
            let certificate = match &p.ca {
                None => None,
                Some(fingerprint) => {
                    let pem = HttpSync::fetch_ca(&p.server).await?;
                    if pem_fingerprint(&pem).as_deref() != Some(fingerprint.as_str()) {
                        return Err(ShidaoError::WrongServer {
                            reason: format!("{} hands out a certificate authority other than the one the code names (SHA-256 {fingerprint})", p.server),
                        });
                    }
                    Some(pem)
                }
            };
            let now = shidao_core::Clock::system().now();
            match self.enrol(p.server.clone(), p.code.clone(), device_name, certificate).await {
                Err(ShidaoError::Unauthorized { code, reason }) if code == "bad_code" => Err(match p.expires {
                    Some(at) if now >= at => ShidaoError::EnrolCodeExpired { reason: format!("the code expired at {} (Unix time): {reason}", at) },
                    _ => ShidaoError::EnrolCodeUsed { reason },
                }),
                other => other,
            }
        })
        .await
    }

    /// Syncs with the server: sends every local change the server lacks (attached files first),
    /// receives everyone else's in this device's scope, merges them (nobody's edit is lost), and
    /// tells the `ChangeListener` about each record received. Runs until the server has nothing
    /// more, in rounds; `progress` is told after each. `cancel` stops it (`Cancelled`).
    ///
    /// Errors: `Unauthorized` (`not_enrolled`; `revoked`: enrol again), `Network` (after
    /// retries with backoff; try later), `Cancelled`, `NotAllowed` (a sync of this store is
    /// already running). A failed or cancelled sync leaves the store consistent; the next one
    /// goes on from where it stopped.
    #[uniffi::method(default(progress = None, cancel = None))]
    pub async fn sync(&self, progress: Option<Arc<dyn SyncProgress>>, cancel: Option<Arc<SyncCancel>>) -> Result<SyncReport> {
        let cancel = cancel.map(|c| c.cancel.clone()).unwrap_or_default();
        guard_async(run_sync(&self.shared, progress, cancel)).await
    }

    /// The bytes of an attached file: from this store, or else downloaded from the server once
    /// (a photo another device attached) and kept. `NotFound` when neither has it.
    pub async fn fetch_attachment(&self, hash: String) -> Result<StoredFile> {
        guard_async(async {
            let local = self.shared.store().attachment(&hash);
            match local {
                Ok((bytes, mime)) => return Ok(StoredFile { bytes, mime }),
                Err(StoreError::AttachmentNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let enrolment = Stored::required(&self.shared.store())?;
            let http = enrolment.client()?;
            let (bytes, mime) = http.download_attachment(&enrolment.token, &hash).await.map_err(|e| match e {
                shidao_core::sync::http::DriverError::Refused { status: 404 | 403, .. } => {
                    ShidaoError::NotFound { what: format!("attachment {hash}") }
                }
                e => e.into(),
            })?;
            self.shared.store().put_attachment(&bytes, &mime)?;
            Ok(StoredFile { bytes, mime })
        })
        .await
    }
}

#[uniffi::export]
impl ShidaoStore {
    /// Who this store is enrolled as, or `None` before `enrol`.
    pub fn enrolment(&self) -> Result<Option<Enrolment>> {
        guard(|| Stored::load(&self.shared.store())?.map(|s| s.public()).transpose())
    }

    /// The schools, tasks and indicator bank the last sync brought (`None` before the first).
    pub fn reference_data(&self) -> Result<Option<ReferenceData>> {
        guard(|| Ok(shidao_core::sync::SyncClient::reference(&self.shared.store())?.map(ReferenceData::from)))
    }

    /// Points the enrolment at another address of the same server (the district moved it);
    /// the identity, token and trusted certificate stay. `Network` for an address that is not
    /// `http(s)://…`.
    pub fn set_server_url(&self, server_url: String) -> Result<()> {
        guard(|| {
            let store = self.shared.store();
            let mut stored = Stored::required(&store)?;
            client(&server_url, stored.server_certificate.as_deref())?;
            stored.server_url = server_url.trim_end_matches('/').to_string();
            stored.save(&store)
        })
    }
}
