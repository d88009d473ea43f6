//! Editing a record's answers and repeat rows: every edit is checked (the rule book, the field,
//! its place) before it touches the document, and is one Automerge change by the editor.

use super::*;

impl Record {
    fn may_edit_answers(&self) -> Result<()> {
        self.permit(rules::Action::Fill).map(|_| ())
    }

    /// An edit of one answer: a plain fill, or, when the field holds concurrent values, the
    /// resolution of that conflict (which reviewers may also make while the record is submitted).
    fn may_edit_answer(&self, parent: &ObjId, field: &CompiledField) -> Result<()> {
        match self.may_edit_answers() {
            Ok(()) => Ok(()),
            Err(e) => {
                let in_conflict = self.doc.get_all(parent, field.id()).map(|v| v.len() > 1).unwrap_or(false);
                if in_conflict { self.permit(rules::Action::ResolveConflict).map(|_| ()) } else { Err(e) }
            }
        }
    }

    /// Sets an answer. The value is checked against the field first; a constraint that can be
    /// judged now (every field it reads is answered) must hold.
    pub fn set_answer(&mut self, at: &FieldRef, answer: Answer) -> Result<()> {
        let field = self.locate(at)?.clone();
        if matches!(answer, Answer::Signature(_)) {
            self.permit(rules::Action::Sign)?;
        } else {
            let parent = self.container(at)?;
            self.may_edit_answer(&parent, &field)?;
        }
        answer::check(&field, &answer)?;
        if let Answer::Signature(s) = &answer {
            if s.user != self.editor.user.as_str() {
                return Err(InvalidAnswer {
                    field: field.def.id.clone(),
                    label: field.def.label.zh.clone(),
                    problem: format!("{} cannot sign as {}", self.editor.user, s.user),
                }
                .into());
            }
        }
        if let Some(problem) = self.check_constraint_now(&field, at, &answer) {
            return Err(problem.into());
        }
        let parent = self.container(at)?;
        let current = self.read_answer_at(&parent, &field);
        let files_meta = match &answer {
            Answer::Attachment(a) => Some(a.clone()),
            _ => None,
        };
        self.change(|tx, _| {
            write_answer(tx, &parent, &field, current.as_ref(), &answer)?;
            if let Some(a) = files_meta {
                let files = match tx.get(ROOT, keys::FILES)? {
                    Some((Value::Object(_), id)) => id,
                    _ => tx.put_object(ROOT, keys::FILES, ObjType::Map)?,
                };
                if tx.get(&files, a.hash.as_str())?.is_none() {
                    let m = tx.put_object(&files, a.hash.as_str(), ObjType::Map)?;
                    tx.put(&m, "name", a.name.as_str())?;
                    tx.put(&m, "mime", a.mime.as_str())?;
                    tx.put(&m, "size", a.size)?;
                }
            }
            if matches!(field.kind(), FieldKind::LongText | FieldKind::Counter | FieldKind::MultipleChoice) {
                touch(tx, at)?;
            }
            Ok(())
        })
    }

