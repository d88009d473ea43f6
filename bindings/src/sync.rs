//! Change notifications, and the place where sync will join the bindings.
//!
//! [`ChangeListener`] works now: the store tells it about every record created, edited or merged
//! through it (`ShidaoStore.merge_record` takes another tablet's copy offline), so a list or
//! form screen can refresh.
//!
//! Sync with the server (`shidao-server`) is not exported yet: these bindings only ever wrap the
//! core's sync (`shidao_core::sync`: the `SyncClient` state machine and the `HttpSync` driver),
//! with no network code of their own. Wrapping it adds, each one call into the core:
//!
//! - `ShidaoStore.enrol(server_url, one_time_code, device_name)` → `HttpSync::enrol`;
//! - `ShidaoStore.sync(token, progress: SyncProgress, cancel: SyncCancel) -> SyncReport`, an
//!   `async` method on tokio (`#[uniffi::export(async_runtime = "tokio")]` and uniffi's `tokio`
//!   feature) → `HttpSync::sync` over the store's own mutex (the core implements `StoreAccess`
//!   for `&Mutex<Store>`, which is what `store::Shared` holds);
//! - a `SyncCancel` object wrapping `shidao_core::sync::http::Cancel` (uniffi has no built-in
//!   cancellation), and a foreign `SyncProgress` trait fed from `http::Progress`;
//! - [`ChangeListener`] told about each record a sync merged, and `DriverError` mapped in the one
//!   conversion in `error.rs`: `Network`/`Address` → `Network`, `Unauthorized` → `Unauthorized`.

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
