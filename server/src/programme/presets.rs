//! Presets: the rule books, schools and targets of the five programme documents, as data files
//! (`server/presets/<name>.json`, embedded in the server). A preset holds only what its
//! document states; [`apply`] creates a programme from one.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::rules::{Rules, Source};
use crate::accounts;
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

/// The names of the presets.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// A preset by name; an unknown name is refused with the list of presets.
pub fn preset(name: &str) -> AppResult<Preset> {
    let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name) else {
        return Err(AppError::BadRequest(format!("unknown preset `{name}` (one of {})", names().join(", "))));
    };
    let p: Preset = serde_json::from_str(text).map_err(|e| AppError::Internal(format!("preset {name}: {e}")))?;
    p.rules.validate().map_err(|e| AppError::Internal(format!("preset {name}: {e}")))?;
    Ok(p)
}

/// Creates (or updates) programme `id` from a preset: its rule book, schools and targets. All
/// of it or nothing. Returns what it did, one line each, including the targets it could not
/// create because the document gives them no dates.
pub fn apply(conn: &Connection, id: &str, name: &str, preset_name: &str, by: &str, now: i64) -> AppResult<Vec<String>> {
    let p = preset(preset_name)?;
    super::store::atomically(conn, |tx| {
        let mut out = Vec::new();
        accounts::add_programme(tx, id, name, None)?;
        // Terms the admin already entered stay.
        let mut rules = p.rules.clone();
        let old = super::store::load(tx, id)?;
        if rules.terms.is_empty() {
            rules.terms = old.terms;
        }
        let changed = super::store::save_with_preset(tx, id, &rules, Some(preset_name), by, now)?;
        out.push(format!("rule book of {id} from preset {preset_name}: {changed} rule(s) set"));
        for s in &p.schools {
            accounts::add_school(tx, id, &s.id, &s.name, &s.category, &s.key_project)?;
        }
        if !p.schools.is_empty() {
            out.push(format!("{} school(s) from the document", p.schools.len()));
        }
        let mut made = 0;
        for t in &p.tasks {
            match (&t.start, &t.due) {
                (Some(start), Some(due)) => {
                    accounts::add_task_from(tx, id, None, &t.id, &t.title, t.target, &t.unit, start, due, &t.source.sentence)?;
                    made += 1;
                }
                _ => out.push(format!(
                    "target {} ({} {}{}) not made a task: the document gives no dates; add it with `admin add-task --programme {id} --id {} --start … --due …`",
                    t.id, t.title, t.target, t.unit, t.id
                )),
            }
        }
        if made > 0 {
            out.push(format!("{made} task(s) from the document"));
        }
        if rules.terms.is_empty() && !rules.lesson_quotas.is_empty() {
            out.push(format!("no terms yet: add the semesters with `admin add-term --programme {id} --name … --start … --end …`"));
        }
        Ok(out)
    })
}
