//! The sync driver over HTTP(S): moves [`SyncClient`] requests and responses with reqwest
//! (rustls on ring: no OpenSSL, so it builds for Android and iOS), with retries and backoff,
//! progress reporting and cancellation.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::{Envelope, EnrolRequest, EnrolResponse, ErrorBody, SyncRequest, SyncResponse};
use super::{Round, SyncClient, SyncError};
use crate::ids::RecordId;
use crate::record::Editor;
use crate::store::Store;

/// Why a sync or an enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// 401: missing, wrong or revoked token, or a bad enrolment code.
    #[error("not allowed ({code}): {reason}")]
    Unauthorized { code: String, reason: String },
    /// Any other answer the server gave with a reason (400, 403, 413, …).
    #[error("the server refused the request ({status} {code}): {reason}")]
    Refused { status: u16, code: String, reason: String },
    #[error("the server failed ({status}): {reason}")]
    Server { status: u16, reason: String },
    #[error("sync was cancelled")]
    Cancelled,
    #[error("bad server address `{0}`")]
    Address(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl DriverError {
    fn retryable(&self) -> bool {
        matches!(self, DriverError::Network(_) | DriverError::Server { .. })
    }
}

/// A way to stop a running sync from another thread or task.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<(AtomicBool, tokio::sync::Notify)>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }
    pub fn cancel(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }
    async fn cancelled(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Where a sync is, for a progress bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub round: u32,
    pub pushed: usize,
    pub pulled: usize,
    pub refused: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The attempt of the current round (1 unless retrying).
    pub attempt: u32,
    pub done: bool,
}

/// Retries of one round.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Access to the store for the short, synchronous steps of a sync (the network waits happen
/// without holding it).
pub trait StoreAccess {
    fn with<R>(&self, f: impl FnOnce(&Store) -> R) -> R;
}

impl StoreAccess for &Store {
    fn with<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(self)
    }
}

impl StoreAccess for &Mutex<Store> {
    fn with<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        let guard = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&guard)
    }
}

/// What a whole sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub rounds: u32,
    pub accepted: usize,
    pub pulled: usize,
    pub refused: Vec<super::Refusal>,
    /// Refused changes set aside (see `docs/protocol.md`, *Refused changes are set aside*).
    pub set_aside: Vec<crate::store::SetAside>,
    pub unreadable: Vec<String>,
    /// The records this sync changed in the store, each once, sorted: those it pulled and merged
    /// and those it set back to the relay's state (set aside).
    pub changed: Vec<RecordId>,
    /// Attachments uploaded before the rounds.
    pub uploaded: usize,
    /// Form definitions arrived or the programme's current forms changed.
    pub forms_changed: bool,
}

/// An HTTP connection to one server.
#[derive(Debug, Clone)]
pub struct HttpSync {
    client: reqwest::Client,
    base: String,
    pub policy: RetryPolicy,
    pub sync: SyncClient,
    /// Set once the relay has refused the binary envelope (a relay older than it): this client
    /// then speaks gzip-compressed JSON to it.
    json_only: Arc<AtomicBool>,
}

