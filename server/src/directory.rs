//! Schools and people from a spreadsheet: the import the admin pages and `admin import-schools` /
//! `admin import-users` share.
//!
//! A file is a table whose header row names the columns, in Chinese or English (学校编号/id,
//! 姓名/name, 角色/role …); XLSX and XLS are read with the workbook reader of `shidao-xlsform`
//! (its first sheet), anything else as CSV.
//!
//! What must stay true:
//! - All or nothing. Every row is checked before anything is written; a file with any problem
//!   imports nothing, and every problem is reported with its row number (the spreadsheet's own,
//!   header row 1) and column.
//! - Each row is saved through the admin command that saves one by hand (`add-school`,
//!   `add-user`), so the rules of those commands hold, and each row leaves its own audit entry
//!   (who, before → after).
//! - An id of another programme is never taken over, whatever the mode.

use std::collections::HashMap;
use std::fmt;

use rusqlite::{Connection, OptionalExtension};
use shidao_core::template::Role;
use shidao_core::{SchoolId, UserId};

use crate::admin::{self, Actor, AdminCommand};
use crate::error::{AppError, AppResult};

/// The rows of an import file: the header and each data row with its row number.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<(u32, Vec<String>)>,
}

impl Table {
    /// Reads a workbook (by its first bytes: zip or OLE) or a CSV file (UTF-8, with or without
    /// a byte-order mark). Blank rows are skipped; row numbers stay the file's own.
    pub fn read(bytes: &[u8]) -> Result<Table, String> {
        if bytes.starts_with(b"PK") || bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
            let sheets = shidao_xlsform::book::read(bytes).map_err(|e| match e {
                shidao_xlsform::book::BookError::Password => {
                    "工作簿有密码保护 / the workbook is protected by a password".to_string()
                }
                shidao_xlsform::book::BookError::NotAWorkbook(why) => {
                    format!("无法读取工作簿 / the workbook cannot be read: {why}")
                }
            })?;
            let sheet = sheets
                .into_iter()
                .next()
                .ok_or("工作簿没有工作表 / the workbook has no sheet")?;
            return Ok(Table {
                header: sheet.header,
                rows: sheet
                    .rows
                    .into_iter()
                    .map(|r| (r.number, r.cells))
                    .collect(),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(
            |_| "文件不是 UTF-8 编码的 CSV / the file is not CSV in UTF-8 (nor an XLSX workbook)",
        )?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut table = Table::default();
        for record in reader.records() {
            let record = record.map_err(|e| format!("CSV: {e}"))?;
            // The line the record starts on, counted from its byte offset: the reader's own line
            // count leaves out the blank lines it skips.
            let mut at = record
                .position()
                .map_or(0, |p| p.byte() as usize)
                .min(text.len());
            while matches!(text.as_bytes().get(at), Some(b'\r' | b'\n')) {
                at += 1;
            }
            let number = text.as_bytes()[..at]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u32
                + 1;
            let cells: Vec<String> = record.iter().map(|c| c.trim().to_string()).collect();
            if cells.iter().all(String::is_empty) {
                continue;
            }
            if table.header.is_empty() {
                table.header = cells;
            } else {
                table.rows.push((number, cells));
            }
        }
        Ok(table)
    }

    /// The column whose header is one of `names` (trimmed, case-insensitive).
    fn col(&self, names: &[&str]) -> Option<usize> {
        self.header.iter().position(|h| {
            let h = h.trim();
            names.iter().any(|n| h.eq_ignore_ascii_case(n))
        })
    }
}

/// Whether an import may update rows that exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only new ids; an id that exists is a problem of its row.
    Add,
    /// New ids are added, existing ones (of the same programme) updated.
    Update,
}

/// One problem of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The row number in the file (header row 1); 1 for a problem of the header itself.
    pub row: u32,
    /// The column as the file names it (or its expected name when it is missing).
    pub column: String,
    pub message: String,
}

/// Why nothing of a file was imported: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub problems: Vec<Problem>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nothing imported: {} problem(s)", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\nrow {}, column {}: {}", p.row, p.column, p.message)?;
        }
        Ok(())
    }
}

