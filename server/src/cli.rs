//! The command line of `shidao-server`: `serve` (the default) and `admin`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use crate::{admin, serve, serve_tls, shutdown_signal, AppState};

#[derive(Debug, Parser)]
#[command(name = "shidao-server", version, about = "shidao sync relay and review server")]
struct Cli {
    /// The central store (SQLite), created on first start.
    #[arg(long, env = "SHIDAO_DB", default_value = "shidao.db", global = true)]
    db: PathBuf,
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
    let state = AppState::open(&cli.db)?;
    match cli.command.unwrap_or(Command::Serve { listen: "127.0.0.1:7878".into(), tls_cert: None, tls_key: None }) {
        Command::Demo { .. } => unreachable!("handled above"),
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
        Command::Serve { listen, tls_cert, tls_key } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                match (tls_cert, tls_key) {
                    (Some(cert), Some(key)) => {
                        let listener = std::net::TcpListener::bind(&listen)?;
                        let addr = listener.local_addr()?;
                        println!("listening on https://{addr}");
                        tracing::info!(%addr, db = %cli.db.display(), "serving HTTPS");
                        serve_tls(listener, state, &cert, &key).await?;
                    }
                    _ => {
                        let listener = tokio::net::TcpListener::bind(&listen).await?;
                        let addr = listener.local_addr()?;
                        // Tests read this line to learn the port when listening on :0.
                        println!("listening on http://{addr}");
                        tracing::info!(%addr, db = %cli.db.display(), "serving HTTP");
                        serve(listener, state, shutdown_signal()).await?;
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
        println!("shidao demo: open {url}/ and sign in as supervisor `{}` with password `{}` (admin: `{}` / `{}`)",
            crate::demo::SUPERVISOR.0, crate::demo::SUPERVISOR.1, crate::demo::ADMIN.0, crate::demo::ADMIN.1);
        println!("demo store: {} (delete it to seed afresh)", db.display());
        server.await??;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
