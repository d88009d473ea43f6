//! Sign-in for the web pages: passwords hashed with Argon2id, sessions in an HttpOnly cookie
//! (a fresh id at every sign-in, so a planted id is worthless), and a CSRF token per session that
//! every form carries. Only supervisors and admins sign in here; `throttle` slows down password
//! guessing.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rusqlite::{params, Connection, OptionalExtension};
use shidao_core::template::Role;

use crate::accounts::sha256_hex;
use crate::error::{AppError, AppResult};
use crate::AppState;

pub const SESSION_COOKIE: &str = "shidao_session";
const SESSION_SECS: i64 = 12 * 3600;

/// Hashes a password with Argon2id and a random salt.
pub fn hash_password(password: &str) -> AppResult<String> {
    if password.chars().count() < 8 {
        return Err(AppError::BadRequest("a password needs at least 8 characters".into()));
    }
    let salt_bytes = uuid::Uuid::new_v4().into_bytes();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AppError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("password hash: {e}")))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A signed-in supervisor or admin.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub programme: Option<String>,
    pub csrf: String,
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// What a sign-in came to.
#[derive(Debug)]
pub enum SignIn {
    /// A new session; its id goes in the cookie.
    Session(String),
    /// An unknown or inactive user, or a wrong password (the answer does not say which).
    WrongPassword,
    /// The right password of someone who does not review (they use the tablet app).
    NotReviewer,
}

/// Checks a password and opens a new session. The outcome is recorded in the audit log
/// (`sign_in` or `sign_in.failed`, with the name tried and the client address `from`; never the
/// password), in the same transaction as the session.
pub fn sign_in(conn: &Connection, user: &str, password: &str, from: &str, now: i64) -> AppResult<SignIn> {
    conn.execute_batch("SAVEPOINT sign_in")?;
    let result = (|| {
        let outcome = check_and_open(conn, user, password, now)?;
        let (action, detail) = match &outcome {
            SignIn::Session(_) => ("sign_in", None),
            SignIn::WrongPassword => ("sign_in.failed", Some("wrong user name or password")),
            SignIn::NotReviewer => ("sign_in.failed", Some("not a supervisor or admin")),
        };
        let role: Option<String> = match outcome {
            SignIn::Session(_) => conn.query_row("SELECT role FROM users WHERE id = ?1", [user.trim()], |r| r.get(0)).optional()?,
            _ => None,
        };
        let entry = crate::audit::Entry { actor: tried(user), actor_role: role.as_deref(), action, detail, source: Some(from), ..Default::default() };
        crate::audit::append(conn, now, &entry)?;
        Ok(outcome)
    })();
    conn.execute_batch(if result.is_ok() { "RELEASE sign_in" } else { "ROLLBACK TO sign_in; RELEASE sign_in" })?;
    result
}

/// The user name as tried, for the audit log: trimmed and at most 100 characters.
pub fn tried(user: &str) -> &str {
    let t = user.trim();
    t.char_indices().nth(100).map_or(t, |(i, _)| &t[..i])
}

fn check_and_open(conn: &Connection, user: &str, password: &str, now: i64) -> AppResult<SignIn> {
    let row: Option<(Option<String>, String, bool)> = conn
        .query_row("SELECT password_hash, role, active FROM users WHERE id = ?1", [user.trim()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((Some(hash), role, true)) = row else {
        // Spend the same effort as a real check, so timing does not tell which users exist.
        let _ = verify_password("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo", password);
        return Ok(SignIn::WrongPassword);
    };
    if !verify_password(&hash, password) {
        return Ok(SignIn::WrongPassword);
    }
    if !Role::parse(&role).is_some_and(Role::reviews) {
        return Ok(SignIn::NotReviewer);
    }
    let id = random_token();
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![sha256_hex(&id), user.trim(), random_token(), now, now + SESSION_SECS],
    )?;
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
    Ok(SignIn::Session(id))
}

pub fn sign_out(conn: &Connection, session: &str) -> AppResult<()> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [sha256_hex(session)])?;
    Ok(())
}

/// The user of a live session.
pub fn session_user(conn: &Connection, session: &str, now: i64) -> AppResult<Option<WebUser>> {
    Ok(conn
        .query_row(
            "SELECT u.id, u.name, u.role, u.programme_id, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND u.active = 1",
            params![sha256_hex(session), now],
            |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, String>(4)?))
            },
        )
        .optional()?
        .and_then(|(id, name, role, programme, csrf)| Role::parse(&role).map(|role| WebUser { id, name, role, programme, csrf })))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, `Secure` when serving HTTPS.
pub fn cookie_header(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}", if secure { "; Secure" } else { "" })
}

/// A cookie's value from the request parts.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_from(&parts.headers, name)
}

/// A cookie's value from request headers.
pub fn cookie_from(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Redirects to the sign-in page when there is no live session.
pub struct NeedSignIn;

impl axum::response::IntoResponse for NeedSignIn {
    fn into_response(self) -> axum::response::Response {
        axum::response::Redirect::to("/login").into_response()
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let Some(session) = cookie(parts, SESSION_COOKIE) else { return Err(NeedSignIn.into_response()) };
        let now = state.clock.now();
        match state.blocking(move |c| session_user(c, &session, now)).await {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(NeedSignIn.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl WebUser {
    /// The admin pages' rule, one place for all of them: supervisors and admins read them.
    /// `what` names what the page shows (Chinese, English) for the refusal.
    pub fn may_read_admin(&self, what: (&str, &str)) -> AppResult<()> {
        if self.role.reviews() {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("只有督导和管理员可以查看{} / only supervisors and admins see {}", what.0, what.1)))
        }
    }

    /// The admin pages' rule for changes: admins only (a supervisor reads, and is refused here
    /// before anything is read or changed).
    pub fn may_change_admin(&self, what: (&str, &str)) -> AppResult<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("只有管理员可以修改{} / only admins change {}", what.0, what.1)))
        }
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub fn check_csrf(&self, token: &str) -> AppResult<()> {
        if !token.is_empty() && token.len() == self.csrf.len() && token.bytes().zip(self.csrf.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0 {
            Ok(())
        } else {
            Err(AppError::Forbidden("表单已过期，请刷新页面 / the form expired; reload the page (CSRF)".into()))
        }
    }
}
