//! Sync with `shidao-server`, and change notifications.
//!
//! These bindings wrap the core's sync (`shidao_core::sync`: the `SyncClient` state machine and
//! the `HttpSync` driver) with no network code of their own:
//!
//! - [`ShidaoStore::enrol`] → the core's `Enrolment` (`shidao_core::sync::enrolment`): a one-time
//!   code from the programme's admin gives this store a device identity and a token, kept by the
//!   core in the store itself, so the app never handles the token; [`ShidaoStore::enrolment`]
//!   reads the identity back, and [`ShidaoStore::set_server_url`] moves it to another address of
//!   the same server.
//! - [`ShidaoStore::sync`]: an `async` call on tokio (`#[uniffi::export(async_runtime =
//!   "tokio")]` with uniffi's `tokio` feature: reqwest needs a tokio reactor), with a foreign
//!   [`SyncProgress`] told after every round and a [`SyncCancel`] to stop it (uniffi has no
//!   cancellation of its own). One call of the core's driver (`Enrolment::sync` →
//!   `HttpSync::sync_rounds`): attachments first, then rounds until the server has nothing more.
//!   The store's mutex is held only inside the core's synchronous steps (`StoreAccess`), never
//!   across a network wait, so the app goes on editing while a sync waits on the server.
//! - [`ChangeListener`] is told the id of every record a round pulled from the server (someone
//!   else's edit, merged) or set back to the server's state, after the round is on disk and with
//!   no lock held (the core's `Round` names them).
//! - [`ShidaoStore::fetch_attachment`] → `HttpSync::download_attachment`: a file another device
//!   attached, fetched once and kept.
//!
//! Errors come through the one conversion in `error.rs`: a bad address, an unreachable or failing
//! server → `Network`; a 401 → `Unauthorized` with the server's code (`revoked`, `bad_code`); a
//! cancel → `Cancelled`.
//!
//! What must stay true: the store lock is never held across an `.await`, nor while calling into
//! the app (progress, listener); one sync per store at a time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shidao_core::store::{Store, StoreError};
use shidao_core::sync::enrol_payload::{pem_fingerprint, EnrolPayload};
use shidao_core::sync::enrolment::Enrolment as Kept;
use shidao_core::sync::http::{Cancel, HttpSync, Progress, StoreAccess};

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

/// The store's enrolment and a client of its server.
fn enrolled(store: &Store) -> Result<(Kept, HttpSync)> {
    let kept = Kept::required(store)?;
    let http = client(&kept.server_url, kept.server_certificate.as_deref())?;
    Ok((kept, http))
}

fn public(e: &Kept) -> Enrolment {
    Enrolment { server_url: e.server_url.clone(), editor: e.editor.clone(), name: e.name.clone(), device_name: e.device_name.clone() }
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

/// One sync of the store: the core's driver, telling the listeners after every round.
async fn run_sync(shared: &Shared, progress: Option<Arc<dyn SyncProgress>>, cancel: Cancel) -> Result<SyncReport> {
    let _running = Running::start(&shared.syncing)?;
    let (enrolment, http) = enrolled(&shared.store())?;
    let summary = enrolment
        .sync(&http, Locked(shared), &cancel, |status, round| {
            // The round is on disk and the store unlocked: screens showing these records refresh.
            if round.forms_changed {
                shared.notify_forms();
            }
            for id in round.pulled.iter().map(|id| id.as_str()).chain(round.set_aside.iter().map(|s| s.record.as_str())) {
                shared.notify(id);
            }
            tell(progress.as_ref(), status);
        })
        .await?;
    Ok(SyncReport {
        rounds: summary.rounds,
        pushed: summary.accepted as u64,
        pulled: summary.pulled as u64,
        uploaded: summary.uploaded as u64,
        refused: summary.refused.into_iter().map(|r| SyncRefusal { record: r.record, code: r.code, reason: r.reason }).collect(),
        set_aside: summary.set_aside.into_iter().map(SetAsideEntry::from).collect(),
        unreadable: summary.unreadable,
        changed: summary.changed.into_iter().map(String::from).collect(),
        forms_changed: summary.forms_changed,
    })
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
            let kept = Kept::enrol(&http, Locked(&self.shared), &one_time_code, &device_name, server_certificate).await?;
            Ok(public(&kept))
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
            if let Some(stored) = Kept::load(&self.shared.store())? {
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
            let (enrolment, http) = enrolled(&self.shared.store())?;
            let (bytes, mime) = http.download_attachment(enrolment.token(), &hash).await.map_err(|e| match e {
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
        guard(|| Ok(Kept::load(&self.shared.store())?.as_ref().map(public)))
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
            let mut kept = Kept::required(&store)?;
            client(&server_url, kept.server_certificate.as_deref())?;
            kept.server_url = server_url.trim_end_matches('/').to_string();
            Ok(kept.save(&store)?)
        })
    }
}
