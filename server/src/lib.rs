//! shidao-server: the relay that syncs devices into the central SQLite store, enforces who may
//! read and write what, and (to come) serves supervisors' review pages and exports.
//!
//! [`app`] builds the router from an [`AppState`], so tests can call it without a socket;
//! [`serve`] runs it on a listener with graceful shutdown, under the connection limits of
//! [`listen`]; `main.rs` only parses the command line.

pub mod accounts;
pub mod admin;
pub mod attachments;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod demo;
pub mod directory;
pub mod enrolment;
pub mod db;
pub mod error;
pub mod forms;
pub mod http;
pub mod listen;
pub mod programme;
pub mod projection;
pub mod sync;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use rusqlite::Connection;
use shidao_core::Clock;
use tracing::Instrument;

use crate::error::{AppError, AppResult};

/// What every request shares: the central store (one writer connection), where attachments
/// live, and the clock.
#[derive(Clone)]
pub struct AppState {
    db: Arc<Mutex<Connection>>,
    db_path: Option<PathBuf>,
    /// Mark session cookies `Secure` (when serving HTTPS).
    pub secure_cookies: bool,
    pub attachments_dir: PathBuf,
    pub clock: Clock,
    /// Wrong passwords per client address and user name on the sign-in form (shared by every
    /// clone of the state).
    pub sign_in_throttle: Arc<web::throttle::SignInThrottle>,
    /// Wrong enrolment codes per client address.
    pub enrol_throttle: Arc<web::throttle::EnrolThrottle>,
    /// The public address and district CA that enrolment QR codes carry.
    pub enrolment: Arc<enrolment::EnrolSettings>,
}

impl AppState {
    /// Opens (creating if needed) the central store at `db`; attachments go beside it.
    pub fn open(db: &Path) -> Result<AppState, db::DbError> {
        let conn = db::open(db)?;
        // Programmes from before the form registry get the built-in library of forms.
        forms::install_missing_libraries(&conn, Clock::system().now())
            .map_err(|e| db::DbError::Setup { path: db.display().to_string(), reason: e.to_string() })?;
        let mut state = AppState::with_connection(conn, backup::attachments_dir_of(db));
        state.db_path = Some(db.to_path_buf());
        Ok(state)
    }

    pub fn with_connection(conn: Connection, attachments_dir: PathBuf) -> AppState {
        AppState {
            db: Arc::new(Mutex::new(conn)),
            db_path: None,
            secure_cookies: false,
            attachments_dir,
            clock: Clock::system(),
            sign_in_throttle: Arc::default(),
            enrol_throttle: Arc::default(),
            enrolment: Arc::default(),
        }
    }

    /// Runs store work on the blocking pool, holding the one connection.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> AppResult<T> + Send + 'static) -> AppResult<T> {
        self.blocking_mut(move |c| f(c)).await
    }

    pub async fn blocking_mut<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let db = self.db.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| AppError::Internal(format!("worker failed: {e}")))?
    }

    /// A read-only connection of its own for long reads (exports), or the shared one for an
    /// in-memory store.
    pub fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> AppResult<T>) -> AppResult<T> {
        match &self.db_path {
            Some(path) => {
                let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                f(&conn)
            }
            None => self.with_db(f),
        }
    }

    /// Direct access for admin commands and tests.
    pub fn with_db<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let conn = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// Gives every request an id (from `x-request-id` or new), logs it with the method, path,
/// client address, status and time, and returns it in the response.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The client's address as the connection limits and throttles count it (none when the
    // router is called without `serve`, in tests).
    let client = req.extensions().get::<listen::ClientAddr>().map(|c| c.0.to_string()).unwrap_or_default();
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path(), client = %client);
    let start = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(status = resp.status().as_u16(), ms = start.elapsed().as_millis() as u64, "done"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    http::routes().merge(web::routes()).with_state(state).layer(axum::middleware::from_fn(request_id))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Serves plain HTTP on a bound listener until `shutdown` resolves, with the default
/// [`listen::Limits`]; requests in flight finish.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    serve_with(listener, state, listen::Limits::default(), shutdown).await
}

