//! The command line of `shidao-server`: `serve` (the default) and `admin`.

use std::path::PathBuf;

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use crate::{admin, listen, serve, serve_tls_with, serve_with, shutdown_signal, AppState};

#[derive(Debug, Parser)]
#[command(name = "shidao-server", version, about = "shidao sync relay and review server")]
struct Cli {
    /// The central store (SQLite), created on first start.
    #[arg(long, env = "SHIDAO_DB", default_value = "shidao.db", global = true)]
    db: PathBuf,
    /// The address devices reach this relay at (`https://shidao.example.cn`), put in
    /// enrolment QR codes (`admin enrol-qr`, `/admin/people/{user}/enrol`).
    #[arg(long, env = "SHIDAO_PUBLIC_URL", global = true, value_name = "URL")]
    public_url: Option<String>,
    /// The district's own CA certificate (PEM) that signed the relay's HTTPS certificate: its
    /// SHA-256 goes into enrolment QR codes and it is served at `/v1/ca.pem`.
    #[arg(long, env = "SHIDAO_ENROL_CA", global = true, value_name = "PEM")]
    enrol_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sync API (the default).
    Serve {
        #[arg(long, env = "SHIDAO_LISTEN", default_value = "127.0.0.1:7878")]
        listen: String,
        /// PEM certificate chain: serve HTTPS (with --tls-key).
        #[arg(long, env = "SHIDAO_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, env = "SHIDAO_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        backups: BackupArgs,
    },
    /// Start the server with a seeded demo programme (瓯海区, 19 schools) and print how to sign in.
    Demo {
        #[arg(long, env = "SHIDAO_LISTEN", default_value = "127.0.0.1:7878")]
        listen: String,
    },
    /// Administer programmes, schools, users, tasks and devices.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

/// Backups on a schedule (see `docs/reliability.md`, "Backups").
#[derive(Debug, Args)]
struct BackupArgs {
    /// Take backups into this folder, each in a folder of its own named by the time (UTC).
    #[arg(long, env = "SHIDAO_BACKUP_DIR", value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// How often: a whole number and s, m, h or d (`6h`, `30m`) [6h].
    #[arg(long, env = "SHIDAO_BACKUP_EVERY", value_parser = crate::backup::parse_every, value_name = "DURATION", requires = "backup_dir")]
    backup_every: Option<Duration>,
    /// Complete backups kept; older ones are removed after each new one [7].
    #[arg(long, env = "SHIDAO_BACKUP_KEEP", value_parser = clap::value_parser!(u64).range(1..), value_name = "N", requires = "backup_dir")]
    backup_keep: Option<u64>,
}

impl BackupArgs {
    fn schedule(self) -> Option<crate::backup::Schedule> {
        Some(crate::backup::Schedule {
            dir: self.backup_dir?,
            every: self.backup_every.unwrap_or(Duration::from_secs(6 * 3600)),
            keep: self.backup_keep.map_or(7, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }
}

/// What clients may hold of the relay (see `docs/reliability.md`, "Slow and hostile clients").
/// Times are in seconds (fractions allowed); a setting left out keeps the default of
/// [`listen::Limits`], given in brackets.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Time a client has to send a request's head, from when the connection waits for it (a new
    /// connection, or a kept-alive one after an answer) [20].
    #[arg(long, env = "SHIDAO_HEADER_TIMEOUT", value_parser = seconds, value_name = "SECS")]
    header_timeout: Option<Duration>,
    /// A connection on which nothing moves for this long while no request is handled (or whose
    /// client stopped reading an answer) is closed [15].
    #[arg(long, env = "SHIDAO_IDLE_TIMEOUT", value_parser = seconds, value_name = "SECS")]
    idle_timeout: Option<Duration>,
    /// Slowest average rate a request body may arrive at, once --body-grace has passed [256].
    #[arg(long, env = "SHIDAO_BODY_MIN_RATE", value_parser = clap::value_parser!(u64).range(1..), value_name = "BYTES_PER_SEC")]
    body_min_rate: Option<u64>,
    /// Time from when a request's body is first read before --body-min-rate applies [20].
    #[arg(long, env = "SHIDAO_BODY_GRACE", value_parser = seconds, value_name = "SECS")]
    body_grace: Option<Duration>,
    /// Time a TLS handshake may take [10].
    #[arg(long, env = "SHIDAO_TLS_HANDSHAKE_TIMEOUT", value_parser = seconds, value_name = "SECS")]
    tls_handshake_timeout: Option<Duration>,
    /// Connections held at once; past it new ones get 503 with Retry-After [the descriptor
    /// limit less 192].
    #[arg(long, env = "SHIDAO_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    max_connections: Option<u64>,
    /// Connections held at once per client address (IPv6: per /64); behind a trusted proxy,
    /// requests in flight per forwarded address [64].
    #[arg(long, env = "SHIDAO_MAX_CONNECTIONS_PER_ADDRESS", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    max_connections_per_address: Option<u64>,
    /// A reverse proxy whose X-Forwarded-For is believed (repeat, or comma-separated in the
    /// environment). Without one, the header is ignored.
    #[arg(long = "trusted-proxy", env = "SHIDAO_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    trusted_proxies: Vec<IpAddr>,
}

impl LimitArgs {
    fn limits(self) -> listen::Limits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let d = listen::Limits::default();
        listen::Limits {
            header_timeout: self.header_timeout.unwrap_or(d.header_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            body_min_rate: self.body_min_rate.unwrap_or(d.body_min_rate),
            body_grace: self.body_grace.unwrap_or(d.body_grace),
            tls_handshake_timeout: self.tls_handshake_timeout.unwrap_or(d.tls_handshake_timeout),
            max_connections: self.max_connections.map(count).or(d.max_connections),
            max_per_address: self.max_connections_per_address.map(count).unwrap_or(d.max_per_address),
            trusted_proxies: self.trusted_proxies,
            ..d
        }
    }
}

/// A positive number of seconds, at most a day.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{text} s: give a time above 0 and at most a day (86400)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHIDAO_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::Demo { listen }) = &cli.command {
        // The demo keeps its own store unless one is named.
        let db = if cli.db == std::path::Path::new("shidao.db") { PathBuf::from("shidao-demo.db") } else { cli.db.clone() };
        return demo(&db, listen);
    }
    // Backup and restore work on the store's files, not through an open store.
    if let Some(Command::Admin { command }) = &cli.command {
        let now = shidao_core::Clock::system().now();
        match command {
            admin::AdminCommand::Backup { dest } => {
                if !cli.db.is_file() {
                    return Err(format!("central store {} does not exist", cli.db.display()).into());
                }
                // Brought up to the current schema first, as the relay would on start.
                drop(crate::db::open(&cli.db)?);
                let m = crate::backup::backup(&cli.db, &crate::backup::attachments_dir_of(&cli.db), dest, now)?;
                crate::audit::backup_taken(&crate::db::open(&cli.db)?, now, crate::audit::CONSOLE, dest, &m)?;
                println!(
                    "backup {}: {} records, {} attachments ({} bytes), store {} bytes sha256 {}",
                    dest.display(), m.records, m.attachments, m.attachment_bytes, m.db_bytes, m.db_sha256
                );
                return Ok(());
            }
            admin::AdminCommand::Restore { src } => {
                let (m, aside) = crate::backup::restore(src, &cli.db, &crate::backup::attachments_dir_of(&cli.db), now)?;
                println!("restored {} (taken {}): {} records, {} attachments into {}", src.display(), m.created, m.records, m.attachments, cli.db.display());
                if let Some(aside) = aside {
                    println!("the store it replaced is kept as {}", aside.display());
                }
                return Ok(());
            }
            admin::AdminCommand::VerifyBackup { src } => {
                let m = crate::backup::verify(src)?;
                println!("backup {} (taken {}) is whole: {} records, {} attachments ({} bytes)", src.display(), m.created, m.records, m.attachments, m.attachment_bytes);
                return Ok(());
            }
            _ => {}
        }
    }
    // One relay per store: a second one, or a restore, is refused while this one serves.
    let _lock = match &cli.command {
        None | Some(Command::Serve { .. }) => Some(crate::backup::lock_store(&cli.db, "serve")?),
        _ => None,
    };
    let mut state = AppState::open(&cli.db)?;
    state.enrolment = std::sync::Arc::new(crate::enrolment::EnrolSettings::load(cli.public_url.as_deref(), cli.enrol_ca.as_deref())?);
    let command = match cli.command {
        Some(c) => c,
        // No command: `serve` with its defaults.
        None => Cli::parse_from(["shidao-server", "serve"]).command.ok_or("no command")?,
    };
    match command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Admin { command: admin::AdminCommand::EnrolQr { user } } => {
            let now = state.clock.now();
            let issued = state.with_db(|conn| crate::enrolment::issue(conn, &state.enrolment, &user, now, (crate::audit::CONSOLE, None)))?;
            let payload = issued.payload.ok_or("the relay has no public address: give --public-url (SHIDAO_PUBLIC_URL)")?;
            // The payload alone on the first line, for scripts; the code for reading out after.
            println!("{payload}\nenrolment code for {user}: {} (valid 7 days, once)", issued.code);
            Ok(())
        }
        Command::Admin { command } => {
            let now = state.clock.now();
            // An administrator at the console may see the cause of an internal error.
            let out = state.with_db(|conn| admin::run(conn, command, now)).map_err(|e| match e {
                crate::error::AppError::Internal(cause) => cause,
                other => other.to_string(),
            })?;
            println!("{out}");
            Ok(())
        }
        Command::Serve { listen, tls_cert, tls_key, limits, backups } => {
            let limits = limits.limits();
            let schedule = backups.schedule();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                if let Some(schedule) = schedule {
                    tracing::info!(dir = %schedule.dir.display(), every_secs = schedule.every.as_secs(), keep = schedule.keep, "backups on a schedule");
                    crate::spawn_backups(&state, schedule)?;
                }
                match (tls_cert, tls_key) {
                    (Some(cert), Some(key)) => {
                        let listener = listen::bind(&listen).await?.into_std()?;
                        let addr = listener.local_addr()?;
                        println!("listening on https://{addr}");
                        tracing::info!(%addr, db = %cli.db.display(), "serving HTTPS");
                        serve_tls_with(listener, state, &cert, &key, limits, shutdown_signal()).await?;
                    }
                    _ => {
                        let listener = listen::bind(&listen).await?;
                        let addr = listener.local_addr()?;
                        // Tests read this line to learn the port when listening on :0.
                        println!("listening on http://{addr}");
                        tracing::info!(%addr, db = %cli.db.display(), "serving HTTP");
                        serve_with(listener, state, limits, shutdown_signal()).await?;
                    }
                }
                Ok::<(), Box<dyn std::error::Error>>(())
            })
        }
    }
}

