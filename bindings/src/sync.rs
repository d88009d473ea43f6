//! Change notifications, and the place where sync will join the bindings.
//!
//! [`ChangeListener`] works now: the store tells it about every record created, edited or merged
//! through it (`ShidaoStore.merge_record` takes another tablet's copy offline), so a list or
//! form screen can refresh.
//!
//! Sync with the server (`shidao-server`) is not exported yet: the protocol is being written in
//! `shidao-core` (`core/src/sync/`), and these bindings only ever wrap it, with no network code of
//! their own. When it lands, this module gains, each one call into the core:
//!
//! - `ShidaoStore.enrol(server_url, one_time_code, editor)`: registers this tablet;
//! - `ShidaoStore.sync(progress: SyncProgress) -> SyncReport`, an `async` method run on tokio
//!   (`#[uniffi::export(async_runtime = "tokio")]` and uniffi's `tokio` feature);
//! - a `SyncHandle` object (or a `CancelToken` passed in) whose `cancel()` stops a running sync,
//!   since uniffi has no built-in cancellation;
//! - a foreign `SyncProgress` trait (`on_progress(done, total)`);
//! - [`ChangeListener`] called for each record a sync merged, and the `Network` and
//!   `Unauthorized` cases of `ShidaoError` produced by the one conversion in `error.rs`.

/// Told when a record of the store changed, so a screen showing it can refresh. Implemented by
/// the app (Kotlin `ChangeListener`, Swift `ChangeListener` protocol).
///
/// Called on the thread that made the change, after it is on disk and with no lock held, so it
/// may read the record at once; keep it short (post to the UI thread). An exception thrown by it
/// is ignored.
#[uniffi::export(foreign)]
pub trait ChangeListener: Send + Sync {
    /// `record_id` changed: created, edited, or merged from another copy.
    fn on_record_changed(&self, record_id: String);
}
