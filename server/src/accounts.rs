//! Programmes, schools, users, tasks, devices and scope: who may read and write what.
//!
//! A device enrols with a one-time code and receives a token; only the token's SHA-256 is kept,
//! so a copy of the database cannot sync as anyone. A user's scope is the schools they are
//! assigned to, or, for reviewers (supervisor, admin), every school of their programme.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use shidao_core::date::parse_date;
use shidao_core::sync::protocol::{IndicatorInfo, Reference, SchoolInfo, TaskInfo, TemplateRef, UserInfo};
use shidao_core::template::Role;
use shidao_core::{DeviceId, SchoolId, UserId};

use crate::error::{AppError, AppResult};

/// How long an enrolment code stays valid.
pub const CODE_LIFETIME_SECS: i64 = 7 * 24 * 3600;

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

/// An authenticated device and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub user: UserId,
    pub name: String,
    pub role: Role,
    pub programme: Option<String>,
}

/// The schools a user may read and write, and a version that changes when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub schools: Vec<String>,
    pub version: String,
}

impl Scope {
    pub fn contains(&self, school: &str) -> bool {
        self.schools.binary_search_by(|s| s.as_str().cmp(school)).is_ok()
    }
}

/// Creates or renames a programme. A `term` given here also becomes the term `term-1` of its
/// rule book (the semesters live there; `programmes.term_*` keep the first for older readers).
pub fn add_programme(conn: &Connection, id: &str, name: &str, term: Option<(&str, &str)>) -> AppResult<()> {
    conn.execute(
        "INSERT INTO programmes (id, name, term_start, term_end) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name,
            term_start = COALESCE(excluded.term_start, programmes.term_start), term_end = COALESCE(excluded.term_end, programmes.term_end)",
        params![id, name, term.map(|t| t.0), term.map(|t| t.1)],
    )?;
    if let Some((start, end)) = term {
        let t = crate::programme::rules::Term { id: "term-1".into(), name: "学期".into(), start: start.into(), end: end.into() };
        crate::programme::store::add_term(conn, id, t, "admin", now_secs())?;
    }
    // A new programme starts with the built-in library of forms (a no-op for one that has it).
    crate::forms::install_missing_libraries(conn, now_secs())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Adds or updates a school. Its category must be one of its programme's categories rule (or
/// empty); a programme whose rule book states no categories takes any. The programme's school
/// targets become tasks of the school (`{target}-{school}`).
pub fn add_school(conn: &Connection, programme: &str, id: &str, name: &str, category: &str, key_project: &str) -> AppResult<()> {
    SchoolId::new(id)?;
    let known: Option<i64> = conn.query_row("SELECT 1 FROM programmes WHERE id = ?1", [programme], |r| r.get(0)).optional()?;
    if known.is_none() {
        return Err(AppError::NotFound(format!("programme {programme} does not exist")));
    }
    let rules = crate::programme::load(conn, programme)?;
    if !rules.allows_category(category) {
        return Err(AppError::BadRequest(format!(
            "school {id}: category `{category}` is not one of programme {programme}'s categories ({})",
            rules.category_names().join(", ")
        )));
    }
    conn.execute(
        "INSERT INTO schools (id, programme_id, name, category, key_project) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET programme_id = excluded.programme_id, name = excluded.name,
            category = excluded.category, key_project = excluded.key_project",
        params![id, programme, name, category, key_project],
    )?;
    for t in &rules.school_targets {
        let task = format!("{}-{id}", t.id);
        let exists: Option<i64> = conn.query_row("SELECT 1 FROM tasks WHERE id = ?1", [&task], |r| r.get(0)).optional()?;
        if exists.is_none() {
            add_task_from(conn, programme, Some(id), &task, &t.title, t.target, &t.unit, &t.start, &t.due, &t.source.sentence)?;
        }
    }
    Ok(())
}

/// Adds or updates a user and replaces their school assignments.
pub fn add_user(
    conn: &Connection,
    id: &str,
    name: &str,
    role: Role,
    programme: Option<&str>,
    schools: &[String],
    password_hash: Option<&str>,
    now: i64,
) -> AppResult<()> {
    UserId::new(id)?;
    // A savepoint, so this also works inside an import's transaction.
    conn.execute_batch("SAVEPOINT add_user")?;
    let result = save_user(conn, id, name, role, programme, schools, password_hash, now);
    conn.execute_batch(if result.is_ok() { "RELEASE add_user" } else { "ROLLBACK TO add_user; RELEASE add_user" })?;
    result
}

#[allow(clippy::too_many_arguments)]
fn save_user(
    tx: &Connection,
    id: &str,
    name: &str,
    role: Role,
    programme: Option<&str>,
    schools: &[String],
    password_hash: Option<&str>,
    now: i64,
) -> AppResult<()> {
    tx.execute(
        "INSERT INTO users (id, name, role, programme_id, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, programme_id = excluded.programme_id,
            password_hash = COALESCE(excluded.password_hash, users.password_hash)",
        params![id, name, role.as_str(), programme, password_hash, now],
    )?;
    tx.execute("DELETE FROM assignments WHERE user_id = ?1", [id])?;
    for s in schools {
        let known: Option<i64> = tx.query_row("SELECT 1 FROM schools WHERE id = ?1", [s], |r| r.get(0)).optional()?;
        if known.is_none() {
            return Err(AppError::NotFound(format!("user {id}: school {s} does not exist")));
        }
        tx.execute("INSERT INTO assignments (user_id, school_id) VALUES (?1, ?2)", params![id, s])?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn add_task(
    conn: &Connection,
    programme: &str,
    school: Option<&str>,
    id: &str,
    title: &str,
    target: f64,
    unit: &str,
    start: &str,
    due: &str,
) -> AppResult<()> {
    add_task_from(conn, programme, school, id, title, target, unit, start, due, "")
}

/// [`add_task`] with the sentence of the programme document the task comes from.
#[allow(clippy::too_many_arguments)]
pub fn add_task_from(
    conn: &Connection,
    programme: &str,
    school: Option<&str>,
    id: &str,
    title: &str,
    target: f64,
    unit: &str,
    start: &str,
    due: &str,
    source: &str,
) -> AppResult<()> {
    if parse_date(start).is_none() || parse_date(due).is_none() || start > due {
        return Err(AppError::BadRequest(format!("task {id}: start {start} and due {due} must be dates, start first")));
    }
    if !(target > 0.0 && target.is_finite()) {
        return Err(AppError::BadRequest(format!("task {id}: target must be a positive number")));
    }
    conn.execute(
        "INSERT INTO tasks (id, programme_id, school_id, title, target, unit, start_date, due_date, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET programme_id = excluded.programme_id, school_id = excluded.school_id,
            title = excluded.title, target = excluded.target, unit = excluded.unit,
            start_date = excluded.start_date, due_date = excluded.due_date, source = excluded.source",
        params![id, programme, school, title, target, unit, start, due, source],
    )?;
    Ok(())
}

/// Makes a one-time enrolment code for a user; only its hash is kept.
pub fn new_enrol_code(conn: &Connection, user: &str, now: i64) -> AppResult<String> {
    let active: Option<bool> = conn.query_row("SELECT active FROM users WHERE id = ?1", [user], |r| r.get(0)).optional()?;
    if active != Some(true) {
        return Err(AppError::NotFound(format!("user {user} does not exist or is inactive")));
    }
    // 10 characters without look-alikes (no 0/O, 1/I/L), read out over the phone as two groups.
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let raw = uuid::Uuid::new_v4().into_bytes();
    let code: String = raw.iter().take(10).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    let code = format!("{}-{}", &code[..5], &code[5..]);
    conn.execute(
        "INSERT INTO enrol_codes (code_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        params![sha256_hex(&code), user, now + CODE_LIFETIME_SECS],
    )?;
    Ok(code)
}

/// Enrols a device with a code; returns `(device id, token)`. The code cannot be used again.
pub fn enrol(conn: &Connection, code: &str, device_name: &str, now: i64) -> AppResult<(String, String, String)> {
    let code = code.trim().to_uppercase();
    let tx = conn.unchecked_transaction()?;
    let user: Option<String> = tx
        .query_row(
            // A code issued before its user was disabled enrols nothing.
            "SELECT c.user_id FROM enrol_codes c JOIN users u ON u.id = c.user_id
             WHERE c.code_hash = ?1 AND c.used_at IS NULL AND c.expires_at > ?2 AND u.active = 1",
            params![sha256_hex(&code), now],
            |r| r.get(0),
        )
        .optional()?;
    let user = user.ok_or(AppError::BadCode)?;
    let name = device_name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::BadRequest("device name must be 1–100 characters".into()));
    }
    tx.execute("UPDATE enrol_codes SET used_at = ?2 WHERE code_hash = ?1", params![sha256_hex(&code), now])?;
    let device = uuid::Uuid::new_v4().to_string();
    let token = random_hex(32);
    tx.execute(
        "INSERT INTO devices (id, user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![device, user, name, sha256_hex(&token), now],
    )?;
    crate::audit::append(
        &tx,
        now,
        &crate::audit::Entry {
            actor: &user,
            action: "device.enrol",
            target: Some(&device),
            after: Some(serde_json::json!({ "device": device, "user": user, "name": name })),
            ..Default::default()
        },
    )?;
    tx.commit()?;
    Ok((device, token, user))
}

/// Disables or enables a user. A disabled user's tablets are refused (401 revoked), their web
/// sessions end, and their codes enrol nothing; their records and assignments are kept.
pub fn set_active(conn: &Connection, user: &str, active: bool) -> AppResult<()> {
    let n = conn.execute(
        "UPDATE users SET active = ?2 WHERE id = ?1",
        params![user, active],
    )?;
    if n == 0 {
        return Err(AppError::NotFound(format!("user {user} does not exist")));
    }
    Ok(())
}

/// Revokes a device: its token is refused from now on.
pub fn revoke_device(conn: &Connection, device: &str, now: i64) -> AppResult<()> {
    let n = conn.execute("UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![device, now])?;
    if n == 0 {
        return Err(AppError::NotFound(format!("device {device} is unknown or already revoked")));
    }
    Ok(())
}

/// The device a bearer token belongs to; 401 when unknown, revoked, or the user is inactive.
pub fn authenticate(conn: &Connection, token: &str, now: i64) -> AppResult<Device> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::Unauthorized);
    }
    let row = conn
        .prepare_cached(
            "SELECT d.id, d.user_id, d.name, d.revoked_at, u.role, u.programme_id, u.active
             FROM devices d JOIN users u ON u.id = d.user_id WHERE d.token_hash = ?1",
        )?
        .query_row([sha256_hex(token)], |r| {
            Ok((
                r.get::<_, DeviceId>(0)?,
                r.get::<_, UserId>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })
        .optional()?;
    let Some((id, user, name, revoked, role, programme, active)) = row else { return Err(AppError::Unauthorized) };
    if revoked.is_some() || !active {
        return Err(AppError::Revoked);
    }
    let role = Role::parse(&role).ok_or_else(|| AppError::Internal(format!("user {user} has unknown role {role}")))?;
    conn.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE id = ?1")?.execute(params![id, now])?;
    Ok(Device { id, user, name, role, programme })
}

/// The schools a user may read and write.
pub fn scope(conn: &Connection, user: &str, role: Role, programme: Option<&str>) -> AppResult<Scope> {
    let mut schools: Vec<String> = if role.reviews() {
        let mut stmt = conn.prepare_cached("SELECT id FROM schools WHERE ?1 IS NULL OR programme_id = ?1 ORDER BY id")?;
        stmt.query_map([programme], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    } else {
        let mut stmt = conn.prepare_cached("SELECT school_id FROM assignments WHERE user_id = ?1 ORDER BY school_id")?;
        stmt.query_map([user], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    schools.sort();
    let version = sha256_hex(&format!("{}|{}", role.as_str(), schools.join(",")))[..16].to_string();
    Ok(Scope { schools, version })
}

/// The reference data a device needs: the user, their schools and tasks, the templates in use.
pub fn reference(conn: &Connection, device: &Device, scope: &Scope) -> AppResult<Reference> {
    let user_name: String = conn.query_row("SELECT name FROM users WHERE id = ?1", [&device.user], |r| r.get(0))?;
    let mut schools = Vec::new();
    {
        let mut stmt = conn.prepare_cached("SELECT id, programme_id, name, category, key_project FROM schools WHERE id = ?1")?;
        for s in &scope.schools {
            if let Some(info) = stmt
                .query_row([s], |r| {
                    Ok(SchoolInfo { id: r.get(0)?, programme: r.get(1)?, name: r.get(2)?, category: r.get(3)?, key_project: r.get(4)? })
                })
                .optional()?
            {
                schools.push(info);
            }
        }
    }
    let mut tasks = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, programme_id, school_id, title, target, unit, start_date, due_date FROM tasks ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TaskInfo {
                id: r.get(0)?,
                programme: r.get(1)?,
                school: r.get(2)?,
                title: r.get(3)?,
                target: r.get(4)?,
                unit: r.get(5)?,
                start_date: r.get(6)?,
                due_date: r.get(7)?,
            })
        })?;
        let programmes: std::collections::BTreeSet<&str> = schools.iter().map(|s| s.programme.as_str()).collect();
        for t in rows {
            let t = t?;
            let visible = match &t.school {
                Some(s) => scope.contains(s),
                None => programmes.contains(t.programme.as_str()),
            };
            if visible {
                tasks.push(t);
            }
        }
    }
    // The forms of the user's programme, or of the programmes of the schools in scope.
    let mut programmes: Vec<String> = match &device.programme {
        Some(p) => vec![p.clone()],
        None => schools.iter().map(|s| s.programme.clone()).collect(),
    };
    programmes.sort();
    programmes.dedup();
    let mut templates: Vec<TemplateRef> = Vec::new();
    for p in &programmes {
        for t in crate::forms::references(conn, p)? {
            if !templates.iter().any(|o| o.id == t.id && o.version == t.version) {
                templates.push(t);
            }
        }
    }
    let user = UserInfo { id: device.user.to_string(), name: user_name, role: device.role.as_str().to_string(), device: device.id.to_string() };
    // The indicator bank of each of those programmes, so an evaluation names its indicators from it.
    let mut indicators = Vec::new();
    for p in &programmes {
        for i in crate::programme::load(conn, p)?.indicators {
            indicators.push(IndicatorInfo { id: i.id, name: i.name, name_en: i.name_en, chapter: i.chapter, unit: i.unit, target: i.target });
        }
    }
    let mut reference = Reference { version: String::new(), user, schools, tasks, templates, indicators };
    let text = serde_json::to_string(&reference).map_err(|e| AppError::Internal(format!("reference data: {e}")))?;
    reference.version = sha256_hex(&text)[..16].to_string();
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = crate::db::open_in_memory().expect("db");
        add_programme(&c, "ouhai", "瓯海", None).expect("programme");
        // The categories rule of the 瓯海 document: 示范 / 优质 / 潜质.
        let mut rules = crate::programme::presets::preset("ouhai").expect("preset").rules;
        rules.terms.clear();
        crate::programme::store::save(&c, "ouhai", &rules, "test", 0).expect("rules");
        c
    }

    fn import(c: &Connection, kind: &str, text: &str) -> Result<usize, String> {
        use crate::directory::{Mode, Table, import_people, import_schools};
        let table = Table::read(text.as_bytes())?;
        let by = crate::admin::CONSOLE_ACTOR;
        match kind {
            "schools" => import_schools(c, "ouhai", &table, Mode::Update, 0, by),
            _ => import_people(c, "ouhai", &table, Mode::Update, 0, by),
        }
        .map_err(|e| e.to_string())
    }

    #[test]
    fn csv_imports_are_all_or_nothing_and_name_the_line() {
        let c = conn();
        let schools = "id,name,category,key_project\nouhai-01,瓯海中学,示范,课程改革\nouhai-02,外国语学校,优质,双语\n";
        assert_eq!(import(&c, "schools", schools).expect("import"), 2);
        let bad = "id,name,category,key_project\nouhai-03,三中,潜质,\nouhai-04,四中,一流,\n";
        let e = import(&c, "schools", bad).expect_err("bad category");
        assert!(e.contains("row 3") && e.contains("一流"), "{e}");
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM schools", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2, "nothing of a bad file is imported");

        let users = "id,name,role,schools\nwang,王老师,inspector,ouhai-01;ouhai-02\nzhou,周督导,supervisor,\n";
        assert_eq!(import(&c, "people", users).expect("users"), 2);
        let s = scope(&c, "wang", Role::Inspector, Some("ouhai")).expect("scope");
        assert_eq!(s.schools, ["ouhai-01", "ouhai-02"]);
        let s = scope(&c, "zhou", Role::Supervisor, Some("ouhai")).expect("scope");
        assert_eq!(s.schools.len(), 2, "a supervisor sees the whole programme");
        let e = import(&c, "people", "id,name,role,schools\nx,某,janitor,\n").expect_err("role");
        assert!(e.contains("unknown role"), "{e}");
        let e = import(
            &c,
            "people",
            "id,name,role,schools\ny,某,inspector,nowhere\n",
        )
        .expect_err("school");
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn codes_work_once_and_tokens_are_kept_hashed() {
        let c = conn();
        add_user(&c, "li", "李老师", Role::Expert, Some("ouhai"), &[], None, 0).expect("user");
        let code = new_enrol_code(&c, "li", 1000).expect("code");
        assert!(matches!(enrol(&c, &code, "平板", 1000 + CODE_LIFETIME_SECS + 1), Err(AppError::BadCode)), "expired");
        let (device, token, user) = enrol(&c, &code.to_lowercase(), "平板", 1001).expect("enrol");
        assert_eq!(user, "li");
        assert!(matches!(enrol(&c, &code, "平板", 1002), Err(AppError::BadCode)), "used twice");
        let stored: String = c.query_row("SELECT token_hash FROM devices WHERE id = ?1", [&device], |r| r.get(0)).expect("row");
        assert_ne!(stored, token);
        assert_eq!(authenticate(&c, &token, 1003).expect("auth").user.as_str(), "li");
        revoke_device(&c, &device, 1004).expect("revoke");
        assert!(matches!(authenticate(&c, &token, 1005), Err(AppError::Revoked)));
    }
}