fn demo(db: &std::path::Path, listen: &str) -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::open(db)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let seeded = state.with_db(crate::demo::seeded)?;
        let server = tokio::spawn(serve(listener, state.clone(), shutdown_signal()));
        if !seeded {
            eprintln!("seeding the demo programme through the sync protocol (about a minute) …");
            let summary = crate::demo::seed(&state, &url).await?;
            eprintln!("{summary}");
        }
        println!("listening on {url}");
        println!("shidao demo: open {url}/ and sign in as supervisor `{}` with password `{}` (鱼峰: `{}` / `{}`; admin: `{}` / `{}`)",
            crate::demo::SUPERVISOR.0, crate::demo::SUPERVISOR.1, crate::demo::YUFENG_SUPERVISOR.0, crate::demo::YUFENG_SUPERVISOR.1,
            crate::demo::ADMIN.0, crate::demo::ADMIN.1);
        println!("demo store: {} (delete it to seed afresh)", db.display());
        server.await??;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_of(args: &[&str]) -> Result<listen::Limits, String> {
        let cli = Cli::try_parse_from(["shidao-server", "serve"].iter().chain(args)).map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Serve { limits, .. }) => Ok(limits.limits()),
            other => Err(format!("not serve: {other:?}")),
        }
    }

    #[test]
    fn limits_parse_with_defaults_and_refuse_bad_values_clearly() {
        let given = limits_of(&["--header-timeout", "2.5", "--max-connections-per-address", "8", "--trusted-proxy", "10.0.0.5", "--trusted-proxy", "::1"])
            .expect("valid");
        assert_eq!((given.header_timeout, given.max_per_address), (Duration::from_millis(2500), 8));
        assert_eq!(given.trusted_proxies, ["10.0.0.5".parse::<IpAddr>().expect("ip"), "::1".parse().expect("ip")]);
        assert_eq!(given.idle_timeout, listen::Limits::default().idle_timeout, "what is not given keeps its default");
        for (args, says) in [
            (&["--header-timeout", "0"][..], "above 0"),
            (&["--idle-timeout", "soon"][..], "not a number of seconds"),
            (&["--body-grace", "100000"][..], "at most a day"),
            (&["--max-connections", "0"][..], "max-connections"),
            (&["--trusted-proxy", "proxy.example"][..], "trusted-proxy"),
        ] {
            let err = limits_of(args).expect_err("refused");
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    fn schedule_of(args: &[&str]) -> Result<Option<crate::backup::Schedule>, String> {
        let cli = Cli::try_parse_from(["shidao-server", "serve"].iter().chain(args)).map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Serve { backups, .. }) => Ok(backups.schedule()),
            other => Err(format!("not serve: {other:?}")),
        }
    }

    #[test]
    fn backup_flags_parse_with_defaults_and_refuse_bad_values_clearly() {
        assert!(schedule_of(&[]).expect("none").is_none());
        let s = schedule_of(&["--backup-dir", "/b"]).expect("valid").expect("a schedule");
        assert_eq!((s.dir, s.every, s.keep), (PathBuf::from("/b"), Duration::from_secs(6 * 3600), 7));
        let s = schedule_of(&["--backup-dir", "/b", "--backup-every", "30m", "--backup-keep", "3"]).expect("valid").expect("a schedule");
        assert_eq!((s.every, s.keep), (Duration::from_secs(1800), 3));
        for (args, says) in [
            (&["--backup-every", "6h"][..], "backup-dir"),
            (&["--backup-dir", "/b", "--backup-every", "6 hours"][..], "the unit must be"),
            (&["--backup-dir", "/b", "--backup-keep", "0"][..], "backup-keep"),
        ] {
            let err = schedule_of(args).expect_err("refused");
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
