//! Administration from the command line: programmes (with their rule books, terms and expert
//! teams), schools, users, tasks, enrolment codes and devices. Each command is one function over the central store, printing what it did.

use std::path::PathBuf;

use clap::Subcommand;
use rusqlite::Connection;
use shidao_core::template::Role;

use crate::directory::{self, Mode};
use crate::error::{AppError, AppResult};
use crate::programme::{presets, rules, store};
use crate::{accounts, forms};

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Take a consistent copy of the central store and its attachments into the folder DEST
    /// (which must not exist), while the relay serves; verified before it is complete.
    Backup { dest: PathBuf },
    /// Check a backup folder whole (manifest, database, records, attachments) without restoring.
    VerifyBackup { src: PathBuf },
    /// Bring a backup back as the central store (refused while a relay serves the store); the
    /// replaced store is kept beside it.
    Restore { src: PathBuf },
    /// Create or rename a programme; with --preset, with the rule book, schools and targets of one
    /// of the five programme documents (yangpu, qingdao, yufeng, taicang, ouhai).
    AddProgramme {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A first term: first and last day, `YYYY-MM-DD` (more with add-term).
        #[arg(long)]
        term_start: Option<String>,
        #[arg(long)]
        term_end: Option<String>,
        #[arg(long)]
        preset: Option<String>,
    },
    /// Add (or replace, by id) a semester of a programme; terms may not overlap.
    AddTerm {
        #[arg(long)]
        programme: String,
        /// Defaults to `term-START`.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
    },
    /// Show a programme's rules, each with its figure and the sentence it comes from.
    Rules {
        #[arg(long)]
        programme: String,
        /// Print the rule book as JSON (the format set-rules reads).
        #[arg(long)]
        json: bool,
    },
    /// Replace a programme's whole rule book with a JSON file (docs/programme.md); checked first.
    SetRules {
        #[arg(long)]
        programme: String,
        file: PathBuf,
    },
    /// Replace one rule (terms, categories, lesson_quotas, expert_team, …) with a JSON value;
    /// `null` removes it.
    SetRule {
        #[arg(long)]
        programme: String,
        #[arg(long)]
        rule: String,
        /// The rule as JSON.
        value: String,
    },
    /// Every change of a programme's rules and expert teams: who, when, before and after.
    RulesHistory {
        #[arg(long)]
        programme: String,
    },
    /// The presets for the five programme documents.
    Presets,
    /// Put an expert on a school's expert team (一校一团队).
    AssignExpert {
        #[arg(long)]
        school: String,
        #[arg(long)]
        user: String,
    },
    /// Take an expert off a school's expert team.
    UnassignExpert {
        #[arg(long)]
        school: String,
        #[arg(long)]
        user: String,
    },
    /// Add or update a school.
    AddSchool {
        #[arg(long)]
        programme: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// 示范, 优质 or 潜质.
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long, default_value = "")]
        key_project: String,
    },
    /// Import schools from a CSV or XLSX file whose header names the columns (学校编号/id,
    /// 学校名称/name, 类别/category, 重点项目/key_project). All or nothing: every bad row is listed.
    ImportSchools {
        #[arg(long)]
        programme: String,
        file: PathBuf,
    },
    /// Add or update a user and their schools.
    AddUser {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// inspector, expert, principal, supervisor or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        programme: Option<String>,
        /// Schools the user works in, separated by commas.
        #[arg(long, value_delimiter = ',')]
        schools: Vec<String>,
    },
    /// Set the password a supervisor or admin signs in to the web pages with (stored as an
    /// Argon2id hash). Reads it from the environment variable SHIDAO_PASSWORD.
    SetPassword {
        #[arg(long)]
        user: String,
        #[arg(long, env = "SHIDAO_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Import users from a CSV or XLSX file whose header names the columns (账号/id, 姓名/name,
    /// 角色/role, 学校/schools; schools separated by 、 , or ;). All or nothing.
    ImportUsers {
        #[arg(long)]
        programme: String,
        file: PathBuf,
    },
    /// Add or update a programme or school task with a numeric target.
    AddTask {
        #[arg(long)]
        programme: String,
        #[arg(long)]
        school: Option<String>,
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        target: f64,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        due: String,
        /// The sentence of the programme document the task comes from.
        #[arg(long, default_value = "")]
        source: String,
    },
    /// Disable a user (their tablets and web sessions are refused from now on), or with
    /// --enable, enable them again.
    SetActive {
        #[arg(long)]
        user: String,
        #[arg(long)]
        enable: bool,
    },
    /// Make a one-time code with which a user's tablet enrols (valid 7 days).
    EnrolCode {
        #[arg(long)]
        user: String,
    },
    /// Make a one-time code as an enrolment QR payload (`shidao://enrol?…`, printed first) with
    /// the relay's --public-url and --enrol-ca (docs/protocol.md, "Enrolment by QR code").
    EnrolQr {
        #[arg(long)]
        user: String,
    },
    /// Revoke a device: its token is refused from now on.
    RevokeDevice {
        #[arg(long)]
        device: String,
    },
    /// List enrolled devices.
    Devices,
    /// Publish a form into a programme: a template file (.json, the format of docs/templates.md)
    /// or an XLSForm workbook (.xlsx, .xls). Checked first; a new version must keep the field ids
    /// of the published one (docs/forms.md). With --retire, also retire a version (FORM@VERSION);
    /// with --retire alone, only retire.
    PublishForm {
        file: Option<PathBuf>,
        #[arg(long)]
        programme: String,
        #[arg(long)]
        retire: Option<String>,
        /// Leave out XLSForm questions of types that do not map (each listed as a warning).
        #[arg(long)]
        skip_unsupported: bool,
    },
    /// List the form versions a programme has published, with their record counts.
    Forms {
        #[arg(long)]
        programme: String,
    },
    /// Print the audit log from a day on (newest first): who, when, what, before and after.
    Audit {
        /// First day, `YYYY-MM-DD` (China time).
        #[arg(long)]
        since: String,
        /// Only this action (e.g. `record.approve`), or a family of them (`record`).
        #[arg(long)]
        action: Option<String>,
    },
}

