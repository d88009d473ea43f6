//! Reading a workbook into sheets of text cells, the way pyxform sees them.
//!
//! calamine does the reading (.xlsx and .xls; nothing here parses zip or XML). Cached formula
//! values are read, never recalculated. Typed cells are rendered as pyxform renders them: a whole
//! float `1.0` is `1`, a boolean is `true`/`false`, a date cell is `YYYY-MM-DD` (with ` HH:MM:SS`
//! when it has a time of day). Sheet names match case-insensitively; header cells are trimmed.
//! What must stay true: row numbers are the spreadsheet's own (1-based, header row included),
//! whatever empty rows or columns precede the data.

use std::io::Cursor;

use calamine::{Data, Reader, Sheets, Xls, XlsError, Xlsx, XlsxError};

/// One sheet: its header and its data rows, each with its spreadsheet row number.
#[derive(Debug, Clone)]
pub struct Sheet {
    /// The sheet's name as the workbook spells it.
    pub name: String,
    /// Row number of the header row (1-based).
    pub header_row: u32,
    /// Trimmed header cells, in column order (empty string for a column without header).
    pub header: Vec<String>,
    /// Data rows (after the header) that hold at least one non-empty cell.
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub number: u32,
    /// Cells aligned with the header (missing cells are empty strings).
    pub cells: Vec<String>,
    /// The raw cell of the same columns, for the few places that care about the cell's type.
    pub raw: Vec<Data>,
}

impl Sheet {
    /// The column index of the first header equal to `name` (case-insensitive).
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.eq_ignore_ascii_case(name))
    }
}

impl Row {
    pub fn get(&self, col: Option<usize>) -> &str {
        col.and_then(|c| self.cells.get(c)).map_or("", |s| s.trim())
    }
}

/// Why a workbook cannot be read at all.
#[derive(Debug, Clone)]
pub enum BookError {
    Password,
    NotAWorkbook(String),
}

/// The workbook's sheets, read in full.
///
/// calamine asserts on some damaged files (found by `damaged_workbooks_never_panic`, e.g. a
/// truncated .xls); such a panic is caught here and reported as a damaged workbook, so that a bad
/// upload is an error for its sender and never takes the relay's request down.
pub fn read(bytes: &[u8]) -> Result<Vec<Sheet>, BookError> {
    match std::panic::catch_unwind(|| read_unguarded(bytes)) {
        Ok(r) => r,
        Err(_) => Err(BookError::NotAWorkbook("the file is damaged (its contents do not hold together)".into())),
    }
}

fn read_unguarded(bytes: &[u8]) -> Result<Vec<Sheet>, BookError> {
    let cursor = Cursor::new(bytes.to_vec());
    let mut book: Sheets<Cursor<Vec<u8>>> = if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        // An OLE container: a legacy .xls, or an encrypted .xlsx (which lives in one too).
        match Xlsx::new(cursor.clone()) {
            Err(XlsxError::Password) => return Err(BookError::Password),
            Ok(x) => Sheets::Xlsx(x),
            Err(_) => match Xls::new(cursor) {
                Ok(x) => Sheets::Xls(x),
                Err(XlsError::Password) => return Err(BookError::Password),
                Err(e) => return Err(BookError::NotAWorkbook(e.to_string())),
            },
        }
    } else if bytes.starts_with(b"PK") {
        match Xlsx::new(cursor) {
            Ok(x) => Sheets::Xlsx(x),
            Err(XlsxError::Password) => return Err(BookError::Password),
            Err(e) => return Err(BookError::NotAWorkbook(e.to_string())),
        }
    } else {
        return Err(BookError::NotAWorkbook("the file is neither an .xlsx (zip) nor an .xls (OLE) workbook".into()));
    };
    let mut out = Vec::new();
    for name in book.sheet_names() {
        let range = match book.worksheet_range(&name) {
            Ok(r) => r,
            Err(e) => return Err(BookError::NotAWorkbook(format!("sheet `{name}` cannot be read: {e}"))),
        };
        let (row0, _) = range.start().unwrap_or((0, 0));
        let mut header: Option<(u32, Vec<String>)> = None;
        let mut rows = Vec::new();
        for (i, cells) in range.rows().enumerate() {
            let number = row0 + i as u32 + 1;
            let text: Vec<String> = cells.iter().map(render).collect();
            if text.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            match &header {
                None => header = Some((number, text.iter().map(|h| h.trim().to_string()).collect())),
                Some((_, h)) => {
                    let width = h.len();
                    let mut text = text;
                    text.resize(width.max(text.len()), String::new());
                    let mut raw: Vec<Data> = cells.to_vec();
                    raw.resize(text.len(), Data::Empty);
                    rows.push(Row { number, cells: text, raw });
                }
            }
        }
        let (header_row, header) = header.unwrap_or((1, Vec::new()));
        out.push(Sheet { name, header_row, header, rows });
    }
    Ok(out)
}

/// A cell as text, rendered as pyxform renders it.
pub fn render(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", *f as i64) } else { format!("{f}") }
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if dt.as_f64() < 1.0 {
                format!("{h:02}:{mi:02}:{s:02}")
            } else if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}