impl From<AppError> for Refused {
    fn from(e: AppError) -> Self {
        Refused {
            problems: vec![Problem {
                row: 0,
                column: String::new(),
                message: e.to_string(),
            }],
        }
    }
}

/// The column names each field of a school file is known by.
pub const SCHOOL_COLUMNS: [(&str, &[&str]); 4] = [
    ("id", &["学校编号", "编号", "学校代码", "id", "school_id"]),
    ("name", &["学校名称", "名称", "校名", "name"]),
    ("category", &["类别", "学校类别", "category"]),
    (
        "key_project",
        &["重点项目", "key_project", "key project", "project"],
    ),
];

/// The column names each field of a people file is known by.
pub const PEOPLE_COLUMNS: [(&str, &[&str]); 4] = [
    ("id", &["账号", "用户名", "工号", "id", "user"]),
    ("name", &["姓名", "名字", "name"]),
    ("role", &["角色", "role"]),
    (
        "schools",
        &["学校", "学校编号", "所在学校", "schools", "school"],
    ),
];

/// A role by its Chinese or English name.
pub fn parse_role(text: &str) -> Option<Role> {
    Some(match text.trim() {
        "视导员" => Role::Inspector,
        "专家" | "指导专家" => Role::Expert,
        "校长" => Role::Principal,
        "督导" | "督学" => Role::Supervisor,
        "管理员" => Role::Admin,
        other => return Role::parse(&other.to_ascii_lowercase()),
    })
}