    /// Clears an answer (the clear is itself an edit with an author).
    pub fn clear_answer(&mut self, at: &FieldRef) -> Result<()> {
        let field = self.locate(at)?.clone();
        let parent = self.container(at)?;
        self.may_edit_answer(&parent, &field)?;
        let current = self.read_answer_at(&parent, &field);
        self.change(|tx, _| {
            match field.kind() {
                FieldKind::LongText => {
                    if let Some((Value::Object(ObjType::Text), text)) = tx.get(&parent, field.id())? {
                        let len = tx.length(&text);
                        tx.splice_text(&text, 0, len as isize, "")?;
                    }
                    touch(tx, at)?;
                }
                FieldKind::Counter => {
                    if let Some(Answer::Counter(n)) = current {
                        tx.increment(&parent, field.id(), -n)?;
                    }
                    touch(tx, at)?;
                }
                FieldKind::MultipleChoice => {
                    if let Some((Value::Object(ObjType::Map), set)) = tx.get(&parent, field.id())? {
                        let ticked: Vec<String> = tx.keys(&set).collect();
                        for k in ticked {
                            tx.delete(&set, k.as_str())?;
                        }
                    }
                    touch(tx, at)?;
                }
                FieldKind::Repeat | FieldKind::Computed | FieldKind::Note => {
                    return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "holds no answer to clear".into() });
                }
                _ => tx.put(&parent, field.id(), ScalarValue::Null)?,
            }
            Ok(())
        })
    }

    /// Adds to a counter; concurrent increments on other devices add up.
    pub fn increment(&mut self, at: &FieldRef, by: i64) -> Result<()> {
        self.may_edit_answers()?;
        let field = self.locate(at)?.clone();
        if field.kind() != FieldKind::Counter {
            return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "is not a counter".into() });
        }
        let parent = self.container(at)?;
        let now = match self.read_answer_at(&parent, &field) {
            Some(Answer::Counter(n)) => n,
            _ => 0,
        };
        answer::check(&field, &Answer::Counter(now.saturating_add(by)))?;
        self.change(|tx, _| {
            tx.increment(&parent, field.id(), by)?;
            touch(tx, at)
        })
    }

    /// Edits co-written text: deletes `delete` characters at `pos` and inserts `insert`.
    /// Positions count Unicode code points.
    pub fn splice_text(&mut self, at: &FieldRef, pos: usize, delete: usize, insert: &str) -> Result<()> {
        self.may_edit_answers()?;
        let field = self.locate(at)?.clone();
        if field.kind() != FieldKind::LongText {
            return Err(RecordError::WrongPlace { field: field.def.id.clone(), problem: "is not a long text".into() });
        }
        let parent = self.container(at)?;
        let text = match self.doc.get(&parent, field.id())? {
            Some((Value::Object(ObjType::Text), id)) => id,
            _ => return Err(RecordError::Corrupt(format!("long text `{}` has no text object", field.id()))),
        };
        let len = self.doc.length(&text);
        if pos > len || pos + delete > len {
            return Err(InvalidAnswer {
                field: field.def.id.clone(),
                label: field.def.label.zh.clone(),
                problem: format!("edit at {pos}+{delete} is outside the text of {len} characters"),
            }
            .into());
        }
        if len - delete + insert.chars().count() > MAX_LONG_TEXT {
            return Err(InvalidAnswer {
                field: field.def.id.clone(),
                label: field.def.label.zh.clone(),
                problem: format!("text would be longer than {MAX_LONG_TEXT} characters"),
            }
            .into());
        }
        self.change(|tx, _| {
            tx.splice_text(&text, pos, delete as isize, insert)?;
            touch(tx, at)
        })
    }

    /// Signs a signature field as the editor; `signer` names who signed when it is somebody
    /// without an account signing on this tablet (the observed teacher).
    pub fn sign(&mut self, at: &FieldRef, signer: Option<String>, image: Option<String>) -> Result<()> {
        let user = self.editor.user.to_string();
        self.set_answer(at, Answer::Signature(SignatureRef { user, signer, image }))
    }

    /// Adds a row to a repeat group at `index` (the end when `None`); returns its stable id.
    pub fn add_row(&mut self, repeat: &str, index: Option<usize>) -> Result<RowId> {
        self.add_row_as(repeat, index, RowId::random())
    }

    /// Adds a row with a given id (a row set aside and written again keeps its id).
    pub(crate) fn add_row_as(&mut self, repeat: &str, index: Option<usize>, row: RowId) -> Result<RowId> {
        self.may_edit_answers()?;
        let (_, rows, order) = self.group(repeat)?;
        let field = self.template.field(repeat).cloned().ok_or_else(|| RecordError::UnknownField(repeat.into()))?;
        let count = self.row_ids(repeat)?.len();
        if let Some(max) = field.def.max_rows {
            if count >= max as usize {
                return Err(RecordError::TooManyRows { field: repeat.into(), max });
            }
        }
        let len = self.doc.length(&order);
        let at = index.unwrap_or(len).min(len);
        let template = self.template.clone();
        self.change(|tx, _| {
            let row_obj = tx.put_object(&rows, row.as_str(), ObjType::Map)?;
            init_containers(tx, &row_obj, template.sub_fields(repeat))?;
            tx.insert(&order, at, row.as_str())?;
            Ok(())
        })?;
        Ok(row)
    }

    /// Moves a row to position `to` among the rows.
    pub fn move_row(&mut self, repeat: &str, row: &RowId, to: usize) -> Result<()> {
        self.may_edit_answers()?;
        let (_, _, order) = self.group(repeat)?;
        let positions = self.order_positions(&order, row);
        if positions.is_empty() {
            return Err(RecordError::UnknownRow { field: repeat.into(), row: row.to_string() });
        }
        self.change(|tx, _| {
            for p in positions.iter().rev() {
                tx.delete(&order, *p)?;
            }
            let len = tx.length(&order);
            tx.insert(&order, to.min(len), row.as_str())?;
            Ok(())
        })
    }

    /// Removes a row and its answers.
    pub fn remove_row(&mut self, repeat: &str, row: &RowId) -> Result<()> {
        self.may_edit_answers()?;
        let (_, rows, order) = self.group(repeat)?;
        if self.doc.get(&rows, row.as_str())?.is_none() {
            return Err(RecordError::UnknownRow { field: repeat.into(), row: row.to_string() });
        }
        let positions = self.order_positions(&order, row);
        self.change(|tx, _| {
            for p in positions.iter().rev() {
                tx.delete(&order, *p)?;
            }
            tx.delete(&rows, row.as_str())?;
            Ok(())
        })
    }

    fn order_positions(&self, order: &ObjId, row: &RowId) -> Vec<usize> {
        self.doc
            .list_range(order, ..)
            .enumerate()
            .filter(|(_, item)| matches!(&item.value, ValueRef::Scalar(ScalarValueRef::Str(s)) if s.as_ref() == row.as_str()))
            .map(|(i, _)| i)
            .collect()
    }

    fn group(&self, repeat: &str) -> Result<(ObjId, ObjId, ObjId)> {
        let f = self.template.field(repeat).ok_or_else(|| RecordError::UnknownField(repeat.into()))?;
        if f.kind() != FieldKind::Repeat {
            return Err(RecordError::WrongPlace { field: repeat.into(), problem: "is not a repeat group".into() });
        }
        let group = obj(&self.doc, &self.answers, repeat)?;
        let rows = obj(&self.doc, &group, keys::ROWS)?;
        let order = obj(&self.doc, &group, keys::ORDER)?;
        Ok((group, rows, order))
    }

    /// Row ids of a repeat group in display order: the order list without duplicates or removed
    /// rows, then any row a concurrent reorder left out of the list.
    pub fn row_ids(&self, repeat: &str) -> Result<Vec<RowId>> {
        let (_, rows, order) = self.group(repeat)?;
        let present: std::collections::BTreeSet<String> = self.doc.keys(&rows).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in self.doc.list_range(&order, ..) {
            if let ValueRef::Scalar(ScalarValueRef::Str(id)) = &item.value {
                if present.contains(id.as_ref()) && seen.insert(id.to_string()) {
                    out.extend(RowId::new(id.as_ref()).ok());
                }
            }
        }
        for id in present {
            if !seen.contains(&id) {
                out.extend(RowId::new(id).ok());
            }
        }
        Ok(out)
    }
}

