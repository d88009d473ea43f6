//! The one error type apps see, the one conversion from core errors, and the guard that keeps
//! panics on the Rust side of the boundary.
//!
//! What must stay true: every exported function and method runs its body inside [`guard`] (an
//! `async` one inside [`guard_async`]), so a Rust panic becomes [`ShidaoError::Other`] instead of
//! unwinding into Kotlin or Swift (uniffi would report it as an `InternalException`, which apps
//! do not expect).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use shidao_core::store::StoreError;
use shidao_core::sync::http::DriverError;
use shidao_core::sync::SyncError;
use shidao_core::{InvalidId, RecordError};

/// What went wrong, in the few cases an app can act on.
///
/// Kotlin sees it as `ShidaoException`, Swift as `ShidaoError`, Python as `ShidaoError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ShidaoError {
    /// The server could not be reached, the connection broke, the server failed (5xx), or its
    /// address is not a valid `http(s)://` URL (`reason` says which). Sync and enrolment only;
    /// the store is as before the call: try again later.
    #[error("network: {reason}")]
    Network { reason: String },
    /// The server refused this device: `code` is the server's (`revoked`: the device was revoked,
    /// enrol it again; `bad_code`: an unknown, used or expired enrolment code; `unauthorized`: a
    /// token the server does not know) or `not_enrolled` (this store was never enrolled).
    #[error("unauthorized ({code}): {reason}")]
    Unauthorized { code: String, reason: String },
    /// The sync was stopped through its `SyncCancel`; what earlier rounds stored stays stored,
    /// and the next sync goes on from there.
    #[error("sync was cancelled")]
    Cancelled,
    /// A record, template, row or attachment that is not in this store.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// A value that does not fit its field (type, option, scale, bounds, constraint, format), or
    /// a field that is not where the call said. `field` is the field id (for a malformed id:
    /// `school`, `user`, `device`, `record` or `row`); `reason` says what is wrong, with the
    /// field's Chinese label.
    #[error("{reason}")]
    InvalidAnswer { field: String, reason: String },
    /// The record's state or the editor's role does not allow this now: an approved (sealed)
    /// record, an inspector editing a submitted record, a submit with missing answers, a return
    /// without a comment.
    #[error("not allowed: {reason}")]
    NotAllowed { reason: String },
    /// The device's store could not be read or written. A damaged store file has been moved
    /// aside (never deleted) and `reason` says where; `ShidaoStore.salvage` recovers its records.
    #[error("storage: {reason}")]
    Storage { reason: String },
    /// The key given to `ShidaoStore.openEncrypted` (or `rekey`, `salvage`) does not open the
    /// store file, or is not 32 bytes. Nothing was changed: the file is as it was. Ask the
    /// keystore for the right key; never delete the file.
    #[error("wrong key: {reason}")]
    WrongKey { reason: String },
    /// `enrolFromQr`: the scanned text is not an enrolment QR code this app reads (another QR
    /// code, a payload of a later version, a field missing or malformed); `reason` names the
    /// field. Nothing was sent; scan the code again or ask for a new one.
    #[error("enrolment QR code: {reason}")]
    BadEnrolPayload { reason: String },
    /// `enrolFromQr`: the relay refused the code and it is past the expiry the QR code carries:
    /// ask the admin for a new code.
    #[error("enrolment code expired: {reason}")]
    EnrolCodeExpired { reason: String },
    /// `enrolFromQr`: the relay refused a code that has not expired: it was used already (each
    /// code enrols one tablet once) or the relay does not know it. Ask for a new code.
    #[error("enrolment code already used: {reason}")]
    EnrolCodeUsed { reason: String },
    /// `enrolFromQr`: the QR code is for another server than this store's: the store is
    /// enrolled with another relay, or the relay's certificate authority is not the one the
    /// code names (a code for another district, or a network pretending to be the relay).
    /// Nothing was changed.
    #[error("wrong server: {reason}")]
    WrongServer { reason: String },
    /// Anything else, including an internal error (a bug), with a reason to log.
    #[error("{reason}")]
    Other { reason: String },
}

pub type Result<T, E = ShidaoError> = std::result::Result<T, E>;

