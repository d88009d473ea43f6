//! shidao-xlsform: imports an XLSForm workbook (.xlsx or .xls, the spreadsheet standard of ODK,
//! KoboToolbox and SurveyCTO) as a shidao form template.
//!
//! [`import`] reads the `survey`, `choices` and `settings` sheets, maps every row onto a field
//! kind of `docs/templates.md`, translates the expressions into shidao's expression language and
//! checks the result with the template loader, so what it returns always loads. Every problem is
//! reported at once, each with its sheet, spreadsheet row and column header; nothing is ever
//! half-imported. The mapping, the expression translation and the version rule are documented in
//! `docs/forms.md`. What must stay true: bad input is an [`ImportError`] naming its place, never a
//! panic; a row is either mapped, or refused, or (with [`Options::skip_unsupported`]) left out with
//! a warning naming it, and a kept field never refers to a left-out one.

pub mod book;
mod build;
mod xpath;

use std::fmt;
use std::sync::Arc;

pub use shidao_core::template::Role;
use shidao_core::template::Template;

/// The largest workbook accepted, in bytes.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Leave out the questions whose type or expressions shidao cannot hold (each listed as a
    /// warning) instead of refusing the workbook.
    pub skip_unsupported: bool,
    /// Roles that fill the form, used when the workbook's settings do not say (`filled_by`).
    pub filled_by: Vec<Role>,
}

/// Where in the workbook something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub sheet: String,
    /// 1-based spreadsheet row.
    pub row: Option<u32>,
    /// The column header, e.g. `relevant`.
    pub column: Option<String>,
}

/// A problem (or a warning) with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sheet)?;
        if let Some(r) = self.row {
            write!(f, " row {r}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A workbook imported as a template.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The template in the `docs/templates.md` format.
    pub json: String,
    /// The same template, loaded.
    pub template: Arc<Template>,
    /// What was left out or changed on the way; shown before publishing.
    pub warnings: Vec<Issue>,
}

/// Why a workbook cannot be imported: every problem found, not just the first.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ImportError {
    pub issues: Vec<Issue>,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "the workbook cannot be imported ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// Imports the workbook `bytes`; `file_name` names it in messages and gives the template id
/// when the settings have none.
pub fn import(file_name: &str, bytes: &[u8], opts: &Options) -> Result<Imported, ImportError> {
    build::import(file_name, bytes, opts)
}