/// Marks a co-written field as edited by this change (its last author).
fn touch(tx: &mut Transaction<'_>, at: &FieldRef) -> Result<()> {
    let touched = match tx.get(ROOT, keys::TOUCHED)? {
        Some((Value::Object(_), id)) => id,
        _ => tx.put_object(ROOT, keys::TOUCHED, ObjType::Map)?,
    };
    tx.put(&touched, at.path().as_str(), ScalarValue::Null)?;
    Ok(())
}

fn write_answer(
    tx: &mut Transaction<'_>,
    parent: &ObjId,
    field: &CompiledField,
    current: Option<&Answer>,
    answer: &Answer,
) -> Result<()> {
    let key = field.id();
    // Automerge keeps the existing op when a put repeats the winning value, even when it resolves
    // a conflict; a null first makes the pick a new op, so it is recorded as this editor's edit.
    if tx.get_all(parent, key)?.len() > 1 {
        tx.put(parent, key, ScalarValue::Null)?;
    }
    match answer {
        Answer::Text(s) | Answer::Choice(s) | Answer::Date(s) | Answer::Time(s) => tx.put(parent, key, s.as_str())?,
        Answer::Integer(n) | Answer::Rating(n) | Answer::Duration(n) => tx.put(parent, key, *n)?,
        Answer::Decimal(x) => tx.put(parent, key, *x)?,
        Answer::Bool(b) => tx.put(parent, key, *b)?,
        Answer::Attachment(a) => tx.put(parent, key, a.hash.as_str())?,
        Answer::LongText(s) => {
            let text = match tx.get(parent, key)? {
                Some((Value::Object(ObjType::Text), id)) => id,
                _ => tx.put_object(parent, key, ObjType::Text)?,
            };
            tx.update_text(&text, s)?;
        }
        Answer::Counter(n) => {
            let now = match current {
                Some(Answer::Counter(c)) => *c,
                _ => 0,
            };
            if *n != now {
                tx.increment(parent, key, n - now)?;
            }
        }
        Answer::Choices(want) => {
            let set = match tx.get(parent, key)? {
                Some((Value::Object(ObjType::Map), id)) => id,
                _ => tx.put_object(parent, key, ObjType::Map)?,
            };
            let have: Vec<String> = tx.keys(&set).collect();
            for h in &have {
                if !want.contains(h) {
                    tx.delete(&set, h.as_str())?;
                }
            }
            for w in want {
                if !have.contains(w) {
                    tx.put(&set, w.as_str(), true)?;
                }
            }
        }
        Answer::Signature(s) => {
            let m = tx.put_object(parent, key, ObjType::Map)?;
            tx.put(&m, "user", s.user.as_str())?;
            if let Some(n) = &s.signer {
                tx.put(&m, "signer", n.as_str())?;
            }
            if let Some(i) = &s.image {
                tx.put(&m, "image", i.as_str())?;
            }
        }
    }
    Ok(())
}