/// An error with its causes, so "error sending request" says why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn install_crypto() {
    // Only the first call installs; later ones find it there.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpSync {
    /// A client of the server at `base` (e.g. `https://shidao.example.cn`); `extra_root_pem` adds
    /// a trusted certificate (a district's own CA, or a test server's).
    pub fn new(base: &str, extra_root_pem: Option<&[u8]>) -> Result<HttpSync, DriverError> {
        install_crypto();
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || reqwest::Url::parse(&base).is_err() {
            return Err(DriverError::Address(base));
        }
        let policy = RetryPolicy::default();
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(policy.timeout);
        if let Some(pem) = extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| DriverError::Address(format!("certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| DriverError::Network(chain(&e)))?;
        Ok(HttpSync { client, base, policy, sync: SyncClient::default(), json_only: Arc::default() })
    }

    /// The district CA certificate (PEM) the relay at `base` hands out (`GET /v1/ca.pem`), for
    /// enrolment by QR code. The relay's certificate is not checked on this one request (the
    /// device does not trust the CA yet): the caller trusts what comes back only when its
    /// fingerprint is the one the QR code carries ([`super::enrol_payload::pem_fingerprint`]).
    pub async fn fetch_ca(base: &str) -> Result<String, DriverError> {
        install_crypto();
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || reqwest::Url::parse(&base).is_err() {
            return Err(DriverError::Address(base));
        }
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| DriverError::Network(chain(&e)))?;
        let resp = client.get(format!("{base}/v1/ca.pem")).send().await.map_err(|e| DriverError::Network(chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| DriverError::Network(chain(&e)))?;
        if status != 200 {
            return Err(error_from(status, &bytes));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| DriverError::Server { status, reason: "the CA certificate is not PEM text".into() })
    }

    /// Enrols this device with a one-time code; returns the device id and token to keep.
    pub async fn enrol(&self, code: &str, device_name: &str) -> Result<EnrolResponse, DriverError> {
        let body = serde_json::to_vec(&EnrolRequest { code: code.to_string(), device_name: device_name.to_string() })
            .map_err(|e| SyncError::Encode(e.to_string()))?;
        let resp = self
            .client
            .post(format!("{}/v1/enrol", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| DriverError::Network(chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| DriverError::Network(chain(&e)))?;
        if status != 200 {
            return Err(error_from(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| DriverError::Server { status, reason: format!("bad enrolment answer: {e}") })
    }

    /// The server's address, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The envelope the next request travels in: the binary one, unless this relay refused it.
    pub fn envelope(&self) -> Envelope {
        if self.json_only.load(Ordering::Relaxed) { Envelope::Json { gzip: true } } else { Envelope::Binary }
    }

    /// Speaks gzip-compressed JSON to this relay from now on (as to a relay older than the binary
    /// envelope).
    pub fn use_json(&self) {
        self.json_only.store(true, Ordering::Relaxed);
    }

    /// One request and its response, retried with backoff on network errors and 5xx.
    pub async fn round_trip(&self, token: &str, req: &SyncRequest, cancel: &Cancel, progress: &mut Progress) -> Result<SyncResponse, DriverError> {
        let mut envelope = self.envelope();
        let mut body = envelope.encode(req).map_err(|e| DriverError::Sync(SyncError::Encode(e.to_string())))?;
        let mut delay = self.policy.first_delay;
        let mut attempt = 0;
        loop {
            attempt += 1;
            progress.attempt = attempt;
            if cancel.is_cancelled() {
                return Err(DriverError::Cancelled);
            }
            let send = self.send_once(token, envelope, body.clone());
            let result = tokio::select! {
                r = send => r,
                _ = cancel.cancelled() => return Err(DriverError::Cancelled),
            };
            match result {
                Ok((resp, received)) => {
                    progress.bytes_sent += body.len() as u64;
                    progress.bytes_received += received;
                    return Ok(resp);
                }
                // A relay older than the binary envelope: 415 from one that names envelopes, 400
                // "not a valid message" from one that read every body as JSON. The request is
                // idempotent, so it goes again at once as JSON.
                Err(DriverError::Refused { status, reason, .. })
                    if envelope == Envelope::Binary && (status == 415 || (status == 400 && reason.starts_with("body is not"))) =>
                {
                    progress.bytes_sent += body.len() as u64;
                    self.use_json();
                    envelope = self.envelope();
                    body = envelope.encode(req).map_err(|e| DriverError::Sync(SyncError::Encode(e.to_string())))?;
                }
                Err(e) if e.retryable() && attempt < self.policy.attempts => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Err(DriverError::Cancelled),
                    }
                    delay = (delay * 2).min(self.policy.max_delay);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(&self, token: &str, envelope: Envelope, body: Vec<u8>) -> Result<(SyncResponse, u64), DriverError> {
        let mut request = self
            .client
            .post(format!("{}/v1/sync", self.base))
            .bearer_auth(token)
            .header("content-type", envelope.content_type())
            .header("accept-encoding", "gzip");
        if let Some(encoding) = envelope.content_encoding() {
            request = request.header("content-encoding", encoding);
        }
        let resp = request.body(body).send().await.map_err(|e| DriverError::Network(chain(&e)))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (content_type, encoding) = (header("content-type"), header("content-encoding"));
        let bytes = resp.bytes().await.map_err(|e| DriverError::Network(chain(&e)))?;
        if status != 200 {
            return Err(error_from(status, &bytes));
        }
        let decoded = Envelope::from_headers(content_type.as_deref(), encoding.as_deref())
            .and_then(|answer| answer.decode(&bytes))
            .map_err(|e| DriverError::Network(format!("response cut or damaged: {e}")))?;
        Ok((decoded, bytes.len() as u64))
    }

    /// Uploads one file, resuming where an earlier upload stopped (`HEAD` says how many bytes
    /// the server holds); the same file already on the server is not sent again.
    pub async fn upload_attachment(&self, token: &str, bytes: &[u8], mime: &str, cancel: &Cancel) -> Result<(), DriverError> {
        const PIECE: usize = 1024 * 1024;
        let hash = crate::store::content_hash(bytes);
        let url = format!("{}/v1/attachments/{hash}", self.base);
        let head = self.client.head(&url).bearer_auth(token).send().await.map_err(|e| DriverError::Network(chain(&e)))?;
        let mut offset = match head.status().as_u16() {
            200 if head.headers().get("upload-complete").is_some_and(|v| v.as_bytes() == b"1") => return Ok(()),
            200 => head
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0),
            404 => 0,
            status => return Err(error_from(status, &head.bytes().await.unwrap_or_default())),
        };
        while offset < bytes.len() {
            if cancel.is_cancelled() {
                return Err(DriverError::Cancelled);
            }
            let end = (offset + PIECE).min(bytes.len());
            let resp = self
                .client
                .put(&url)
                .bearer_auth(token)
                .header("upload-offset", offset.to_string())
                .header("upload-length", bytes.len().to_string())
                .header("content-type", mime)
                .body(bytes[offset..end].to_vec())
                .send()
                .await
                .map_err(|e| DriverError::Network(chain(&e)))?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(error_from(status, &resp.bytes().await.unwrap_or_default()));
            }
            offset = end;
        }
        Ok(())
    }

    /// Downloads a file by its hash and checks that the bytes match it.
    pub async fn download_attachment(&self, token: &str, hash: &str) -> Result<(Vec<u8>, String), DriverError> {
        let resp = self
            .client
            .get(format!("{}/v1/attachments/{hash}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| DriverError::Network(chain(&e)))?;
        let status = resp.status().as_u16();
        let mime = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
        let bytes = resp.bytes().await.map_err(|e| DriverError::Network(chain(&e)))?;
        if status != 200 {
            return Err(error_from(status, &bytes));
        }
        if crate::store::content_hash(&bytes) != hash {
            return Err(DriverError::Network(format!("attachment {hash} arrived damaged")));
        }
        Ok((bytes.to_vec(), mime))
    }

    /// Uploads every attachment of the store the server does not hold yet.
    pub async fn upload_attachments<S: StoreAccess>(&self, store: &S, token: &str, cancel: &Cancel) -> Result<usize, DriverError> {
        let pending = store.with(|s| s.attachments_to_upload()).map_err(SyncError::from)?;
        for hash in &pending {
            let (bytes, mime) = store.with(|s| s.attachment(hash)).map_err(SyncError::from)?;
            self.upload_attachment(token, &bytes, &mime, cancel).await?;
            store.with(|s| s.mark_uploaded(hash)).map_err(SyncError::from)?;
        }
        Ok(pending.len())
    }

    /// Syncs until nothing is left to push or pull, reporting progress after every round.
    pub async fn sync<S: StoreAccess>(
        &self,
        store: S,
        token: &str,
        editor: &Editor,
        cancel: &Cancel,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<Summary, DriverError> {
        self.sync_rounds(store, token, editor, cancel, |progress, _| on_progress(progress)).await
    }

    /// Syncs until nothing is left to push or pull. `on_round` is called after every round, once
    /// the round is on disk and with the store not held, with the progress so far and what the
    /// round did (the records it pulled and set aside, whether the forms changed).
    pub async fn sync_rounds<S: StoreAccess>(
        &self,
        store: S,
        token: &str,
        editor: &Editor,
        cancel: &Cancel,
        mut on_round: impl FnMut(&Progress, &Round),
    ) -> Result<Summary, DriverError> {
        let mut progress = Progress::default();
        let mut summary = Summary::default();
        let mut changed = BTreeSet::new();
        let mut reset_before = false;
        // Files first, so that no record reaches others before the photos it refers to.
        summary.uploaded = self.upload_attachments(&store, token, cancel).await?;
        loop {
            progress.round += 1;
            let prepared = store.with(|s| self.sync.prepare(s))?;
            let resp = self.round_trip(token, &prepared.request, cancel, &mut progress).await?;
            let round: Round = store.with(|s| self.sync.absorb(s, editor, prepared, resp))?;
            summary.rounds = progress.round;
            summary.accepted += round.accepted;
            summary.pulled += round.pulled.len();
            summary.refused.extend(round.refused.iter().cloned());
            summary.set_aside.extend(round.set_aside.iter().cloned());
            summary.unreadable.extend(round.unreadable.iter().cloned());
            summary.forms_changed |= round.forms_changed;
            changed.extend(round.pulled.iter().cloned());
            changed.extend(round.set_aside.iter().filter_map(|s| RecordId::new(s.record.clone()).ok()));
            progress.pushed += round.accepted;
            progress.pulled += round.pulled.len();
            progress.refused += round.refused.len();
            // A reset pulls everything once more; a second one in a row would not help.
            let more = round.more || (round.reset && !reset_before);
            reset_before = round.reset;
            progress.done = !more || progress.round >= 1000;
            on_round(&progress, &round);
            if progress.done {
                summary.changed = changed.into_iter().collect();
                return Ok(summary);
            }
        }
    }
}

fn error_from(status: u16, bytes: &[u8]) -> DriverError {
    let body: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
    let (code, reason) = match body {
        Some(b) => (b.code, b.reason),
        None => ("unknown".to_string(), String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string()),
    };
    match status {
        401 => DriverError::Unauthorized { code, reason },
        // The body broke off on the way (the connection failed while it was sent): a network
        // failure the next attempt mends, not a refusal of what was sent.
        408 => DriverError::Network(format!("the request broke off on the way: {reason}")),
        429 | 500..=599 => DriverError::Server { status, reason },
        _ => DriverError::Refused { status, code, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str) -> DriverError {
        error_from(status, format!(r#"{{"code":"{code}","reason":"why"}}"#).as_bytes())
    }

    #[test]
    fn a_body_that_broke_off_is_retried_and_a_refusal_is_not() {
        assert!(answer(408, "incomplete_body").retryable(), "{:?}", answer(408, "incomplete_body"));
        assert!(answer(503, "storage_full").retryable());
        assert!(answer(429, "too_many_attempts").retryable());
        assert!(!answer(400, "bad_request").retryable());
        assert!(!answer(413, "too_large").retryable());
        assert!(!answer(401, "revoked").retryable());
    }
}
