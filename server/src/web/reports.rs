//! What the dashboard (`dashboard.rs`) and the school report (`report/`) share: the period a page
//! covers (`term`) and the tasks against their targets (`tasks`, from the programme's rules).

use rusqlite::{Connection, OptionalExtension};

use super::auth::WebUser;
use crate::error::{AppError, AppResult};

/// The period a page covers: the programme of the signed-in user, its name, and the term of the
/// programme's rule book containing `today` (or the chosen term, by id). With no term listed,
/// `term` is None and the period is the calendar year (quotas per term are then not judged).
#[derive(Debug, Clone)]
pub struct Term {
    pub programme: String,
    /// The programme's name.
    pub name: String,
    pub start: String,
    pub end: String,
    /// The programme's term in use, when it lists terms.
    pub term: Option<crate::programme::rules::Term>,
}

pub fn term(conn: &Connection, user: &WebUser, today: &str, chosen: Option<&str>) -> AppResult<Term> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT id, name FROM programmes WHERE ?1 IS NULL OR id = ?1 ORDER BY id LIMIT 1",
            [&user.programme],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (programme, name) = row.ok_or_else(|| AppError::NotFound("no programme yet".into()))?;
    let rules = crate::programme::load(conn, &programme)?;
    let t = match chosen {
        Some(id) => Some(
            rules
                .terms
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(|| AppError::NotFound(format!("term {id} is not a term of programme {programme}")))?
                .clone(),
        ),
        None => crate::programme::compliance::current_term(&rules, today).cloned(),
    };
    let year = &today[..4];
    let (start, end) = match &t {
        Some(t) => (t.start.clone(), t.end.clone()),
        None => (format!("{year}-01-01"), format!("{year}-12-31")),
    };
    Ok(Term { programme, name, start, end, term: t })
}

pub use crate::programme::compliance::tasks;