/// A list of school ids separated by 、 , ; (or their full-width forms).
pub fn split_schools(text: &str) -> Vec<String> {
    text.split(['、', ',', ';', '，', '；'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The header's columns for `fields`; a required one that is missing is a problem of row 1.
fn columns(
    table: &Table,
    fields: &[(&'static str, &[&str])],
    required: &[&str],
    problems: &mut Vec<Problem>,
) -> HashMap<&'static str, usize> {
    let mut out = HashMap::new();
    for (field, names) in fields {
        match table.col(names) {
            Some(i) => {
                out.insert(*field, i);
            }
            None if required.contains(field) => problems.push(Problem {
                row: 1,
                column: format!("{}/{}", names[0], field),
                message: format!(
                    "缺少此列 / the column is missing (header: {})",
                    names.join("、")
                ),
            }),
            None => {}
        }
    }
    out
}

fn cell<'a>(
    table: &Table,
    cells: &'a [String],
    cols: &HashMap<&str, usize>,
    field: &str,
) -> (&'a str, String) {
    match cols.get(field) {
        Some(&i) => (
            cells.get(i).map_or("", |s| s.trim()),
            table.header[i].trim().to_string(),
        ),
        None => ("", field.to_string()),
    }
}

/// The programme an existing school or user belongs to: `None` when the id is new, `Some(None)`
/// for a user of no programme.
fn owner(conn: &Connection, table: &str, id: &str) -> AppResult<Option<Option<String>>> {
    let sql = match table {
        "schools" => "SELECT programme_id FROM schools WHERE id = ?1",
        "users" => "SELECT programme_id FROM users WHERE id = ?1",
        "tasks" => "SELECT programme_id FROM tasks WHERE id = ?1",
        other => {
            return Err(AppError::Internal(format!(
                "no table {other} to look ids up in"
            )));
        }
    };
    Ok(conn.query_row(sql, [id], |r| r.get(0)).optional()?)
}

/// What is wrong with saving `id` into `table` (`schools`, `users` or `tasks`) of `programme`:
/// an id of another programme is never taken over, and in mode `Add` an existing id is refused.
/// The one rule for the import and for the pages' add and edit forms.
pub fn existing_problem(
    conn: &Connection,
    table: &str,
    programme: &str,
    mode: Mode,
    id: &str,
) -> AppResult<Option<String>> {
    Ok(match owner(conn, table, id)? {
        None => None,
        Some(p) if p.as_deref() != Some(programme) => Some(format!(
            "编号 `{id}` 已属于其他项目 / id `{id}` belongs to another programme"
        )),
        Some(_) if mode == Mode::Add => Some(format!(
            "编号 `{id}` 已存在 / id `{id}` exists already (choose “update existing” to change it)"
        )),
        Some(_) => None,
    })
}

/// What is wrong with assigning someone of `programme` to `school`: unknown, or of another
/// programme.
pub fn school_problem(
    conn: &Connection,
    programme: &str,
    school: &str,
) -> AppResult<Option<String>> {
    Ok(match owner(conn, "schools", school)? {
        None => Some(format!(
            "学校 `{school}` 不存在 / school `{school}` does not exist"
        )),
        Some(p) if p.as_deref() != Some(programme) => Some(format!(
            "学校 `{school}` 属于其他项目 / school `{school}` belongs to another programme"
        )),
        Some(_) => None,
    })
}

/// Checks the id cell of a row: present, well-formed, not twice in the file, and new (mode
/// `Add`) or of this programme.
#[allow(clippy::too_many_arguments)]
fn check_id(
    conn: &Connection,
    table: &str,
    programme: &str,
    mode: Mode,
    id: &str,
    valid: bool,
    at: (u32, &str),
    seen: &mut HashMap<String, u32>,
    problems: &mut Vec<Problem>,
) -> AppResult<()> {
    let (row, column) = at;
    let mut bad = |message: String| {
        problems.push(Problem {
            row,
            column: column.to_string(),
            message,
        })
    };
    if id.is_empty() {
        bad("不能为空 / must not be empty".into());
        return Ok(());
    }
    if !valid {
        bad(format!(
            "编号 `{id}` 只能用字母、数字和 - _ . / id `{id}` may hold only letters, digits and - _ ."
        ));
        return Ok(());
    }
    if let Some(first) = seen.get(id) {
        bad(format!(
            "编号 `{id}` 重复（第 {first} 行已有） / duplicate id `{id}` (already in row {first})"
        ));
        return Ok(());
    }
    seen.insert(id.to_string(), row);
    if let Some(message) = existing_problem(conn, table, programme, mode, id)? {
        bad(message);
    }
    Ok(())
}

fn require(value: &str, row: u32, column: &str, problems: &mut Vec<Problem>) {
    if value.is_empty() {
        problems.push(Problem {
            row,
            column: column.to_string(),
            message: "不能为空 / must not be empty".into(),
        });
    }
}

/// Imports schools into `programme`: all of the file, or (with every problem listed) none.
/// Returns how many rows were saved.
pub fn import_schools(
    conn: &Connection,
    programme: &str,
    table: &Table,
    mode: Mode,
    now: i64,
    by: Actor<'_>,
) -> Result<usize, Refused> {
    if owner_programme(conn, programme)?.is_none() {
        return Err(AppError::NotFound(format!("programme {programme} does not exist")).into());
    }
    let rules = crate::programme::load(conn, programme)?;
    let mut problems = Vec::new();
    let cols = columns(table, &SCHOOL_COLUMNS, &["id", "name"], &mut problems);
    if !problems.is_empty() {
        return Err(Refused { problems });
    }
    let mut seen = HashMap::new();
    let mut rows = Vec::new();
    for (row, cells) in &table.rows {
        let (id, id_col) = cell(table, cells, &cols, "id");
        let (name, name_col) = cell(table, cells, &cols, "name");
        let (category, category_col) = cell(table, cells, &cols, "category");
        let (key_project, _) = cell(table, cells, &cols, "key_project");
        check_id(
            conn,
            "schools",
            programme,
            mode,
            id,
            SchoolId::new(id).is_ok(),
            (*row, &id_col),
            &mut seen,
            &mut problems,
        )?;
        require(name, *row, &name_col, &mut problems);
        if !rules.allows_category(category) {
            problems.push(Problem {
                row: *row,
                column: category_col,
                message: format!(
                    "类别 `{category}` 不是本项目的类别（{}） / `{category}` is not one of the programme's categories",
                    rules.category_names().join("、")
                ),
            });
        }
        rows.push((id, name, category, key_project));
    }
    if !problems.is_empty() {
        return Err(Refused { problems });
    }
    let n = rows.len();
    crate::programme::store::atomically(conn, |tx| {
        for (id, name, category, key_project) in rows {
            admin::run_as(
                tx,
                AdminCommand::AddSchool {
                    programme: programme.to_string(),
                    id: id.to_string(),
                    name: name.to_string(),
                    category: category.to_string(),
                    key_project: key_project.to_string(),
                },
                now,
                by,
            )?;
        }
        Ok(())
    })?;
    Ok(n)
}

fn owner_programme(conn: &Connection, programme: &str) -> AppResult<Option<i64>> {
    Ok(conn
        .query_row("SELECT 1 FROM programmes WHERE id = ?1", [programme], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Imports people into `programme`, with their roles and schools: all of the file, or (with
/// every problem listed) none. New people get no password: they enrol their tablets by QR code.
pub fn import_people(
    conn: &Connection,
    programme: &str,
    table: &Table,
    mode: Mode,
    now: i64,
    by: Actor<'_>,
) -> Result<usize, Refused> {
    if owner_programme(conn, programme)?.is_none() {
        return Err(AppError::NotFound(format!("programme {programme} does not exist")).into());
    }
    let mut problems = Vec::new();
    let cols = columns(
        table,
        &PEOPLE_COLUMNS,
        &["id", "name", "role"],
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(Refused { problems });
    }
    let mut seen = HashMap::new();
    let mut rows = Vec::new();
    for (row, cells) in &table.rows {
        let (id, id_col) = cell(table, cells, &cols, "id");
        let (name, name_col) = cell(table, cells, &cols, "name");
        let (role_text, role_col) = cell(table, cells, &cols, "role");
        let (schools_text, schools_col) = cell(table, cells, &cols, "schools");
        check_id(
            conn,
            "users",
            programme,
            mode,
            id,
            UserId::new(id).is_ok(),
            (*row, &id_col),
            &mut seen,
            &mut problems,
        )?;
        require(name, *row, &name_col, &mut problems);
        let role = if role_text.is_empty() {
            require(role_text, *row, &role_col, &mut problems);
            None
        } else {
            let role = parse_role(role_text);
            if role.is_none() {
                problems.push(Problem {
                    row: *row,
                    column: role_col.clone(),
                    message: format!(
                        "未知角色 `{role_text}`（视导员、专家、校长、督导、管理员） / unknown role `{role_text}` (inspector, expert, principal, supervisor, admin)"
                    ),
                });
            }
            role
        };
        let schools = split_schools(schools_text);
        for s in &schools {
            if let Some(message) = school_problem(conn, programme, s)? {
                problems.push(Problem {
                    row: *row,
                    column: schools_col.clone(),
                    message,
                });
            }
        }
        rows.push((id, name, role, schools));
    }
    if !problems.is_empty() {
        return Err(Refused { problems });
    }
    let n = rows.len();
    crate::programme::store::atomically(conn, |tx| {
        for (id, name, role, schools) in rows {
            let role = role.ok_or_else(|| AppError::Internal("role checked above".into()))?;
            admin::run_as(
                tx,
                AdminCommand::AddUser {
                    id: id.to_string(),
                    name: name.to_string(),
                    role: role.as_str().to_string(),
                    programme: Some(programme.to_string()),
                    schools,
                },
                now,
                by,
            )?;
        }
        Ok(())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_line_numbers_and_headers_may_be_chinese() {
        let t = Table::read(
            "\u{feff}账号,姓名,角色\n\nwang,王老师,视导员\nli,李老师,expert\n".as_bytes(),
        )
        .expect("csv");
        assert_eq!(t.header, ["账号", "姓名", "角色"]);
        assert_eq!(t.rows[0].0, 3, "the blank line 2 still counts");
        assert_eq!(t.col(PEOPLE_COLUMNS[2].1), Some(2));
        assert_eq!(parse_role("视导员"), Some(Role::Inspector));
        assert_eq!(parse_role("Expert"), Some(Role::Expert));
        assert_eq!(parse_role("janitor"), None);
        assert_eq!(split_schools("s1、s2, s3;s4；"), ["s1", "s2", "s3", "s4"]);
    }
}
