//! Whether one version of a form may follow another.
//!
//! Records keep the version they were made with, so a new version never changes how an old
//! record reads; the rule is about the meaning of field ids across versions, which exports,
//! reports and merged records rely on. A new version keeps every field id it had, with the same
//! kind and the same place (top of the form or the same repeat group); it may add fields,
//! options and scale levels, reword labels, and change constraints, relevance and bounds. It may
//! drop a field, an option or a scale level only when no record holds an answer that uses it
//! (the caller answers that). This is ODK's rule for form versions.
//!
//! What must stay true: the check reads templates only (no I/O); every refusal names the field.

use super::{FieldKind, Parent, Template, TemplateError};

/// Something an older version had that a newer one drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped<'a> {
    Field { field: &'a str },
    Option { field: &'a str, value: &'a str },
    Level { field: &'a str, value: i64 },
}

/// Checks that `new` may follow `old` (same id, higher version). `in_use` says whether records
/// use what the new version drops; a dropped thing in use refuses the new version.
pub fn check_successor(old: &Template, new: &Template, in_use: &mut dyn FnMut(&Dropped<'_>) -> bool) -> Result<(), TemplateError> {
    let file = format!("{} v{}", new.id(), new.version());
    let refuse = |field: &str, problem: String| TemplateError { file: file.clone(), field: field.to_string(), problem };
    if old.id() != new.id() {
        return Err(refuse("-", format!("is form `{}`, not `{}`", new.id(), old.id())));
    }
    if new.version() <= old.version() {
        return Err(refuse("-", format!("version {} must be higher than the published version {}", new.version(), old.version())));
    }
    let group_of = |t: &Template, parent: Parent| match parent {
        Parent::Top => None,
        Parent::Repeat(i) => t.fields.get(i).map(|g| g.id().to_string()),
    };
    for f in &old.fields {
        let Some(n) = new.field(f.id()) else {
            if in_use(&Dropped::Field { field: f.id() }) {
                return Err(refuse(f.id(), format!("is removed, but records of v{} hold answers to it", old.version())));
            }
            continue;
        };
        if n.kind() != f.kind() {
            return Err(refuse(
                f.id(),
                format!("changes kind from {:?} to {:?}; give the new field a new id", f.kind(), n.kind()).to_lowercase(),
            ));
        }
        let (was, is) = (group_of(old, f.parent), group_of(new, n.parent));
        if was != is {
            let place = |g: &Option<String>| g.as_ref().map_or("the top of the form".to_string(), |g| format!("repeat group `{g}`"));
            return Err(refuse(f.id(), format!("moves from {} to {}; give the new field a new id", place(&was), place(&is))));
        }
        if matches!(f.kind(), FieldKind::SingleChoice | FieldKind::MultipleChoice) {
            for o in &f.def.options {
                if n.option(&o.value).is_none() && in_use(&Dropped::Option { field: f.id(), value: &o.value }) {
                    return Err(refuse(f.id(), format!("drops option `{}`, which records of v{} use", o.value, old.version())));
                }
            }
        }
        if f.kind() == FieldKind::Rating {
            for l in &f.def.scale {
                if !n.def.scale.iter().any(|m| m.value == l.value) && in_use(&Dropped::Level { field: f.id(), value: l.value }) {
                    return Err(refuse(f.id(), format!("drops scale level {}, which records of v{} use", l.value, old.version())));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(version: u32, fields: &str) -> Template {
        let json = format!(
            r#"{{"id": "t", "version": {version}, "title": {{"zh": "表", "en": "Form"}}, "filled_by": ["inspector"],
                "sections": [{{"id": "s", "label": {{"zh": "一", "en": "One"}}, "fields": [{fields}]}}]}}"#
        );
        Template::from_json("t.json", &json).expect("template")
    }

    const L: &str = r#""label": {"zh": "字段", "en": "Field"}"#;
    fn opts(values: &[&str]) -> String {
        values.iter().map(|v| format!(r#"{{"value": "{v}", "label": {{"zh": "{v}", "en": "{v}"}}}}"#)).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn adding_fields_and_options_and_relabelling_is_allowed() {
        let v1 = form(1, &format!(r#"{{"id": "a", "kind": "single_choice", {L}, "options": [{}]}}"#, opts(&["x", "y"])));
        let v2 = form(
            2,
            &format!(
                r#"{{"id": "a", "kind": "single_choice", "label": {{"zh": "新", "en": "New"}}, "options": [{}]}}, {{"id": "b", "kind": "text", {L}}}"#,
                opts(&["x", "y", "z"])
            ),
        );
        check_successor(&v1, &v2, &mut |_| true).expect("compatible");
    }

    #[test]
    fn kind_changes_moves_and_dropped_things_in_use_are_refused_naming_the_field() {
        let v1 = form(
            1,
            &format!(
                r#"{{"id": "a", "kind": "integer", {L}}}, {{"id": "c", "kind": "multiple_choice", {L}, "options": [{}]}},
                   {{"id": "g", "kind": "repeat", {L}, "fields": [{{"id": "h", "kind": "text", {L}}}]}}"#,
                opts(&["x", "y"])
            ),
        );
        let same_rest = format!(
            r#"{{"id": "c", "kind": "multiple_choice", {L}, "options": [{}]}}, {{"id": "g", "kind": "repeat", {L}, "fields": [{{"id": "h", "kind": "text", {L}}}]}}"#,
            opts(&["x", "y"])
        );
        let e = check_successor(&v1, &form(2, &format!(r#"{{"id": "a", "kind": "text", {L}}}, {same_rest}"#)), &mut |_| false)
            .expect_err("kind change");
        assert_eq!(e.field, "a");
        assert!(e.problem.contains("changes kind"), "{e}");

        let moved = format!(
            r#"{{"id": "a", "kind": "integer", {L}}}, {{"id": "h", "kind": "text", {L}}}, {{"id": "c", "kind": "multiple_choice", {L}, "options": [{}]}},
               {{"id": "g", "kind": "repeat", {L}, "fields": [{{"id": "h2", "kind": "text", {L}}}]}}"#,
            opts(&["x", "y"])
        );
        let e = check_successor(&v1, &form(2, &moved), &mut |_| false).expect_err("moved");
        assert_eq!(e.field, "h");
        assert!(e.problem.contains("moves from repeat group `g`"), "{e}");

        let dropped_option = format!(
            r#"{{"id": "a", "kind": "integer", {L}}}, {{"id": "c", "kind": "multiple_choice", {L}, "options": [{}]}},
               {{"id": "g", "kind": "repeat", {L}, "fields": [{{"id": "h", "kind": "text", {L}}}]}}"#,
            opts(&["x"])
        );
        let v2 = form(2, &dropped_option);
        let e = check_successor(&v1, &v2, &mut |d| *d == Dropped::Option { field: "c", value: "y" }).expect_err("option in use");
        assert_eq!(e.field, "c");
        assert!(e.problem.contains("drops option `y`"), "{e}");
        check_successor(&v1, &v2, &mut |_| false).expect("an unused option may go");

        let dropped_field = form(2, &same_rest);
        let e = check_successor(&v1, &dropped_field, &mut |d| matches!(d, Dropped::Field { field: "a" })).expect_err("field in use");
        assert_eq!(e.field, "a");
        check_successor(&v1, &dropped_field, &mut |_| false).expect("an unused field may go");
    }

    #[test]
    fn the_version_must_rise() {
        let v1 = form(3, &format!(r#"{{"id": "a", "kind": "integer", {L}}}"#));
        let e = check_successor(&v1, &form(3, &format!(r#"{{"id": "a", "kind": "integer", {L}}}"#)), &mut |_| false).expect_err("same");
        assert!(e.problem.contains("must be higher"), "{e}");
    }
}
