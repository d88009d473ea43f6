//! shidao-core: offline inspection forms for school-improvement programmes.
//!
//! - [`template`]: versioned form templates (JSON, Chinese and English) and their checks;
//! - [`expr`]: the small expression language of relevance, constraints and scores;
//! - [`record`]: one Automerge document per filled form, edited field by field, merged without
//!   losing anyone's edit, read with authors, conflicts, history, validation and scores;
//! - [`store`]: the device's SQLite store of records.
//!
//! The template, expression and record layers do no I/O; only [`store`] touches the disk.

pub mod date;
pub mod expr;
pub mod ids;
pub mod migrate;
pub mod record;
pub mod sample;
pub mod store;
pub mod sync;
pub mod template;

pub use ids::{DeviceId, InvalidId, RecordId, RowId, SchoolId, UserId};
pub use record::{Answer, Clock, Editor, FieldRef, NewRecord, Record, RecordError, Status};
pub use template::{builtin, builtin_templates, Role, Template, TemplateError};
