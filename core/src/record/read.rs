//! Reading a record: answers with their authors, conflicts, history, rows and review steps.

use automerge::{ChangeHash, ObjId as ExId, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};

use super::{
    get_int, get_str, keys, obj, Answer, AttachmentRef, ComputedValue, FieldRef, Record, Result,
    ScoreValue, SignatureRef, Status, ValidationReport,
};
use crate::ids::RowId;
use crate::template::{CompiledField, FieldKind};

/// Who made a change and when (seconds since 1970, by their clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorship {
    pub user: String,
    pub device: String,
    pub at: i64,
}

/// One value of a field with its author; `answer` is `None` for a clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldValue {
    pub answer: Option<Answer>,
    pub by: Option<Authorship>,
}

/// A field as read: its current answer, the last author, and every concurrent value when two
/// people set it without seeing each other's edit (a conflict; none is ever dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerView {
    pub field: FieldRef,
    pub answer: Option<Answer>,
    pub by: Option<Authorship>,
    /// Empty unless in conflict; then every concurrent value, the shown one last.
    pub conflicts: Vec<FieldValue>,
}

/// A repeat group's rows, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowView {
    pub field: String,
    pub rows: Vec<RowId>,
}

/// One step of review: submit, return (with the comment), approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    pub action: String,
    pub user: String,
    pub comment: Option<String>,
    pub at: Option<i64>,
}

/// One change to a field: the value it left, and who made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub answer: Option<Answer>,
    pub by: Authorship,
    pub change: String,
}

/// Everything a screen or a report needs about a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub id: String,
    pub template: String,
    pub version: u32,
    pub school: String,
    pub created_by: String,
    pub created_at: Option<i64>,
    pub status: Status,
    /// Concurrent status values when two people changed it at once (e.g. a submit and a return).
    pub status_conflicts: Vec<String>,
    /// Answered fields only, in form order.
    pub answers: Vec<AnswerView>,
    pub rows: Vec<RowView>,
    pub review: Vec<ReviewEntry>,
    pub validation: ValidationReport,
    pub computed: Vec<ComputedValue>,
    pub scores: Vec<ScoreValue>,
}

pub(crate) fn parse_author(bytes: &[u8]) -> (String, String) {
    let s = String::from_utf8_lossy(bytes);
    match s.split_once('/') {
        Some((u, d)) => (u.to_string(), d.to_string()),
        None => (s.to_string(), String::new()),
    }
}

impl Record {
    /// The author and time of the change holding an operation.
    pub(crate) fn authorship(&self, op: &ExId) -> Option<Authorship> {
        let hash = self.doc.hash_for_opid(op)?;
        self.change_authorship(&hash)
    }

    fn change_authorship(&self, hash: &ChangeHash) -> Option<Authorship> {
        let meta = self.doc.get_change_meta_by_hash(hash)?;
        let (user, device) = meta.author.as_ref().map(|a| parse_author(a.as_bytes())).unwrap_or_default();
        Some(Authorship { user, device, at: meta.timestamp })
    }

    fn attachment(&self, hash: &str) -> AttachmentRef {
        let meta = obj(&self.doc, &ROOT, keys::FILES).ok().and_then(|files| match self.doc.get(&files, hash) {
            Ok(Some((Value::Object(_), id))) => Some(id),
            _ => None,
        });
        let (name, mime, size) = match meta {
            Some(m) => (
                get_str(&self.doc, &m, "name").unwrap_or_default(),
                get_str(&self.doc, &m, "mime").unwrap_or_default(),
                get_int(&self.doc, &m, "size").unwrap_or(0).max(0) as u64,
            ),
            None => (String::new(), String::new(), 0),
        };
        AttachmentRef { hash: hash.to_string(), name, mime, size }
    }

