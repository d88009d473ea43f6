//! Answers: the values a person enters, checked against the field they are meant for.
//!
//! Checks here are the ones that never depend on other answers (type, options, scale, bounds,
//! formats, sizes). A value that fails them is refused with a message naming the field, and the
//! record is left untouched.

use serde::{Deserialize, Serialize};

use crate::date::parse_date;
use crate::expr::EValue;
use crate::template::{CompiledField, FieldKind, Label};

/// Longest one-line text, in characters.
pub const MAX_TEXT: usize = 2_000;
/// Longest co-written text, in characters.
pub const MAX_LONG_TEXT: usize = 200_000;

/// A file referenced by an attachment field: bytes live outside the record, by content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// Lowercase hex SHA-256 of the bytes.
    pub hash: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
}

/// A signature. `user` is always the person who made the edit; `signer` names who signed when
/// that is somebody without an account (the observed teacher, the school's principal) signing on
/// that user's tablet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRef {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Hash of the stroke image, kept like an attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// A value of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Answer {
    Text(String),
    LongText(String),
    Integer(i64),
    Decimal(f64),
    Choice(String),
    Choices(Vec<String>),
    Rating(i64),
    Bool(bool),
    /// `YYYY-MM-DD`.
    Date(String),
    /// `HH:MM`.
    Time(String),
    /// Minutes.
    Duration(i64),
    Counter(i64),
    Attachment(AttachmentRef),
    Signature(SignatureRef),
}

/// An answer that does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` ({label}): {problem}")]
pub struct InvalidAnswer {
    pub field: String,
    /// The field's label in Chinese.
    pub label: String,
    pub problem: String,
}

impl Answer {
    /// The kind of field this answer belongs in.
    pub fn kind(&self) -> FieldKind {
        match self {
            Answer::Text(_) => FieldKind::Text,
            Answer::LongText(_) => FieldKind::LongText,
            Answer::Integer(_) => FieldKind::Integer,
            Answer::Decimal(_) => FieldKind::Decimal,
            Answer::Choice(_) => FieldKind::SingleChoice,
            Answer::Choices(_) => FieldKind::MultipleChoice,
            Answer::Rating(_) => FieldKind::Rating,
            Answer::Bool(_) => FieldKind::YesNo,
            Answer::Date(_) => FieldKind::Date,
            Answer::Time(_) => FieldKind::Time,
            Answer::Duration(_) => FieldKind::Duration,
            Answer::Counter(_) => FieldKind::Counter,
            Answer::Attachment(_) => FieldKind::Attachment,
            Answer::Signature(_) => FieldKind::Signature,
        }
    }

    /// Whether the answer says nothing (empty text, no option ticked).
    pub fn is_blank(&self) -> bool {
        match self {
            Answer::Text(s) | Answer::LongText(s) => s.trim().is_empty(),
            Answer::Choices(v) => v.is_empty(),
            _ => false,
        }
    }

    /// The value as expressions see it.
    pub fn to_evalue(&self) -> EValue {
        match self {
            Answer::Text(s) | Answer::LongText(s) | Answer::Choice(s) | Answer::Date(s) | Answer::Time(s) => {
                if s.is_empty() { EValue::Empty } else { EValue::Str(s.clone()) }
            }
            Answer::Integer(n) | Answer::Rating(n) | Answer::Duration(n) | Answer::Counter(n) => {
                EValue::Num(*n as f64)
            }
            Answer::Decimal(x) => EValue::Num(*x),
            Answer::Choices(v) => EValue::List(v.iter().map(|s| EValue::Str(s.clone())).collect()),
            Answer::Bool(b) => EValue::Bool(*b),
            Answer::Attachment(a) => EValue::Str(a.hash.clone()),
            Answer::Signature(s) => EValue::Str(s.signer.clone().unwrap_or_else(|| s.user.clone())),
        }
    }

    /// A short human-readable form of the answer, with option labels in `lang`.
    pub fn display(&self, field: &CompiledField, lang: &str) -> String {
        let opt = |code: &str| field.option(code).map_or(code.to_string(), |c| c.label.get(lang).to_string());
        match self {
            Answer::Choice(c) => opt(c),
            Answer::Choices(v) => v.iter().map(|c| opt(c)).collect::<Vec<_>>().join("、"),
            Answer::Rating(n) => match field.def.scale.iter().find(|l| l.value == *n) {
                Some(l) => format!("{n} {}", l.label.get(lang)),
                None => n.to_string(),
            },
            Answer::Bool(b) => match (b, lang.starts_with("en")) {
                (true, true) => "yes".into(),
                (false, true) => "no".into(),
                (true, false) => "是".into(),
                (false, false) => "否".into(),
            },
            Answer::Attachment(a) => a.name.clone(),
            Answer::Signature(s) => s.signer.clone().unwrap_or_else(|| s.user.clone()),
            other => other.to_evalue().to_string(),
        }
    }
}

