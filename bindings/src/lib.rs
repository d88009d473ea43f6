//! shidao-bindings: `shidao-core` for the Android (Kotlin) and iPad (Swift) apps, through uniffi
//! proc-macros (no UDL). Python bindings come from the same library and serve the tests.
//!
//! A thin layer: each exported method calls one core method; the core's own types cross as they
//! are where they can (`types.rs`), and the few defined here hold labels resolved to the app's
//! language or answers displayed for a person.
//!
//! - [`ShidaoStore`]: the device's store: templates, record lists, creating and opening records,
//!   files, merging copies of records, the change listener.
//! - [`FormRecord`]: one open record: reading (answers, authors, conflicts, validation, computed
//!   values, scores, review) and every edit, each stored before the call returns.
//! - [`FieldEditor`]: one field of an open record bound for repeated edits, with typed setters
//!   that cross the boundary without strings (the cheap path for an input widget).
//! - Sync with `shidao-server` (`sync.rs`): `ShidaoStore.enrol`, the `async` `ShidaoStore.sync`
//!   with [`SyncProgress`] and [`SyncCancel`], and the [`ChangeListener`] told about every record
//!   a sync merged.
//! - [`ShidaoError`]: the few errors an app can act on.
//!
//! What must stay true: no panic crosses the boundary (every call runs inside `error::guard`),
//! and generated Kotlin, Swift and Python sources are build output, never committed
//! (`bindings/generate.sh` writes them under `generated/`).

uniffi::setup_scaffolding!("shidao");

mod error;
mod field;
mod record;
mod store;
mod sync;
mod types;

pub use error::ShidaoError;
pub use field::FieldEditor;
pub use record::FormRecord;
pub use store::ShidaoStore;
pub use sync::{ChangeListener, Enrolment, FormsListener, SyncCancel, SyncProgress, SyncRefusal, SyncReport, SyncStatus};
pub use types::*;