/// Who changes made at the console are recorded as.
const BY: &str = "admin (console)";

fn programme_known(conn: &Connection, programme: &str) -> AppResult<()> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM programmes WHERE id = ?1", [programme], |r| r.get(0))?;
    if n == 0 {
        return Err(AppError::NotFound(format!("programme {programme} does not exist")));
    }
    Ok(())
}

/// A rule book for people: each rule with its figure and its source; absent rules said so.
pub fn describe(conn: &Connection, programme: &str, book: &rules::Rules) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    let preset = store::preset_of(conn, programme)?;
    out.push(format!(
        "programme {programme}: {}{}",
        if book.document.is_empty() { "(no document named)" } else { &book.document },
        preset.map(|p| format!(" (preset {p})")).unwrap_or_default()
    ));
    for line in crate::programme::rules::figures(book) {
        out.push(format!("{}\t{}\t{}", line.rule, line.figure, line.source.map(|s| format!("「{}」{}", s.sentence, s.document)).unwrap_or_else(|| "—".into())));
    }
    Ok(out)
}

/// An import file as a table: XLSX (or XLS) by its contents, else CSV.
fn read_table(path: &PathBuf) -> AppResult<directory::Table> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| AppError::BadRequest(format!("{name}: {e}")))?;
    directory::Table::read(&bytes).map_err(|e| AppError::BadRequest(format!("{name}: {e}")))
}

fn read(path: &PathBuf) -> AppResult<String> {
    std::fs::read_to_string(path).map_err(|e| AppError::BadRequest(format!("{}: {e}", path.display())))
}