/// Serves plain HTTP under the given limits until `shutdown` resolves; requests in flight finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    spawn_housekeeping(state.clone());
    listen::run(listener, app(state), None, limits, shutdown).await
}

/// Every six hours from the start: removes attachment uploads abandoned for two weeks
/// ([`attachments::sweep_abandoned`]), so cut uploads nobody resumes do not fill the disk.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(6 * 3600));
        loop {
            every.tick().await;
            let now = state.clock.now();
            let dir = state.attachments_dir.clone();
            match state.blocking(move |c| attachments::sweep_abandoned(c, &dir, now, attachments::ABANDONED_UPLOAD_SECS)).await {
                Ok(s) if s.uploads > 0 => tracing::info!(uploads = s.uploads, bytes = s.bytes, "abandoned uploads removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping abandoned uploads failed"),
            }
        }
    });
}

/// Backups on a schedule ([`backup::scheduled`]) from a thread of the blocking pool, reading
/// the store through a connection of its own: the relay keeps serving and writing meanwhile, and a
/// failed backup (a full disk, a folder it may not write) is logged and tried again at the next
/// time. Needs a store on disk.
pub fn spawn_backups(state: &AppState, schedule: backup::Schedule) -> Result<(), String> {
    let db = state.db_path.clone().ok_or("backups need a central store on disk")?;
    let (attachments, clock, state) = (state.attachments_dir.clone(), state.clock.clone(), state.clone());
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + schedule.every;
        let mut every = tokio::time::interval_at(start, schedule.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let (db, attachments, schedule, now) = (db.clone(), attachments.clone(), schedule.clone(), clock.now());
            let began = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || backup::scheduled(&db, &attachments, &schedule, now)).await {
                Ok(Ok((dest, m))) => {
                    tracing::info!(
                        folder = %dest.display(), records = m.records, attachments = m.attachments, bytes = m.db_bytes + m.attachment_bytes,
                        ms = began.elapsed().as_millis() as u64, "backup complete"
                    );
                    if let Err(e) = state.blocking(move |c| audit::backup_taken(c, now, "schedule", &dest, &m)).await {
                        tracing::error!(error = %e, "backup complete, but its audit row was not written");
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "backup failed; nothing of it was kept; the relay goes on serving"),
                Err(e) => tracing::error!(error = %e, "backup failed"),
            }
        }
    });
    Ok(())
}

/// Serves HTTPS on a bound listener with the given certificate chain and key (PEM files), with
/// the default [`listen::Limits`], until the process is asked to stop; requests in flight get
/// 30 seconds to finish.
pub async fn serve_tls(listener: std::net::TcpListener, state: AppState, cert: &Path, key: &Path) -> std::io::Result<()> {
    serve_tls_with(listener, state, cert, key, listen::Limits::default(), shutdown_signal()).await
}

/// Serves HTTPS under the given limits until `shutdown` resolves.
pub async fn serve_tls_with(
    listener: std::net::TcpListener,
    state: AppState,
    cert: &Path,
    key: &Path,
    limits: listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls_acceptor(cert, key)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    spawn_housekeeping(state.clone());
    listen::run(listener, app(state), Some(acceptor), limits, shutdown).await
}

/// The TLS side of the relay: the certificate chain and key from PEM files, HTTP/1.1 offered.
fn tls_acceptor(cert: &Path, key: &Path) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} {}: {e}", path.display()))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("cannot read the certificate chain", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("cannot read the certificate chain", cert, &e))?;
    if chain.is_empty() {
        return Err(invalid("no certificate in", cert, &"the file holds no PEM certificate"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("cannot read the private key", key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS setup for", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid("the key does not suit the certificate", key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
