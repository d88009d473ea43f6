//! The six templates shipped with the product, embedded in the binary and checked once.

use std::sync::{Arc, OnceLock};

use super::Template;

macro_rules! builtin_files {
    ($($id:literal),* $(,)?) => {
        /// Ids of the built-in templates, in the order the forms are used.
        pub const BUILTIN_IDS: &[&str] = &[$($id),*];
        const SOURCES: &[(&str, &str)] =
            &[$(($id, include_str!(concat!("../../templates/", $id, ".json")))),*];
    };
}

builtin_files!(
    "classroom-observation",
    "inspection-visit",
    "supervision-evaluation",
    "guidance-log",
    "baseline-assessment",
    "task-progress",
);

/// All built-in templates. They are checked by the test suite, so a broken one never ships;
/// should one still fail here it panics at first use with the loader's message.
pub fn builtin_templates() -> &'static [Arc<Template>] {
    static ALL: OnceLock<Vec<Arc<Template>>> = OnceLock::new();
    ALL.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(id, json)| {
                let file = format!("core/templates/{id}.json");
                match Template::from_json(&file, json) {
                    Ok(t) => Arc::new(t),
                    Err(e) => panic!("built-in template is broken: {e}"),
                }
            })
            .collect()
    })
}

/// The built-in template with this id.
pub fn builtin(id: &str) -> Option<Arc<Template>> {
    builtin_templates().iter().find(|t| t.id() == id).cloned()
}

/// The embedded JSON of a built-in template.
pub fn source(id: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
}
