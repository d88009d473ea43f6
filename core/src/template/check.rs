//! Checks a template definition and compiles its expressions; every refusal names the field.

use std::collections::{HashMap, HashSet};

use super::{
    CompiledField, CompiledScore, Field, FieldKind, Parent, Required, Template, TemplateDef,
    TemplateError,
};
use crate::expr::{valid_id, Expr};

struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> TemplateError {
        TemplateError { file: self.file.to_string(), field: field.to_string(), problem: problem.into() }
    }

    fn expr(&self, field: &str, what: &str, src: &str) -> Result<Expr, TemplateError> {
        Expr::parse(src).map_err(|e| self.err(field, format!("{what}: {e}")))
    }

    fn field_shape(&self, f: &Field, in_repeat: bool) -> Result<(), TemplateError> {
        let id = f.id.as_str();
        if !valid_id(id) {
            return Err(self.err(id, "id must match [a-z][a-z0-9_]*"));
        }
        let choice = matches!(f.kind, FieldKind::SingleChoice | FieldKind::MultipleChoice);
        // A computed field may name what its values mean (`1` → 达标, `red` → 滞后).
        if choice || (f.kind == FieldKind::Computed && !f.options.is_empty()) {
            if f.options.is_empty() {
                return Err(self.err(id, "a choice field needs at least one option"));
            }
            let mut seen = HashSet::new();
            for o in &f.options {
                if o.value.trim().is_empty() {
                    return Err(self.err(id, "an option has an empty code"));
                }
                if !seen.insert(o.value.as_str()) {
                    return Err(self.err(id, format!("option code `{}` appears twice", o.value)));
                }
            }
        } else if !f.options.is_empty() {
            return Err(self.err(id, "only choice and computed fields have options"));
        }
        if f.kind == FieldKind::Rating {
            if f.scale.len() < 2 {
                return Err(self.err(id, "a rating needs a scale of at least two levels"));
            }
            let mut seen = HashSet::new();
            for l in &f.scale {
                if !seen.insert(l.value) {
                    return Err(self.err(id, format!("scale level {} appears twice", l.value)));
                }
            }
            // Points: on every level or on none, within 0–100, never fewer for a higher level.
            let with_points = f.scale.iter().filter(|l| l.points.is_some()).count();
            if with_points > 0 {
                if with_points < f.scale.len() {
                    let missing = f.scale.iter().find(|l| l.points.is_none()).map_or(0, |l| l.value);
                    return Err(self.err(id, format!("scale level {missing} has no `points`; give points to every level or to none")));
                }
                let mut levels: Vec<(i64, f64)> = f.scale.iter().map(|l| (l.value, l.points.unwrap_or(0.0))).collect();
                if let Some((v, p)) = levels.iter().find(|(_, p)| !(0.0..=100.0).contains(p)) {
                    return Err(self.err(id, format!("scale level {v} has points {p}; points are 0–100 (percent of the weight)")));
                }
                levels.sort_by_key(|(v, _)| *v);
                if let Some(w) = levels.windows(2).find(|w| w[1].1 < w[0].1) {
                    return Err(self.err(
                        id,
                        format!("scale level {} earns {} points, fewer than level {} ({})", w[1].0, w[1].1, w[0].0, w[0].1),
                    ));
                }
            }
        } else if !f.scale.is_empty() {
            return Err(self.err(id, "only rating fields have a scale"));
        }
        match (f.kind, &f.compute) {
            (FieldKind::Computed, None) => return Err(self.err(id, "a computed field needs `compute`")),
            (k, Some(_)) if k != FieldKind::Computed => {
                return Err(self.err(id, "only computed fields have `compute`"));
            }
            _ => {}
        }
        if f.kind == FieldKind::Repeat {
            if in_repeat {
                return Err(self.err(id, "a repeat group cannot hold another repeat group"));
            }
            if f.fields.is_empty() {
                return Err(self.err(id, "a repeat group needs sub-fields"));
            }
            if let (Some(lo), Some(hi)) = (f.min_rows, f.max_rows) {
                if lo > hi {
                    return Err(self.err(id, "min_rows is above max_rows"));
                }
            }
        } else if !f.fields.is_empty() || f.min_rows.is_some() || f.max_rows.is_some() {
            return Err(self.err(id, "only repeat groups have sub-fields and row bounds"));
        }
        if let (Some(lo), Some(hi)) = (f.min, f.max) {
            if lo > hi {
                return Err(self.err(id, "min is above max"));
            }
        }
        if (f.min.is_some() || f.max.is_some())
            && !matches!(
                f.kind,
                FieldKind::Integer | FieldKind::Decimal | FieldKind::Duration | FieldKind::Counter
            )
        {
            return Err(self.err(id, "only numbers, durations and counters have min and max"));
        }
        if f.constraint.is_some() && !f.kind.holds_answer() {
            return Err(self.err(id, "a field without an answer cannot have a constraint"));
        }
        Ok(())
    }
}

