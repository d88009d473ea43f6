//! `FieldEditor`: one field of one open record (in one row, for a repeat group's field), bound
//! once so that repeated edits cross the boundary with no string to convert.
//!
//! Each string, enum or optional argument of a call costs the generated Kotlin and Swift code an
//! extra allocation across the boundary before the call itself. An input widget that edits the
//! same field many times (a stepper, a counter tapped through a lesson, a rating row) binds a
//! `FieldEditor` when it is drawn and calls its typed setters: a number, a flag or a level is
//! then a single crossing with primitive arguments (docs/benchmarks.md has the figures).
//!
//! Every setter is the same edit as `FormRecord.set_answer` with the matching `AnswerValue`: the
//! same checks, the same error naming the field, stored before the call returns.

use std::sync::Arc;

use shidao_core::{Answer, FieldRef, RecordError};

use crate::error::{guard, Result};
use crate::record::FormRecord;
use crate::types::{field_ref, AnswerValue};

/// One field of an open record, from `FormRecord.field`. Holds the record open.
#[derive(Debug, uniffi::Object)]
pub struct FieldEditor {
    record: Arc<FormRecord>,
    at: FieldRef,
}

impl FieldEditor {
    /// Binds `field` (in `row`, for a repeat group's field): the field must be in the record's
    /// template; whether it sits where `row` says is checked on each edit, as for every edit.
    pub(crate) fn bind(record: Arc<FormRecord>, field: String, row: Option<String>) -> Result<Arc<Self>> {
        guard(|| {
            let at = field_ref(field, row)?;
            record.read_with(|r| match r.template().field(&at.field) {
                Some(_) => Ok(()),
                None => Err(RecordError::UnknownField(at.field.clone()).into()),
            })?;
            Ok(Arc::new(FieldEditor { record, at }))
        })
    }

    fn set(&self, answer: Answer) -> Result<()> {
        guard(|| self.record.edit(|r| r.set_answer(&self.at, answer)))
    }
}

#[uniffi::export]
impl FieldEditor {
    /// The field's id.
    pub fn field_id(&self) -> String {
        self.at.field.clone()
    }

    /// The row's id, for a field inside a repeat group.
    pub fn row(&self) -> Option<String> {
        self.at.row.as_ref().map(|r| r.to_string())
    }

    /// Sets any kind of answer (as `FormRecord.set_answer`).
    pub fn set_answer(&self, answer: AnswerValue) -> Result<()> {
        self.set(answer.into())
    }

    /// For an `Integer` field.
    pub fn set_integer(&self, value: i64) -> Result<()> {
        self.set(Answer::Integer(value))
    }

    /// For a `Decimal` field.
    pub fn set_decimal(&self, value: f64) -> Result<()> {
        self.set(Answer::Decimal(value))
    }

    /// For a `Rating` field: a scale level's `value`.
    pub fn set_rating(&self, value: i64) -> Result<()> {
        self.set(Answer::Rating(value))
    }

    /// For a `YesNo` field.
    pub fn set_bool(&self, value: bool) -> Result<()> {
        self.set(Answer::Bool(value))
    }

    /// For a `Duration` field, in minutes.
    pub fn set_duration(&self, minutes: i64) -> Result<()> {
        self.set(Answer::Duration(minutes))
    }

    /// For a `SingleChoice` field: an option's `value` code.
    pub fn set_choice(&self, value: String) -> Result<()> {
        self.set(Answer::Choice(value))
    }

    /// For a `Text` field.
    pub fn set_text(&self, value: String) -> Result<()> {
        self.set(Answer::Text(value))
    }

    /// Adds `by` (may be negative) to a `Counter` field; taps on several tablets add up.
    pub fn increment(&self, by: i64) -> Result<()> {
        guard(|| self.record.edit(|r| r.increment(&self.at, by)))
    }

    /// Edits a `LongText` field: deletes `delete` characters at `pos`, then inserts `insert`
    /// (positions count Unicode code points).
    pub fn splice_text(&self, pos: u32, delete: u32, insert: String) -> Result<()> {
        guard(|| self.record.edit(|r| r.splice_text(&self.at, pos as usize, delete as usize, &insert)))
    }

    /// Clears the answer (the clear has an author too).
    pub fn clear(&self) -> Result<()> {
        guard(|| self.record.edit(|r| r.clear_answer(&self.at)))
    }
}
