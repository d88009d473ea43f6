//! `?format=pdf`: the report page printed by the server's own headless Chromium. The page is
//! written to a file in a fresh temporary folder (with an empty browser profile beside it) and
//! printed from there, so the browser needs no session; it is killed when it takes too long.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{AppError, AppResult};

/// How long Chromium may take to print one report.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The first of the usual Chromium names on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Prints a whole HTML page to PDF bytes.
pub fn print(html: &str) -> AppResult<Vec<u8>> {
    let browser = chromium().ok_or_else(|| {
        AppError::Unavailable(
            "服务器未安装 Chromium，无法生成 PDF；请在浏览器中打印本页 / no Chromium on the server (chromium, chromium-browser or google-chrome on PATH): print the page from your browser instead".into(),
        )
    })?;
    let dir = tempfile::tempdir().map_err(|e| AppError::io("a folder for printing", e))?;
    let page = dir.path().join("report.html");
    let out = dir.path().join("report.pdf");
    let profile = dir.path().join("profile");
    std::fs::write(&page, html).map_err(|e| AppError::io("the page to print", e))?;
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| AppError::Internal(format!("starting {}: {e}", browser.display())))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AppError::Unavailable(format!("Chromium did not print the report within {} s", TIMEOUT.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(AppError::Internal(format!("waiting for Chromium: {e}"))),
        }
    }
    match std::fs::read(&out) {
        Ok(bytes) if bytes.starts_with(b"%PDF") => Ok(bytes),
        _ => Err(AppError::Internal(format!("{} printed no PDF", browser.display()))),
    }
}