/// The one conversion from core errors: a store error, or a record error inside it.
impl From<StoreError> for ShidaoError {
    fn from(e: StoreError) -> Self {
        let reason = e.to_string();
        match e {
            StoreError::Record(r) => r.into(),
            StoreError::NotFound(id) => ShidaoError::NotFound { what: format!("record {id}") },
            // A copy opened before a set-aside: `FormRecord` reopens it before each edit, so this
            // only reaches an app that keeps core records itself.
            StoreError::Stale(_) => ShidaoError::Other { reason },
            StoreError::UnknownTemplate(..) | StoreError::AttachmentNotFound(_) => ShidaoError::NotFound { what: reason },
            StoreError::AttachmentTooLarge { .. } => ShidaoError::InvalidAnswer { field: String::new(), reason },
            StoreError::Corrupt { .. } | StoreError::Schema(_) | StoreError::Sql(_) | StoreError::Io { .. } => {
                ShidaoError::Storage { reason }
            }
            StoreError::Template(_) => ShidaoError::Other { reason },
            StoreError::WrongKey(_) => ShidaoError::WrongKey { reason },
        }
    }
}

impl From<RecordError> for ShidaoError {
    fn from(e: RecordError) -> Self {
        let reason = e.to_string();
        match e {
            RecordError::Invalid(i) => ShidaoError::InvalidAnswer { field: i.field, reason },
            RecordError::UnknownField(field)
            | RecordError::WrongPlace { field, .. }
            | RecordError::TooManyRows { field, .. } => ShidaoError::InvalidAnswer { field, reason },
            RecordError::UnknownRow { .. } | RecordError::UnknownTemplate { .. } => ShidaoError::NotFound { what: reason },
            RecordError::Sealed(_)
            | RecordError::NotAllowed { .. }
            | RecordError::NotReady(_)
            | RecordError::CommentRequired => ShidaoError::NotAllowed { reason },
            RecordError::Corrupt(_) => ShidaoError::Storage { reason },
            RecordError::MissingHistory(_) | RecordError::Automerge(_) => ShidaoError::Other { reason },
        }
    }
}

impl From<InvalidId> for ShidaoError {
    fn from(e: InvalidId) -> Self {
        ShidaoError::InvalidAnswer { field: e.what.to_string(), reason: e.to_string() }
    }
}

/// Sync and enrolment errors: what the app does differs by variant (retry later, enrol again,
/// nothing after a cancel).
impl From<DriverError> for ShidaoError {
    fn from(e: DriverError) -> Self {
        let reason = e.to_string();
        match e {
            DriverError::Network(_) | DriverError::Address(_) | DriverError::Server { .. } => ShidaoError::Network { reason },
            DriverError::Unauthorized { code, reason } => ShidaoError::Unauthorized { code, reason },
            DriverError::Refused { status: 403, .. } => ShidaoError::NotAllowed { reason },
            DriverError::Refused { .. } => ShidaoError::Other { reason },
            DriverError::Cancelled => ShidaoError::Cancelled,
            DriverError::Sync(s) => s.into(),
        }
    }
}

impl From<SyncError> for ShidaoError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Store(s) => s.into(),
            SyncError::NotEnrolled => ShidaoError::Unauthorized { code: "not_enrolled".into(), reason: e.to_string() },
            SyncError::Enrolment(_) => ShidaoError::Storage { reason: e.to_string() },
            SyncError::Protocol(_) | SyncError::Form { .. } | SyncError::Encode(_) => ShidaoError::Other { reason: e.to_string() },
        }
    }
}

/// Runs the body of an exported call; a panic inside becomes [`ShidaoError::Other`].
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(ShidaoError::Other { reason: format!("internal error: {}", panic_message(payload.as_ref())) }),
    }
}

/// [`guard`] for the body of an exported `async` call: a panic while it is polled becomes
/// [`ShidaoError::Other`].
pub(crate) async fn guard_async<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    match CatchUnwind(Box::pin(f)).await {
        Ok(result) => result,
        Err(payload) => Err(ShidaoError::Other { reason: format!("internal error: {}", panic_message(payload.as_ref())) }),
    }
}

/// Polls a future inside `catch_unwind` (boxed, so no pin projection and no `unsafe`).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_other() {
        let r: Result<()> = guard(|| panic!("boom {}", 42));
        assert_eq!(r, Err(ShidaoError::Other { reason: "internal error: boom 42".into() }));
        assert_eq!(guard(|| Ok(7)), Ok(7));
    }

    #[test]
    fn a_panic_in_an_async_call_becomes_other() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let r: Result<()> = rt.block_on(guard_async(async {
            tokio::task::yield_now().await;
            panic!("async boom")
        }));
        assert_eq!(r, Err(ShidaoError::Other { reason: "internal error: async boom".into() }));
        assert_eq!(rt.block_on(guard_async(async { Ok(7) })), Ok(7));
    }
}