fn err(field: &CompiledField, problem: impl Into<String>) -> InvalidAnswer {
    InvalidAnswer { field: field.def.id.clone(), label: field.def.label.zh.clone(), problem: problem.into() }
}

fn valid_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && s[0..2].parse::<u8>().is_ok_and(|h| h < 24)
        && s[3..5].parse::<u8>().is_ok_and(|m| m < 60)
        && b[0].is_ascii_digit()
        && b[3].is_ascii_digit()
}

fn valid_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks an answer against its field, without looking at other answers.
pub fn check(field: &CompiledField, answer: &Answer) -> Result<(), InvalidAnswer> {
    let kind = field.kind();
    if !kind.holds_answer() || kind == FieldKind::Repeat {
        return Err(err(field, format!("a {kind:?} field takes no answer")));
    }
    if answer.kind() != kind {
        return Err(err(field, format!("expects a {kind:?} answer, got {:?}", answer.kind())));
    }
    let bounds = |x: f64| -> Result<(), InvalidAnswer> {
        if let Some(min) = field.def.min {
            if x < min {
                return Err(err(field, format!("{} is below the minimum {}", crate::expr::fmt_num(x), crate::expr::fmt_num(min))));
            }
        }
        if let Some(max) = field.def.max {
            if x > max {
                return Err(err(field, format!("{} is above the maximum {}", crate::expr::fmt_num(x), crate::expr::fmt_num(max))));
            }
        }
        Ok(())
    };
    match answer {
        Answer::Text(s) => {
            if s.chars().count() > MAX_TEXT {
                return Err(err(field, format!("text is longer than {MAX_TEXT} characters")));
            }
            if s.contains('\n') {
                return Err(err(field, "a one-line text cannot hold a line break"));
            }
        }
        Answer::LongText(s) => {
            if s.chars().count() > MAX_LONG_TEXT {
                return Err(err(field, format!("text is longer than {MAX_LONG_TEXT} characters")));
            }
        }
        Answer::Integer(n) | Answer::Duration(n) | Answer::Counter(n) => {
            if matches!(answer, Answer::Duration(_)) && *n < 0 {
                return Err(err(field, "a duration cannot be negative"));
            }
            bounds(*n as f64)?;
        }
        Answer::Decimal(x) => {
            if !x.is_finite() {
                return Err(err(field, "not a number"));
            }
            bounds(*x)?;
        }
        Answer::Choice(c) => {
            if field.option(c).is_none() {
                return Err(err(field, format!("`{c}` is not one of the options")));
            }
        }
        Answer::Choices(v) => {
            for c in v {
                if field.option(c).is_none() {
                    return Err(err(field, format!("`{c}` is not one of the options")));
                }
            }
        }
        Answer::Rating(n) => {
            if !field.def.scale.iter().any(|l| l.value == *n) {
                return Err(err(field, format!("{n} is not a level of the scale")));
            }
        }
        Answer::Bool(_) => {}
        Answer::Date(d) => {
            if parse_date(d).is_none() {
                return Err(err(field, format!("`{d}` is not a date (YYYY-MM-DD)")));
            }
        }
        Answer::Time(t) => {
            if !valid_time(t) {
                return Err(err(field, format!("`{t}` is not a time (HH:MM)")));
            }
        }
        Answer::Attachment(a) => {
            if !valid_hash(&a.hash) {
                return Err(err(field, "attachment hash must be 64 lowercase hex digits (SHA-256)"));
            }
            if a.name.chars().count() > 255 || a.name.contains(['/', '\\', '\0']) {
                return Err(err(field, "attachment name must be a plain file name of at most 255 characters"));
            }
        }
        Answer::Signature(s) => {
            if let Some(img) = &s.image {
                if !valid_hash(img) {
                    return Err(err(field, "signature image hash must be 64 lowercase hex digits"));
                }
            }
            if s.signer.as_deref().is_some_and(|n| n.trim().is_empty() || n.chars().count() > 100) {
                return Err(err(field, "signer name must be 1–100 characters"));
            }
        }
    }
    Ok(())
}

/// The message shown when a constraint fails: the template's, or a generic one.
pub fn constraint_message(field: &CompiledField) -> Label {
    field.def.constraint_message.clone().unwrap_or_else(|| Label {
        zh: format!("“{}”的值不符合要求", field.def.label.zh),
        en: format!("the value of “{}” is not allowed", field.def.label.en),
    })
}