/// What the audit log calls a command that changes something: its action name, target and
/// programme. `None` for the commands that only read.
fn audited(cmd: &AdminCommand) -> Option<(&'static str, Option<String>, Option<String>)> {
    use AdminCommand as C;
    let s = |v: &String| Some(v.clone());
    Some(match cmd {
        C::AddProgramme { id, .. } => ("programme.add", s(id), s(id)),
        C::AddTerm { programme, id, start, .. } => ("programme.term", Some(id.clone().unwrap_or_else(|| format!("term-{start}"))), s(programme)),
        C::SetRules { programme, .. } => ("programme.rules.set", s(programme), s(programme)),
        C::SetRule { programme, rule, .. } => ("programme.rule.set", s(rule), s(programme)),
        C::AssignExpert { school, .. } => ("expert.assign", s(school), None),
        C::UnassignExpert { school, .. } => ("expert.unassign", s(school), None),
        C::AddSchool { programme, id, .. } => ("school.add", s(id), s(programme)),
        C::ImportSchools { programme, .. } => ("school.import", s(programme), s(programme)),
        C::AddUser { id, programme, .. } => ("user.add", s(id), programme.clone()),
        C::SetPassword { user, .. } => ("user.password", s(user), None),
        C::ImportUsers { programme, .. } => ("user.import", s(programme), s(programme)),
        C::AddTask { programme, id, .. } => ("task.add", s(id), s(programme)),
        C::SetActive { user, enable } => (
            if *enable {
                "user.enable"
            } else {
                "user.disable"
            },
            s(user),
            None,
        ),
        C::EnrolCode { user } => ("enrol.code", s(user), None),
        // Issued (and logged) by `crate::enrolment::issue` from the command line.
        C::EnrolQr { .. } => return None,
        C::RevokeDevice { device } => ("device.revoke", s(device), None),
        C::PublishForm { programme, file, .. } => (if file.is_some() { "form.publish" } else { "form.retire" }, None, s(programme)),
        C::Backup { .. } | C::VerifyBackup { .. } | C::Restore { .. } => return None,
        C::Rules { .. } | C::RulesHistory { .. } | C::Presets | C::Devices | C::Forms { .. } | C::Audit { .. } => return None,
    })
}

/// The state a command changes, as JSON, for the audit log's before and after: the user, school
/// or device row, or for rule changes the last entry of the rules' own history (a pointer into
/// `rule_history`, which keeps each rule before and after). Never a password or code.
fn snapshot(conn: &Connection, cmd: &AdminCommand) -> AppResult<Option<serde_json::Value>> {
    use rusqlite::OptionalExtension;
    use serde_json::json;
    use AdminCommand as C;
    Ok(match cmd {
        C::AddUser { id, .. } | C::SetPassword { user: id, .. } | C::SetActive { user: id, .. } => {
            user_snapshot(conn, id)?
        }
        C::AddSchool { id, .. } => school_snapshot(conn, id)?,
        C::AddTask { id, .. } => conn
            .query_row("SELECT title, target, unit, start_date, due_date, school_id, source FROM tasks WHERE id = ?1", [id], |r| {
                Ok(json!({"title": r.get::<_, String>(0)?, "target": r.get::<_, f64>(1)?, "unit": r.get::<_, String>(2)?, "start": r.get::<_, String>(3)?,
                          "due": r.get::<_, String>(4)?, "school": r.get::<_, Option<String>>(5)?, "source": r.get::<_, String>(6)?}))
            })
            .optional()?,
        C::RevokeDevice { device } => conn
            .query_row("SELECT user_id, name, revoked_at FROM devices WHERE id = ?1", [device], |r| {
                Ok(json!({"user": r.get::<_, String>(0)?, "name": r.get::<_, String>(1)?, "revoked_at": r.get::<_, Option<i64>>(2)?}))
            })
            .optional()?,
        C::AddProgramme { .. } | C::AddTerm { .. } | C::SetRules { .. } | C::SetRule { .. } | C::AssignExpert { .. } | C::UnassignExpert { .. } => {
            crate::audit::rule_history_mark(conn)?
        }
        _ => None,
    })
}

/// A user row for the audit log's before and after (never the password, only whether one is set).
pub fn user_snapshot(conn: &Connection, id: &str) -> AppResult<Option<serde_json::Value>> {
    use rusqlite::OptionalExtension;
    use serde_json::json;
    Ok(conn
        .query_row(
            "SELECT name, role, programme_id, active, password_hash IS NOT NULL,
                    (SELECT group_concat(school_id, ',') FROM (SELECT school_id FROM assignments WHERE user_id = ?1 ORDER BY school_id))
             FROM users WHERE id = ?1",
            [id],
            |r| {
                Ok(json!({"name": r.get::<_, String>(0)?, "role": r.get::<_, String>(1)?, "programme": r.get::<_, Option<String>>(2)?,
                          "active": r.get::<_, bool>(3)?, "password_set": r.get::<_, bool>(4)?, "schools": r.get::<_, Option<String>>(5)?}))
            },
        )
        .optional()?)
}