    /// Turns one stored value into an answer of the field's kind; `None` for a clear, or for a
    /// value of the wrong type (which a well-behaved writer never stores).
    fn decode(&self, field: &CompiledField, value: &Value<'_>, id: &ExId, heads: Option<&[ChangeHash]>) -> Option<Answer> {
        let kind = field.kind();
        match value {
            Value::Scalar(s) => match (kind, s.as_ref()) {
                (_, ScalarValue::Null) => None,
                (FieldKind::Text, ScalarValue::Str(v)) => Some(Answer::Text(v.to_string())),
                (FieldKind::SingleChoice, ScalarValue::Str(v)) => Some(Answer::Choice(v.to_string())),
                (FieldKind::Date, ScalarValue::Str(v)) => Some(Answer::Date(v.to_string())),
                (FieldKind::Time, ScalarValue::Str(v)) => Some(Answer::Time(v.to_string())),
                (FieldKind::Attachment, ScalarValue::Str(v)) => Some(Answer::Attachment(self.attachment(v))),
                (FieldKind::Integer, ScalarValue::Int(n)) => Some(Answer::Integer(*n)),
                (FieldKind::Rating, ScalarValue::Int(n)) => Some(Answer::Rating(*n)),
                (FieldKind::Duration, ScalarValue::Int(n)) => Some(Answer::Duration(*n)),
                (FieldKind::Decimal, ScalarValue::F64(x)) => Some(Answer::Decimal(*x)),
                (FieldKind::Decimal, ScalarValue::Int(n)) => Some(Answer::Decimal(*n as f64)),
                (FieldKind::YesNo, ScalarValue::Boolean(b)) => Some(Answer::Bool(*b)),
                (FieldKind::Counter, ScalarValue::Counter(c)) => Some(Answer::Counter(i64::from(c))),
                _ => None,
            },
            Value::Object(ObjType::Text) if kind == FieldKind::LongText => {
                let t = match heads {
                    Some(h) => self.doc.text_at(id, h).ok()?,
                    None => self.doc.text(id).ok()?,
                };
                if t.is_empty() { None } else { Some(Answer::LongText(t)) }
            }
            Value::Object(ObjType::Map) if kind == FieldKind::MultipleChoice => {
                let ticked: Vec<String> = match heads {
                    Some(h) => self.doc.keys_at(id, h).collect(),
                    None => self.doc.keys(id).collect(),
                };
                // Option order, so the answer reads the same everywhere.
                let ordered: Vec<String> = field
                    .def
                    .options
                    .iter()
                    .filter(|o| ticked.contains(&o.value))
                    .map(|o| o.value.clone())
                    .collect();
                if ordered.is_empty() { None } else { Some(Answer::Choices(ordered)) }
            }
            Value::Object(ObjType::Map) if kind == FieldKind::Signature => {
                let read = |k: &str| match heads {
                    Some(h) => match self.doc.get_at(id, k, h).ok()?? {
                        (Value::Scalar(s), _) => s.as_str().map(str::to_string),
                        _ => None,
                    },
                    None => get_str(&self.doc, id, k),
                };
                Some(Answer::Signature(SignatureRef { user: read("user")?, signer: read("signer"), image: read("image") }))
            }
            _ => None,
        }
    }

    /// The current (winning) answer of a field inside `parent`.
    pub(crate) fn read_answer_at(&self, parent: &ObjId, field: &CompiledField) -> Option<Answer> {
        let (value, id) = self.doc.get(parent, field.id()).ok()??;
        self.decode(field, &value, &id, None)
    }

    fn touched_by(&self, at: &FieldRef) -> Option<Authorship> {
        let touched = obj(&self.doc, &ROOT, keys::TOUCHED).ok()?;
        // Concurrent edits of co-written text all touched it; the latest one is the last author.
        self.doc
            .get_all(&touched, at.path().as_str())
            .ok()?
            .iter()
            .filter_map(|(_, id)| self.authorship(id))
            .max_by_key(|a| a.at)
    }

    /// One field's answer, author and conflicts.
    pub fn answer(&self, at: &FieldRef) -> Result<AnswerView> {
        let field = self.locate(at)?.clone();
        let parent = self.container(at)?;
        Ok(self.answer_in(&parent, &field, at.clone()))
    }

    fn answer_in(&self, parent: &ObjId, field: &CompiledField, at: FieldRef) -> AnswerView {
        let all = self.doc.get_all(parent, field.id()).unwrap_or_default();
        let merges = matches!(field.kind(), FieldKind::LongText | FieldKind::Counter | FieldKind::MultipleChoice);
        let Some((value, id)) = all.last() else {
            return AnswerView { field: at, answer: None, by: None, conflicts: Vec::new() };
        };
        let answer = self.decode(field, value, id, None);
        if merges {
            let by = self.touched_by(&at);
            // An untouched counter still holds its initial zero: nobody answered it.
            let answer = if by.is_none() && field.kind() == FieldKind::Counter { None } else { answer };
            return AnswerView { field: at, answer, by, conflicts: Vec::new() };
        }
        let conflicts = if all.len() > 1 {
            all.iter()
                .map(|(v, i)| FieldValue { answer: self.decode(field, v, i, None), by: self.authorship(i) })
                .collect()
        } else {
            Vec::new()
        };
        AnswerView { field: at, answer, by: self.authorship(id), conflicts }
    }

