//! Programme rules as data: the rule book of each programme ([`rules`]), its storage with the
//! history of every change ([`store`]), and the presets for the five programme documents
//! ([`presets`]). docs/programme.md describes the format and each preset.

pub mod compliance;
pub mod presets;
pub mod rules;
pub mod store;

pub use rules::{load, Rules};