/// A school row for the audit log's before and after.
pub fn school_snapshot(conn: &Connection, id: &str) -> AppResult<Option<serde_json::Value>> {
    use rusqlite::OptionalExtension;
    use serde_json::json;
    Ok(conn
        .query_row("SELECT name, category, key_project, programme_id FROM schools WHERE id = ?1", [id], |r| {
            Ok(json!({"name": r.get::<_, String>(0)?, "category": r.get::<_, Option<String>>(1)?, "key_project": r.get::<_, Option<String>>(2)?, "programme": r.get::<_, String>(3)?}))
        })
        .optional()?)
}

/// Who a change is recorded as: the console, or the signed-in user of the web pages.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub id: &'a str,
    pub role: &'a str,
}

/// The admin command line's actor.
pub const CONSOLE_ACTOR: Actor<'static> = Actor {
    id: crate::audit::CONSOLE,
    role: "admin",
};

/// Runs one admin command; returns what to print. A command that changes something is recorded
/// in the audit log (actor `console`) in the same transaction: its change and its row are kept
/// together, or, when it fails, neither.
pub fn run(conn: &Connection, cmd: AdminCommand, now: i64) -> AppResult<String> {
    run_as(conn, cmd, now, CONSOLE_ACTOR)
}

/// [`run`] on behalf of `actor`: the admin web pages make their changes through the same
/// commands, recorded the same way under the signed-in user's name.
pub fn run_as(conn: &Connection, cmd: AdminCommand, now: i64, by: Actor<'_>) -> AppResult<String> {
    let Some((action, target, programme)) = audited(&cmd) else {
        return execute(conn, cmd, now, by);
    };
    conn.execute_batch("SAVEPOINT admin_command")?;
    let result = (|| {
        let before = snapshot(conn, &cmd)?;
        let probe = cmd.clone();
        let out = execute(conn, cmd, now, by)?;
        let after = snapshot(conn, &probe)?;
        let entry = crate::audit::Entry {
            actor: by.id,
            actor_role: Some(by.role),
            action,
            target: target.as_deref(),
            programme: programme.as_deref(),
            before,
            after,
            // The output of enrol-code is the code itself: a secret, not kept.
            detail: if action == "enrol.code" { Some("one-time code issued (valid 7 days)") } else { Some(&out) },
            ..Default::default()
        };
        crate::audit::append(conn, now, &entry)?;
        Ok(out)
    })();
    conn.execute_batch(if result.is_ok() { "RELEASE admin_command" } else { "ROLLBACK TO admin_command; RELEASE admin_command" })?;
    result
}

