//! Presets: the rule books, schools and targets of the five programme documents, as data files
//! (`server/presets/<name>.json`, embedded in the server). A preset holds only what its
//! document states; [`apply`] creates a programme from one.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::rules::{Rules, Source};
use crate::error::{AppError, AppResult};

/// `(name, JSON)` of every preset.
pub const PRESETS: &[(&str, &str)] = &[
    ("yangpu", include_str!("../../presets/yangpu.json")),
    ("qingdao", include_str!("../../presets/qingdao.json")),
    ("yufeng", include_str!("../../presets/yufeng.json")),
    ("taicang", include_str!("../../presets/taicang.json")),
    ("ouhai", include_str!("../../presets/ouhai.json")),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The programme's name as its document gives it.
    pub programme_name: String,
    pub rules: Rules,
    #[serde(default)]
    pub schools: Vec<PresetSchool>,
    #[serde(default)]
    pub tasks: Vec<PresetTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSchool {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub key_project: String,
    pub source: Source,
}

/// A programme-wide target. A document that gives no dates for it (青岛) leaves `start` and
/// `due` out: the task is then not created, and [`apply`] says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetTask {
    pub id: String,
    pub title: String,
    pub target: f64,
    pub unit: String,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub due: Option<String>,
    pub source: Source,
}