/// Checks `def` and compiles it into a [`Template`].
pub(super) fn compile(file: &str, def: TemplateDef) -> Result<Template, TemplateError> {
    let c = Checker { file };
    if !def.id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        || def.id.is_empty()
    {
        return Err(c.err("-", format!("template id `{}` must be lowercase words joined by `-`", def.id)));
    }
    if def.version == 0 {
        return Err(c.err("-", "version starts at 1"));
    }
    if def.filled_by.is_empty() {
        return Err(c.err("-", "`filled_by` names no role"));
    }

    // 1. Flatten fields in form order, checking each shape and the uniqueness of ids.
    let mut fields: Vec<CompiledField> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut section_ids = HashSet::new();
    let mut push = |f: &Field, section: &str, parent: Parent, fields: &mut Vec<CompiledField>| {
        if index.insert(f.id.clone(), fields.len()).is_some() {
            return Err(c.err(&f.id, "this id is used by another field"));
        }
        let mut def = f.clone();
        def.fields.clear();
        fields.push(CompiledField {
            def,
            section: section.to_string(),
            parent,
            required: None,
            relevant: None,
            constraint: None,
            compute: None,
        });
        Ok(fields.len() - 1)
    };
    for s in &def.sections {
        if !valid_id(&s.id) || !section_ids.insert(s.id.clone()) {
            return Err(c.err(&s.id, "section id is malformed or used twice"));
        }
        if s.fields.is_empty() {
            return Err(c.err(&s.id, "section has no fields"));
        }
        for f in &s.fields {
            c.field_shape(f, false)?;
            let at = push(f, &s.id, Parent::Top, &mut fields)?;
            // Keep the sub-field definitions on the group for readers of the definition.
            fields[at].def.fields = f.fields.clone();
            for sub in &f.fields {
                c.field_shape(sub, true)?;
                push(sub, &s.id, Parent::Repeat(at), &mut fields)?;
            }
        }
    }
    if fields.is_empty() {
        return Err(c.err("-", "the template has no fields"));
    }

    // 2. Compile expressions and check that every reference names a field.
    let known = |e: &Expr, id: &str, what: &str| -> Result<(), TemplateError> {
        for r in e.refs() {
            if !index.contains_key(r) {
                return Err(c.err(id, format!("{what} refers to unknown field `{r}`")));
            }
        }
        Ok(())
    };
    for cf in &mut fields {
        let id = cf.def.id.clone();
        if let Required::When(src) = &cf.def.required {
            let e = c.expr(&id, "required", src)?;
            known(&e, &id, "required")?;
            cf.required = Some(e);
        }
        if let Some(src) = &cf.def.relevant {
            let e = c.expr(&id, "relevant", src)?;
            known(&e, &id, "relevant")?;
            cf.relevant = Some(e);
        }
        if let Some(src) = &cf.def.constraint {
            let e = c.expr(&id, "constraint", src)?;
            known(&e, &id, "constraint")?;
            cf.constraint = Some(e);
        }
        if let Some(src) = &cf.def.compute {
            let e = c.expr(&id, "compute", src)?;
            known(&e, &id, "compute")?;
            if e.refs().contains(&id.as_str()) {
                return Err(c.err(&id, "compute refers to the field itself"));
            }
            cf.compute = Some(e);
        }
        if let Some(link) = &cf.def.links_to {
            if cf.def.kind != FieldKind::Text {
                return Err(c.err(&id, "only text fields link to other records"));
            }
            if link.is_empty() {
                return Err(c.err(&id, "links_to names no template"));
            }
        }
    }
    let mut section_relevant = HashMap::new();
    for s in &def.sections {
        if let Some(src) = &s.relevant {
            let e = c.expr(&s.id, "relevant", src)?;
            known(&e, &s.id, "relevant")?;
            section_relevant.insert(s.id.clone(), e);
        }
    }

    // 3. Computed fields must not depend on each other in a cycle.
    check_cycles(&c, &fields, &index)?;

    // 4. Scores.
    let mut scores = Vec::new();
    let mut score_ids = HashSet::new();
    for s in &def.scores {
        if !valid_id(&s.id) || !score_ids.insert(s.id.clone()) || index.contains_key(&s.id) {
            return Err(c.err(&s.id, "score id is malformed or already used"));
        }
        if s.weights.is_empty() == s.expr.is_none() {
            return Err(c.err(&s.id, "a score needs either weights or expr (not both)"));
        }
        for w in &s.weights {
            match index.get(&w.field).map(|&i| fields[i].def.kind) {
                Some(FieldKind::Rating) => {}
                Some(_) => return Err(c.err(&s.id, format!("weighted field `{}` is not a rating", w.field))),
                None => return Err(c.err(&s.id, format!("weights unknown field `{}`", w.field))),
            }
            if !(w.weight > 0.0 && w.weight.is_finite()) {
                return Err(c.err(&s.id, format!("weight of `{}` must be positive", w.field)));
            }
        }
        let expr = match &s.expr {
            Some(src) => {
                let e = c.expr(&s.id, "expr", src)?;
                for r in e.refs() {
                    if !index.contains_key(r) && !score_ids.contains(r) {
                        return Err(c.err(&s.id, format!("expr refers to unknown field `{r}`")));
                    }
                }
                Some(e)
            }
            None => None,
        };
        scores.push(CompiledScore { def: s.clone(), expr });
    }

    if let Some(df) = &def.date_field {
        match index.get(df).map(|&i| (&fields[i].def.kind, fields[i].parent)) {
            Some((FieldKind::Date, Parent::Top)) => {}
            _ => return Err(c.err(df, "date_field must name a top-level date field")),
        }
    }

    let template = Template { def, fields, section_relevant, scores, index };
    super::meaning::check(file, &template)?;
    Ok(template)
}

fn check_cycles(
    c: &Checker<'_>,
    fields: &[CompiledField],
    index: &HashMap<String, usize>,
) -> Result<(), TemplateError> {
    // Depth-first search over computed → computed references; 0 new, 1 on the stack, 2 done.
    fn visit(
        i: usize,
        fields: &[CompiledField],
        index: &HashMap<String, usize>,
        state: &mut [u8],
    ) -> Option<usize> {
        if state[i] == 2 {
            return None;
        }
        if state[i] == 1 {
            return Some(i);
        }
        state[i] = 1;
        if let Some(e) = &fields[i].compute {
            for r in e.refs() {
                let j = index[r];
                if fields[j].compute.is_some() {
                    if let Some(hit) = visit(j, fields, index, state) {
                        return Some(hit);
                    }
                }
            }
        }
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; fields.len()];
    for i in 0..fields.len() {
        if let Some(hit) = visit(i, fields, index, &mut state) {
            return Err(c.err(&fields[hit].def.id, "computed fields refer to each other in a cycle"));
        }
    }
    Ok(())
}
