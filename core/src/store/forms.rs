//! The form versions a device holds: the built-in ones, and every definition sync delivered or
//! the app added, kept in the `forms` table by content hash.
//!
//! What must stay true:
//! - A definition is stored only when its bytes hash to the name it came with and it loads as a
//!   template; a stored definition is never deleted, so every record opens with the version it
//!   was made with.
//! - New records use the programme's current versions (from the last sync's reference data, set
//!   with [`Store::set_current_forms`]); before any sync, the newest version held of each form.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rusqlite::{params, Connection};

use super::{Result, Store, StoreError};
use crate::template::{builtin_templates, definition_hash, Template, TemplateError};

const CURRENT: &str = "forms.current";

/// The templates held in memory, and which version of each form new records use.
#[derive(Debug, Default)]
pub(super) struct Catalogue {
    held: RwLock<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Every version held, each with the hash it is stored (or built in) under.
    templates: Vec<(String, Arc<Template>)>,
    /// `(id, version)` of the programme's current forms; `None` before any sync said.
    current: Option<Vec<(String, u32)>>,
}

impl Catalogue {
    /// The built-in templates plus every definition stored in `conn`. A stored definition this
    /// build cannot load (written by a newer app) is left in the table and not offered.
    pub(super) fn load(conn: &Connection) -> Result<Catalogue> {
        let mut templates: Vec<(String, Arc<Template>)> = builtin_templates().iter().map(|t| (t.hash(), t.clone())).collect();
        let mut stmt = conn.prepare("SELECT hash, definition FROM forms ORDER BY template_id, version")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (hash, json) = row?;
            if let Ok(t) = Template::from_json(&format!("form {hash}"), &json) {
                insert(&mut templates, hash, Arc::new(t));
            }
        }
        let current = conn
            .query_row("SELECT value FROM store_meta WHERE key = ?1", [CURRENT], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok());
        Ok(Catalogue { held: RwLock::new(Held { templates, current }) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Adds a template, replacing one of the same id and version (a redelivered or re-added form).
fn insert(templates: &mut Vec<(String, Arc<Template>)>, hash: String, t: Arc<Template>) {
    templates.retain(|(_, o)| !(o.id() == t.id() && o.version() == t.version()));
    templates.push((hash, t));
}

impl Store {
    /// The forms new records are made from: one version of each, the programme's current one
    /// once a sync said which, the newest held before that.
    pub fn templates(&self) -> Vec<Arc<Template>> {
        let held = self.forms.read();
        let newest = |id: &str| held.templates.iter().map(|(_, t)| t).filter(|t| t.id() == id).max_by_key(|t| t.version()).cloned();
        match &held.current {
            Some(current) => current
                .iter()
                .filter_map(|(id, v)| {
                    held.templates.iter().map(|(_, t)| t).find(|t| t.id() == id && t.version() == *v).cloned()
                })
                .collect(),
            None => {
                let mut ids: Vec<&str> = Vec::new();
                for (_, t) in &held.templates {
                    if !ids.contains(&t.id()) {
                        ids.push(t.id());
                    }
                }
                ids.into_iter().filter_map(newest).collect()
            }
        }
    }

    /// The template with this id: the given version, or when `version` is `None` the version new
    /// records use (the current one, or the newest held of a form the programme does not list).
    pub fn template(&self, id: &str, version: Option<u32>) -> Option<Arc<Template>> {
        let held = self.forms.read();
        let of_id = || held.templates.iter().map(|(_, t)| t).filter(|t| t.id() == id);
        match version {
            Some(v) => of_id().find(|t| t.version() == v).cloned(),
            None => {
                let current = held.current.as_ref().and_then(|c| c.iter().find(|(c, _)| c == id)).map(|(_, v)| *v);
                current
                    .and_then(|v| of_id().find(|t| t.version() == v).cloned())
                    .or_else(|| of_id().max_by_key(|t| t.version()).cloned())
            }
        }
    }

    /// The content hashes of every definition held (built-in ones as this build writes them).
    pub fn form_hashes(&self) -> HashSet<String> {
        self.forms.read().templates.iter().map(|(h, _)| h.clone()).collect()
    }

    /// Adds a template the app brings (e.g. a district's own version); checked first and kept
    /// on disk under the hash of its definition.
    pub fn add_template(&self, file: &str, json: &str) -> Result<Arc<Template>> {
        let t = Template::from_json(file, json)?;
        let definition = t.definition();
        let hash = definition_hash(&definition);
        self.keep_form(&hash, &definition, Arc::new(t))
    }

    /// Checks a delivered definition against the hash it came with and that it loads, without
    /// storing it: a sync round checks every definition before it stores any.
    pub fn check_form(hash: &str, json: &str) -> Result<Template> {
        let actual = definition_hash(json);
        if actual != hash {
            return Err(StoreError::Template(TemplateError {
                file: format!("form {hash}"),
                field: "-".into(),
                problem: format!("the delivered definition hashes to {actual}, not to the name it came with; nothing was stored"),
            }));
        }
        Ok(Template::from_json(&format!("form {hash}"), json)?)
    }

    /// Stores a delivered definition (checked again as [`Store::check_form`] does).
    pub fn store_form(&self, hash: &str, json: &str) -> Result<Arc<Template>> {
        let t = Store::check_form(hash, json)?;
        self.keep_form(hash, json, Arc::new(t))
    }

    fn keep_form(&self, hash: &str, definition: &str, t: Arc<Template>) -> Result<Arc<Template>> {
        self.conn.execute(
            "INSERT INTO forms (hash, template_id, version, definition, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (hash) DO NOTHING",
            params![hash, t.id(), t.version(), definition, self.opts.clock.now()],
        )?;
        insert(&mut self.forms.write().templates, hash.to_string(), t.clone());
        Ok(t)
    }

    /// Says which version of each form new records use (the programme's current forms).
    pub fn set_current_forms(&self, current: &[(String, u32)]) -> Result<()> {
        // A list of ids and numbers always serialises.
        let json = serde_json::to_string(current).unwrap_or_else(|e| unreachable!("ids serialise: {e}"));
        self.set_meta(CURRENT, &json)?;
        self.forms.write().current = Some(current.to_vec());
        Ok(())
    }
}
