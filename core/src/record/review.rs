//! The life of a record (draft → submitted → returned / approved) and the review steps that move
//! it, each asked of the rule book first and written to the document's `review` list.

use super::*;

/// The life of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Submitted,
    Returned,
    Approved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Returned => "returned",
            Status::Approved => "approved",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "draft" => Status::Draft,
            "submitted" => Status::Submitted,
            "returned" => Status::Returned,
            "approved" => Status::Approved,
            _ => return None,
        })
    }
}

impl Record {
    /// Moves the record to `submitted`: by someone who fills this form, from draft or returned,
    /// with no missing answer and no failed constraint.
    pub fn submit(&mut self) -> Result<()> {
        let rule = self.permit(rules::Action::Submit)?;
        debug_assert_eq!(rule.requires, rules::Requires::CleanValidation);
        let report = self.validate();
        if let Some(first) = report.blocking().next() {
            let n = report.blocking().count();
            return Err(RecordError::NotReady(format!("{n} problem(s), first: `{}` {}", first.field, first.message.zh)));
        }
        self.review_step(Status::Submitted, "submit", None)
    }

    /// Sends a submitted record back to its authors with a comment (supervisors and admins).
    pub fn return_for_correction(&mut self, comment: &str) -> Result<()> {
        let rule = self.permit(rules::Action::Return)?;
        if rule.requires == rules::Requires::Comment && comment.trim().is_empty() {
            return Err(RecordError::CommentRequired);
        }
        self.review_step(Status::Returned, "return", Some(comment))
    }

    /// Approves a submitted record (supervisors and admins); it is sealed from then on.
    pub fn approve(&mut self, comment: Option<&str>) -> Result<()> {
        self.permit(rules::Action::Approve)?;
        self.review_step(Status::Approved, "approve", comment)
    }

    fn review_step(&mut self, to: Status, action: &str, comment: Option<&str>) -> Result<()> {
        let user = self.editor.user.to_string();
        self.change(|tx, _| {
            tx.put(ROOT, keys::STATUS, to.as_str())?;
            let review = match tx.get(ROOT, keys::REVIEW)? {
                Some((Value::Object(ObjType::List), id)) => id,
                _ => return Err(RecordError::Corrupt("no review list".into())),
            };
            let len = tx.length(&review);
            let entry = tx.insert_object(&review, len, ObjType::Map)?;
            tx.put(&entry, "action", action)?;
            tx.put(&entry, "user", user.as_str())?;
            if let Some(c) = comment {
                tx.put(&entry, "comment", c)?;
            }
            Ok(())
        })
    }
}