fn execute(conn: &Connection, cmd: AdminCommand, now: i64, by: Actor<'_>) -> AppResult<String> {
    Ok(match cmd {
        AdminCommand::Backup { .. } | AdminCommand::VerifyBackup { .. } | AdminCommand::Restore { .. } => {
            return Err(AppError::BadRequest("backup, verify-backup and restore work on the store's files: run them from the command line".into()));
        }
        AdminCommand::AddProgramme { id, name, term_start, term_end, preset } => {
            if term_start.is_some() != term_end.is_some() {
                return Err(AppError::BadRequest("give both --term-start and --term-end, or neither".into()));
            }
            let term = term_start.as_deref().zip(term_end.as_deref());
            match preset {
                None => {
                    accounts::add_programme(conn, &id, &name, term)?;
                    format!("programme {id} ({name}) saved")
                }
                Some(p) => {
                    presets::preset(&p)?;
                    store::atomically(conn, |c| {
                        let mut out = presets::apply(c, &id, &name, &p, BY, now)?;
                        if term.is_some() {
                            accounts::add_programme(c, &id, &name, term)?;
                            out.retain(|l| !l.starts_with("no terms yet"));
                        }
                        out.insert(0, format!("programme {id} ({name}) saved from preset {p}"));
                        Ok(out.join("\n"))
                    })?
                }
            }
        }
        AdminCommand::AddTerm { programme, id, name, start, end } => {
            let id = id.unwrap_or_else(|| format!("term-{start}"));
            store::add_term(conn, &programme, rules::Term { id: id.clone(), name: name.clone(), start: start.clone(), end: end.clone() }, BY, now)?;
            format!("term {id} ({name}, {start} … {end}) saved in {programme}")
        }
        AdminCommand::Rules { programme, json } => {
            programme_known(conn, &programme)?;
            let book = store::load(conn, &programme)?;
            if json { book.to_json()? } else { describe(conn, &programme, &book)?.join("\n") }
        }
        AdminCommand::SetRules { programme, file } => {
            let book = rules::Rules::from_json(&read(&file)?)?;
            let n = store::save(conn, &programme, &book, BY, now)?;
            format!("rule book of {programme} saved: {n} rule(s) changed")
        }
        AdminCommand::SetRule { programme, rule, value } => {
            let value: serde_json::Value = serde_json::from_str(&value).map_err(|e| AppError::BadRequest(format!("rule {rule}: the value is not JSON: {e}")))?;
            let n = store::set_rule(conn, &programme, &rule, value, BY, now)?;
            if n == 0 { format!("rule {rule} of {programme} unchanged") } else { format!("rule {rule} of {programme} saved") }
        }
        AdminCommand::RulesHistory { programme } => {
            programme_known(conn, &programme)?;
            let mut out = vec!["at\tby\trule\tbefore\tafter".to_string()];
            for c in store::history(conn, &programme)? {
                out.push(format!("{}\t{}\t{}\t{}\t{}", c.at, c.by, c.rule, c.before.as_deref().unwrap_or("(absent)"), c.after.as_deref().unwrap_or("(absent)")));
            }
            out.join("\n")
        }
        AdminCommand::Presets => {
            let mut out = Vec::new();
            for name in presets::names() {
                let p = presets::preset(name)?;
                out.push(format!("{name}\t{}\t{}", p.programme_name, p.rules.document));
            }
            out.join("\n")
        }
        AdminCommand::AssignExpert { school, user } => {
            if store::assign_expert(conn, &school, &user, BY, now)? {
                format!("{user} is on the expert team of {school} ({} expert(s))", store::expert_team(conn, &school)?.len())
            } else {
                format!("{user} was already on the expert team of {school}")
            }
        }
        AdminCommand::UnassignExpert { school, user } => {
            store::unassign_expert(conn, &school, &user, BY, now)?;
            format!("{user} is off the expert team of {school} ({} expert(s) left)", store::expert_team(conn, &school)?.len())
        }
        AdminCommand::AddSchool { programme, id, name, category, key_project } => {
            accounts::add_school(conn, &programme, &id, &name, &category, &key_project)?;
            format!("school {id} ({name}) saved")
        }
        AdminCommand::ImportSchools { programme, file } => {
            let table = read_table(&file)?;
            let n = directory::import_schools(conn, &programme, &table, Mode::Update, now, by)
                .map_err(|r| AppError::BadRequest(r.to_string()))?;
            format!("{n} schools imported into {programme}")
        }
        AdminCommand::AddUser { id, name, role, programme, schools } => {
            let role = Role::parse(&role).ok_or_else(|| AppError::BadRequest(format!("unknown role `{role}`")))?;
            accounts::add_user(conn, &id, &name, role, programme.as_deref(), &schools, None, now)?;
            format!("user {id} ({name}, {}) saved with {} school(s)", role.as_str(), schools.len())
        }
        AdminCommand::SetPassword { user, password } => {
            let hash = crate::web::auth::hash_password(&password)?;
            let n = conn.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", rusqlite::params![user, hash])?;
            if n == 0 {
                return Err(AppError::NotFound(format!("user {user} does not exist")));
            }
            format!("password of {user} set")
        }
        AdminCommand::ImportUsers { programme, file } => {
            let table = read_table(&file)?;
            let n = directory::import_people(conn, &programme, &table, Mode::Update, now, by)
                .map_err(|r| AppError::BadRequest(r.to_string()))?;
            format!("{n} users imported into {programme}")
        }
        AdminCommand::AddTask {
            programme,
            school,
            id,
            title,
            target,
            unit,
            start,
            due,
            source,
        } => {
            accounts::add_task_from(
                conn,
                &programme,
                school.as_deref(),
                &id,
                &title,
                target,
                &unit,
                &start,
                &due,
                &source,
            )?;
            format!("task {id} ({title}) saved")
        }
        AdminCommand::SetActive { user, enable } => {
            accounts::set_active(conn, &user, enable)?;
            format!(
                "user {user} {}",
                if enable { "enabled" } else { "disabled" }
            )
        }
        AdminCommand::EnrolCode { user } => {
            let code = accounts::new_enrol_code(conn, &user, now)?;
            format!("enrolment code for {user}: {code} (valid 7 days, once)")
        }
        AdminCommand::EnrolQr { .. } => {
            return Err(AppError::BadRequest("enrol-qr needs the relay's settings; run it from the command line".into()))
        }
        AdminCommand::RevokeDevice { device } => {
            accounts::revoke_device(conn, &device, now)?;
            format!("device {device} revoked")
        }
        AdminCommand::PublishForm { file, programme, retire, skip_unsupported } => {
            let mut out = Vec::new();
            if let Some(path) = &file {
                let name = path.display().to_string();
                let bytes = std::fs::read(path).map_err(|e| AppError::BadRequest(format!("{name}: {e}")))?;
                let form = forms::check_file(&name, &bytes, skip_unsupported)?;
                for w in &form.warnings {
                    out.push(format!("warning: {w}"));
                }
                let source = format!("file {}", path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or(name.clone()));
                let t = &form.template;
                let new = forms::publish(conn, &programme, &form, &source, "admin", now)?;
                out.push(format!(
                    "{} {} v{} ({}) in {programme}, definition {}",
                    if new { "published" } else { "already published:" },
                    t.id(),
                    t.version(),
                    t.def.title.zh,
                    &form.hash[..16]
                ));
            }
            if let Some(r) = &retire {
                let (id, version) = forms::parse_ref(r)?;
                forms::retire(conn, &programme, &id, version, now)?;
                out.push(format!("retired {id} v{version} in {programme}"));
            }
            if out.is_empty() {
                return Err(AppError::BadRequest("name a form file to publish, or --retire FORM@VERSION".into()));
            }
            out.join("\n")
        }
        AdminCommand::Forms { programme } => {
            let list = forms::list(conn, &programme)?;
            let mut out = vec!["form\tversion\ttitle\trecords\tstate\tsource\thash".to_string()];
            for f in list {
                out.push(format!(
                    "{}\tv{}\t{}\t{}\t{}\t{}\t{}",
                    f.id,
                    f.version,
                    f.title_zh,
                    f.records,
                    if f.retired_at.is_some() { "retired" } else if f.current { "current" } else { "older" },
                    f.source,
                    &f.hash[..16]
                ));
            }
            out.join("\n")
        }
        AdminCommand::Audit { since, action } => {
            let filter = crate::audit::Filter { action, from: Some(crate::audit::day_start("--since", &since)?), ..Default::default() };
            let mut out = vec!["seq\tat\tactor\trole\taction\ttarget\tprogramme\tbefore\tafter\tdetail\tsource".to_string()];
            for r in crate::audit::query(conn, &filter, i64::MAX, 0)? {
                let o = |v: &Option<String>| v.as_deref().unwrap_or("").replace(['\t', '\n'], " ");
                out.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.seq, shidao_core::date::china_minute(r.at), r.actor, o(&r.actor_role), r.action, o(&r.target), o(&r.programme), o(&r.before), o(&r.after), o(&r.detail), o(&r.source)
                ));
            }
            out.join("\n")
        }
        AdminCommand::Devices => {
            let mut stmt = conn.prepare(
                "SELECT d.id, d.user_id, d.name, d.created_at, d.last_seen, d.revoked_at, d.app FROM devices d ORDER BY d.created_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(format!(
                    "{}\t{}\t{}\tenrolled {}\tlast seen {}\t{}\t{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?.map_or("never".to_string(), |t| t.to_string()),
                    if r.get::<_, Option<i64>>(5)?.is_some() { "REVOKED" } else { "active" },
                    r.get::<_, Option<String>>(6)?.unwrap_or_else(|| "app unknown".into())
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n")
        }
    })
}