    /// Every answered field (and every field in conflict), in form order; rows in row order.
    pub fn answers(&self) -> Vec<AnswerView> {
        let mut out = Vec::new();
        for f in self.template.top_fields() {
            match f.kind() {
                FieldKind::Computed | FieldKind::Note => {}
                FieldKind::Repeat => {
                    let Ok(rows) = self.row_ids(f.id()) else { continue };
                    let subs: Vec<&CompiledField> = self.template.sub_fields(f.id()).collect();
                    for row in rows {
                        let Ok(parent) = self.container(&FieldRef::in_row(subs[0].id(), &row)) else { continue };
                        for s in subs.iter().filter(|s| s.kind().holds_answer()) {
                            let v = self.answer_in(&parent, s, FieldRef::in_row(s.id(), &row));
                            if v.answer.is_some() || !v.conflicts.is_empty() {
                                out.push(v);
                            }
                        }
                    }
                }
                _ => {
                    let v = self.answer_in(&self.answers, f, FieldRef::top(f.id()));
                    if v.answer.is_some() || !v.conflicts.is_empty() {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// Every answer in conflict.
    pub fn conflicts(&self) -> Vec<AnswerView> {
        self.answers().into_iter().filter(|a| !a.conflicts.is_empty()).collect()
    }

    /// The review steps, oldest first.
    pub fn review_log(&self) -> Vec<ReviewEntry> {
        let Ok(list) = obj(&self.doc, &ROOT, keys::REVIEW) else { return Vec::new() };
        self.doc
            .list_range(&list, ..)
            .filter_map(|item| {
                let id = item.id();
                let action = get_str(&self.doc, &id, "action")?;
                let user = get_str(&self.doc, &id, "user")?;
                let comment = get_str(&self.doc, &id, "comment");
                let at = self.authorship(&id).map(|a| a.at);
                Some(ReviewEntry { action, user, comment, at })
            })
            .collect()
    }

    /// The comment of the latest return, if the record is returned.
    pub fn return_comment(&self) -> Option<String> {
        if self.status() != Status::Returned {
            return None;
        }
        self.review_log().into_iter().rev().find(|e| e.action == "return").and_then(|e| e.comment)
    }

    /// Every change that set, cleared or edited a field, oldest first, with the value it left.
    pub fn history(&self, at: &FieldRef) -> Result<Vec<HistoryEntry>> {
        let field = self.locate(at)?.clone();
        let parent = self.container(at)?;
        let merges = matches!(field.kind(), FieldKind::LongText | FieldKind::Counter | FieldKind::MultipleChoice);
        // What the field looked like at some heads: op ids of plain values (so setting the same
        // value again still counts as an edit), or the decoded value of a merging object.
        let look = |heads: &[ChangeHash]| -> (String, Option<Answer>) {
            let all = self.doc.get_all_at(&parent, field.id(), heads).unwrap_or_default();
            let Some((v, id)) = all.last() else { return (String::new(), None) };
            let answer = self.decode(&field, v, id, Some(heads));
            let key = if merges {
                format!("{answer:?}")
            } else {
                all.iter().map(|(_, i)| format!("{i:?}")).collect::<Vec<_>>().join(",")
            };
            (key, answer)
        };
        let mut seen: std::collections::HashMap<ChangeHash, String> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for meta in self.doc.get_changes_meta(&[]) {
            let (after_key, answer) = look(&[meta.hash]);
            let before_key = match meta.deps.as_slice() {
                [] => String::new(),
                [one] => match seen.get(one) {
                    Some(k) => k.clone(),
                    None => look(&[*one]).0,
                },
                many => look(many).0,
            };
            if after_key != before_key {
                let (user, device) = meta.author.as_ref().map(|a| parse_author(a.as_bytes())).unwrap_or_default();
                out.push(HistoryEntry {
                    answer,
                    by: Authorship { user, device, at: meta.timestamp },
                    change: meta.hash.to_string(),
                });
            }
            seen.insert(meta.hash, after_key);
        }
        Ok(out)
    }

    /// The record as a screen or report needs it.
    pub fn read(&self) -> RecordView {
        let meta = obj(&self.doc, &ROOT, keys::META).ok();
        let meta_str = |k: &str| meta.as_ref().and_then(|m| get_str(&self.doc, m, k)).unwrap_or_default();
        let created_at = meta.as_ref().and_then(|m| self.doc.get(m, "id").ok().flatten()).and_then(|(_, id)| self.authorship(&id)).map(|a| a.at);
        let statuses = self.doc.get_all(ROOT, keys::STATUS).unwrap_or_default();
        let status_conflicts = if statuses.len() > 1 {
            statuses.iter().filter_map(|(v, _)| v.as_str().map(str::to_string)).collect()
        } else {
            Vec::new()
        };
        let rows = self
            .template
            .top_fields()
            .filter(|f| f.kind() == FieldKind::Repeat)
            .map(|f| RowView { field: f.id().to_string(), rows: self.row_ids(f.id()).unwrap_or_default() })
            .collect();
        let answers = self.answers();
        let evaluated = self.evaluate_with(&answers);
        RecordView {
            id: self.id.to_string(),
            template: self.template.id().to_string(),
            version: self.template.version(),
            school: meta_str("school"),
            created_by: meta_str("created_by"),
            created_at,
            status: self.status(),
            status_conflicts,
            answers,
            rows,
            review: self.review_log(),
            validation: evaluated.report,
            computed: evaluated.computed,
            scores: evaluated.scores,
        }
    }

    /// Everyone who has written to this record.
    pub fn contributors(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .doc
            .get_authors()
            .iter()
            .map(|a| parse_author(a.as_bytes()).0)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// The value of the template's date field, if answered.
    pub fn date(&self) -> Option<String> {
        let df = self.template.def.date_field.as_deref()?;
        let f = self.template.field(df)?;
        match self.read_answer_at(&self.answers, f) {
            Some(Answer::Date(d)) => Some(d),
            _ => None,
        }
    }

    /// Time of the latest change, by its author's clock.
    pub fn updated_at(&self) -> Option<i64> {
        self.doc.get_heads().iter().filter_map(|h| self.change_authorship(h)).map(|a| a.at).max()
    }
}
