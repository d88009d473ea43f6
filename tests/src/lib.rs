//! Shared pieces of the end-to-end tests and benchmarks: people, schools, a real relay process
//! on loopback, and tablets (a device store plus the HTTP sync driver); for fault injection, a
//! TCP proxy that cuts, delays and duplicates, and the checker of what must hold afterwards.

pub mod invariants;
pub mod load;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use shidao_core::store::{Store, StoreOptions};
use shidao_core::sync::enrolment::Enrolment;
use shidao_core::sync::http::{Cancel, DriverError, HttpSync, RetryPolicy, Summary};
use shidao_core::{DeviceId, Editor, Role, SchoolId, UserId};

/// A person on their own tablet.
pub fn person(user: &str, role: Role) -> Editor {
    Editor {
        user: UserId::new(user).expect("valid user id"),
        device: DeviceId::new(format!("tablet-{user}")).expect("valid device id"),
        role,
    }
}

pub fn school(id: &str) -> SchoolId {
    SchoolId::new(id).expect("valid school id")
}

/// A `shidao-server` process on 127.0.0.1 with a port of its own choosing.
pub struct Relay {
    child: Child,
    pub url: String,
    pub db: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
}

impl Relay {
    /// Starts the relay binary `bin` on the central store `db`; returns once it listens.
    pub fn start(bin: &Path, db: &Path) -> Relay {
        Relay::start_with(bin, db, &[])
    }

    /// Starts the relay with extra `serve` arguments (e.g. a TLS certificate and key).
    pub fn start_with(bin: &Path, db: &Path, extra: &[&str]) -> Relay {
        Relay::start_logging(bin, db, extra, &db.with_extension("log"))
    }

    /// Starts the relay writing its log to `log` (e.g. off a disk that is meant to fill up).
    pub fn start_logging(bin: &Path, db: &Path, extra: &[&str], log: &Path) -> Relay {
        let log = log.to_path_buf();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut child = Command::new(bin)
            .args(["--db", &db.display().to_string(), "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => panic!("relay exited before listening; see {}", log.display()),
            }
        };
        // Keep draining stdout so the relay never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Relay { child, url, db: db.to_path_buf(), bin: bin.to_path_buf(), log, extra }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the relay to exit by itself; `Some(success)` once it has.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<bool> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Kills the relay with SIGKILL (no chance to finish anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts it again on the same store (a new port).
    pub fn restart(&mut self) {
        self.kill();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        *self = Relay::start_logging(&self.bin, &self.db, &extra, &self.log);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tablet: its own store file, enrolled with the relay.
pub struct Tablet {
    pub store: Store,
    pub editor: Editor,
    pub token: String,
    pub http: HttpSync,
    pub path: PathBuf,
}

impl Tablet {
    /// Enrols a new tablet with a one-time code and opens its store at `path`.
    pub async fn enrol(url: &str, code: &str, path: &Path) -> Result<Tablet, DriverError> {
        Tablet::enrol_trusting(url, code, path, None).await
    }

    /// Enrols trusting an extra certificate (a test server's own).
    pub async fn enrol_trusting(url: &str, code: &str, path: &Path, cert_pem: Option<&[u8]>) -> Result<Tablet, DriverError> {
        Tablet::enrol_full(url, code, path, cert_pem, StoreOptions::default()).await
    }

    /// Enrols with store options of its own (e.g. a clock hours off).
    pub async fn enrol_full(
        url: &str,
        code: &str,
        path: &Path,
        cert_pem: Option<&[u8]>,
        opts: StoreOptions,
    ) -> Result<Tablet, DriverError> {
        let mut http = HttpSync::new(url, cert_pem)?;
        http.policy = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
        let store = Store::open_with(path, opts).expect("store");
        // As an app enrols: the core keeps the enrolment in the tablet's store.
        let enrolment = Enrolment::enrol(&http, &store, code, "测试平板", None).await?;
        Ok(Tablet { editor: enrolment.editor.clone(), token: enrolment.token().to_string(), store, http, path: path.to_path_buf() })
    }

    /// Points the tablet at a (restarted) relay.
    pub fn reconnect(&mut self, url: &str) {
        let policy = self.http.policy.clone();
        self.http = HttpSync::new(url, None).expect("url");
        self.http.policy = policy;
    }

    /// Syncs as the enrolment the store keeps.
    pub async fn sync(&self) -> Result<Summary, DriverError> {
        let enrolment = Enrolment::required(&self.store)?;
        enrolment.sync(&self.http, &self.store, &Cancel::new(), |_, _| {}).await
    }
}

/// Sets up a programme on a central store file: two schools of seed 004's kinds, a team of
/// inspectors and an expert in the first, one inspector in the second, and a supervisor; returns
/// one enrolment code per user, in the order `wang, li, zhao, chen, sup`.
pub fn programme(db: &Path) -> Vec<(String, String)> {
    use shidao_server::accounts;
    let conn = shidao_server::db::open(db).expect("central store");
    accounts::add_programme(&conn, "ouhai", "瓯海区初中全面提升行动", Some(("2026-09-01", "2027-01-31"))).expect("programme");
    accounts::add_school(&conn, "ouhai", "ouhai-a", "瓯海区实验中学", "示范", "智慧课堂").expect("school");
    accounts::add_school(&conn, "ouhai", "ouhai-b", "瓯海区第二中学", "潜质", "作业改革").expect("school");
    let people = [
        ("wang", "王老师", Role::Inspector, vec!["ouhai-a".to_string()]),
        ("li", "李老师", Role::Inspector, vec!["ouhai-a".to_string()]),
        ("zhao", "赵专家", Role::Expert, vec!["ouhai-a".to_string()]),
        ("chen", "陈老师", Role::Inspector, vec!["ouhai-b".to_string()]),
        ("sup", "周督导", Role::Supervisor, vec![]),
    ];
    let mut codes = Vec::new();
    for (id, name, role, schools) in people {
        accounts::add_user(&conn, id, name, role, Some("ouhai"), &schools, None, 0).expect("user");
        let code = accounts::new_enrol_code(&conn, id, shidao_core::Clock::system().now()).expect("code");
        codes.push((id.to_string(), code));
    }
    accounts::add_task(&conn, "ouhai", None, "t-backbone", "培养语数英30名核心骨干", 30.0, "名", "2026-09-01", "2027-08-31")
        .expect("task");
    codes
}
