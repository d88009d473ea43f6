//! The relay stays up for everyone while thousands of clients are slow, idle or hostile: two
//! relay processes (plain HTTP and HTTPS) with their descriptor limit set to 1,024 face 3,000
//! attacking connections at once (heads that never finish, bodies trickling a byte a second,
//! connections opened and left idle, TLS handshakes never completed), every attacker
//! coming back a quarter of a second after it is dropped, thirty to a loopback address. Meanwhile 20 tablets
//! sync and a supervisor loads the dashboard; each must be served within a few seconds.
//!
//! What must hold: every attacking connection the relay took is closed within its configured
//! limit (plus scheduling slack); the relays' memory stays bounded and their descriptors return
//! to a handful once the attack stops; every record the tablets made is in the central store; a
//! client address past its connection cap gets `503` with `Retry-After`.
//!
//! Short by default (≈ 20 s). The soak: `SHIDAO_SLOW_CLIENTS=12000 SHIDAO_SLOW_SECS=120 cargo
//! test --release -p shidao-tests --test slow_clients -- --nocapture` (figures in
//! `docs/reliability.md`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shidao_core::sync::http::RetryPolicy;
use shidao_tests::{programme, school, Relay, Tablet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The limits the relays run with here (seconds; the defaults are far longer).
const HEADER_TIMEOUT: f64 = 2.0;
const IDLE_TIMEOUT: f64 = 2.0;
const BODY_GRACE: f64 = 2.0;
const BODY_MIN_RATE: u64 = 100;
const TLS_HANDSHAKE_TIMEOUT: f64 = 2.0;
const PER_ADDRESS: usize = 40;
/// What the test allows beyond a limit for the relay and the attackers to notice (two cores
/// shared with the rest of the suite).
const SLACK: Duration = Duration::from_secs(3);
/// Attackers per address (each address holds fewer than the cap, so the cap in all is what
/// they press on); the addresses are 127.0.0.2 … 127.0.0.251, then 127.0.1.2 …
const ATTACKERS_PER_ADDRESS: usize = 30;
/// Longest a legitimate request may take under the attack.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `POST /v1/sync` and header bytes every 300 ms, never the blank line.
    Head,
    /// A whole head announcing 1,000 bytes of body, then a byte a second.
    Trickle,
    /// Connects and sends nothing.
    Idle,
    /// Against the HTTPS relay: the first five bytes of a ClientHello, then nothing.
    Handshake,
}

impl Kind {
    /// The longest the relay may hold such a connection.
    fn limit(self) -> Duration {
        let secs = match self {
            Kind::Head => HEADER_TIMEOUT,
            Kind::Idle => IDLE_TIMEOUT.min(HEADER_TIMEOUT),
            Kind::Trickle => BODY_GRACE + 1.0,
            Kind::Handshake => TLS_HANDSHAKE_TIMEOUT,
        };
        Duration::from_secs_f64(secs)
    }
}

#[derive(Debug, Default)]
struct Tally {
    /// Connections made.
    tried: u64,
    /// Refused at once with 503 and Retry-After.
    refused: u64,
    /// Closed by the relay (with or without an answer), after being held.
    dropped: u64,
    /// Connections that could not even be made (the relay's backlog full).
    no_connect: u64,
    /// Held longer than the kind's limit plus slack.
    late: u64,
    /// Still open when the attacker gave up waiting.
    outlived: u64,
    longest: Duration,
}

/// One attacker: connects from `from`, behaves as `kind` until the relay closes the
/// connection, and connects again, until `until`.
async fn attacker(kind: Kind, from: IpAddr, target: SocketAddr, until: Instant, tally: Arc<Mutex<Tally>>) {
    let mut again = false;
    while Instant::now() < until {
        // A dropped attacker comes back after a quarter of a second.
        if std::mem::replace(&mut again, true) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let Ok(socket) = TcpSocket::new_v4() else { return };
        if socket.bind(SocketAddr::new(from, 0)).is_err() {
            return;
        }
        let stream = match tokio::time::timeout(Duration::from_secs(3), socket.connect(target)).await {
            Ok(Ok(s)) => s,
            _ => {
                tally.lock().expect("tally").no_connect += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let start = Instant::now();
        let outcome = behave(kind, stream, kind.limit() + SLACK + Duration::from_secs(2)).await;
        let held = start.elapsed();
        let mut t = tally.lock().expect("tally");
        t.tried += 1;
        match outcome {
            Outcome::Refused => t.refused += 1,
            Outcome::Closed => {
                t.dropped += 1;
                t.longest = t.longest.max(held);
                if held > kind.limit() + SLACK {
                    t.late += 1;
                }
            }
            Outcome::Outlived => t.outlived += 1,
        }
    }
}

enum Outcome {
    Refused,
    Closed,
    Outlived,
}

async fn behave(kind: Kind, mut s: TcpStream, give_up: Duration) -> Outcome {
    let opening: &[u8] = match kind {
        Kind::Head => b"POST /v1/sync HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer x\r\nX-Pad",
        Kind::Trickle => b"POST /v1/enrol HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        Kind::Idle => b"",
        Kind::Handshake => b"\x16\x03\x01\x02\x00",
    };
    if s.write_all(opening).await.is_err() {
        return Outcome::Closed;
    }
    let every = match kind {
        Kind::Head => Duration::from_millis(300),
        _ => Duration::from_secs(1),
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let deadline = tokio::time::sleep(give_up);
    tokio::pin!(deadline);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let text = String::from_utf8_lossy(&answer);
                    return if text.starts_with("HTTP/1.1 503") && text.to_ascii_lowercase().contains("retry-after:") { Outcome::Refused } else { Outcome::Closed };
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                let byte: &[u8] = match kind {
                    Kind::Head => b"x",
                    Kind::Trickle => b" ",
                    Kind::Idle | Kind::Handshake => b"",
                };
                if !byte.is_empty() && s.write_all(byte).await.is_err() {
                    // The relay closed while we wrote; read what it said, if anything.
                    continue;
                }
            }
            _ = &mut deadline => return Outcome::Outlived,
        }
    }
}

/// Starts the relay with its descriptor limit (soft and hard) at 1,024, through a shell that
/// sets it and then becomes the relay (`exec`, same pid).
fn limited_relay(dir: &Path, db: &Path, extra: &[&str]) -> Relay {
    let wrapper = dir.join(format!("relay-1024-{}.sh", db.file_stem().and_then(|s| s.to_str()).unwrap_or("relay")));
    std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -n 1024 || exit 1\nexec '{}' \"$@\"\n", env!("CARGO_BIN_EXE_relay"))).expect("wrapper");
    let made = std::process::Command::new("chmod").arg("+x").arg(&wrapper).status().expect("chmod");
    assert!(made.success());
    let limits = [
        "--header-timeout".to_string(),
        HEADER_TIMEOUT.to_string(),
        "--idle-timeout".into(),
        IDLE_TIMEOUT.to_string(),
        "--body-grace".into(),
        BODY_GRACE.to_string(),
        "--body-min-rate".into(),
        BODY_MIN_RATE.to_string(),
        "--tls-handshake-timeout".into(),
        TLS_HANDSHAKE_TIMEOUT.to_string(),
        "--max-connections-per-address".into(),
        PER_ADDRESS.to_string(),
    ];
    let mut args: Vec<&str> = limits.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let relay = Relay::start_with(&wrapper, db, &args);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relay.pid())).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line").to_string();
    assert!(line.split_whitespace().filter(|w| *w == "1024").count() == 2, "the relay runs with 1,024 descriptors: {line}");
    relay
}

/// A field of `/proc/PID/status` (e.g. `VmRSS`), without its unit.
fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().trim_end_matches(" kB").to_string()))
}

fn rss_kb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS").and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn addr_of(url: &str) -> SocketAddr {
    let host = url.rsplit("://").next().expect("host");
    host.parse().expect("socket address")
}

/// Latencies of legitimate requests, in order of arrival.
#[derive(Debug, Default)]
struct Served {
    /// Every request answered (in time or not).
    times: Vec<Duration>,
    /// Answered, but later than [`SERVED_WITHIN`].
    slow: Vec<String>,
    /// Not answered as it should be.
    failures: Vec<String>,
    /// Page loads a person would have reloaded (a `503` or a dropped connection), and why.
    reloads: Vec<String>,
}

impl Served {
    fn add(&mut self, what: &str, took: Duration, ok: Result<(), String>) {
        match ok {
            Ok(()) => {
                self.times.push(took);
                if took > SERVED_WITHIN {
                    self.slow.push(format!("{what}: served but took {took:?}"));
                }
            }
            Err(e) => self.failures.push(format!("{what}: {e} (after {took:?})")),
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(((t.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
    }
}

/// A page request as a person makes it: a refusal (`503 busy`) or a dropped connection is met
/// by a reload half a second later, as long as the whole stays within [`SERVED_WITHIN`]; the
/// reloads are counted. The last error if it never succeeded.
async fn until_served<F, Fut>(served: &Mutex<Served>, attempt: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() + Duration::from_millis(500) < SERVED_WITHIN => {
                served.lock().expect("served").reloads.push(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed to test HTTPS (Debian package `openssl`)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// Enrolment codes for `n` tablets, spread over the programme's three inspectors.
fn codes(db: &Path, n: usize) -> Vec<String> {
    let users = ["wang", "li", "chen"];
    let mut codes: Vec<String> = programme(db).into_iter().filter(|(u, _)| users.contains(&u.as_str())).map(|(_, c)| c).collect();
    let conn = shidao_server::db::open(db).expect("store");
    while codes.len() < n {
        let user = users[codes.len() % users.len()];
        codes.push(shidao_server::accounts::new_enrol_code(&conn, user, shidao_core::Clock::system().now()).expect("code"));
    }
    codes
}

async fn enrol_all(url: &str, codes: &[String], dir: &Path, tag: &str, cert: Option<&[u8]>) -> Vec<Tablet> {
    let mut tablets = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let mut t = Tablet::enrol_trusting(url, code, &dir.join(format!("{tag}-{i}.db")), cert).await.expect("enrol");
        // The driver's own retries and backoff, as in the app (a 503 is retried like a 5xx).
        t.http.policy = RetryPolicy { first_delay: Duration::from_millis(200), ..RetryPolicy::default() };
        tablets.push(t);
    }
    tablets
}

/// Makes a record and syncs, `rounds` times, while the attack lasts; every sync timed.
async fn tablet_work(t: Tablet, rounds: usize, pause: Duration, served: Arc<Mutex<Served>>) -> (Tablet, usize) {
    let mut made = 0;
    for r in 0..rounds {
        let school_id = if t.editor.user.as_str() == "chen" { "ouhai-b" } else { "ouhai-a" };
        t.store.create("inspection-visit", &school(school_id), &t.editor).expect("record");
        made += 1;
        let start = Instant::now();
        let result = t.sync().await;
        let ok = match result {
            // A record whose earlier sync failed goes with this one.
            Ok(s) if s.accepted >= 1 && s.refused.is_empty() => Ok(()),
            Ok(s) => Err(format!("accepted {}, refused {:?}", s.accepted, s.refused)),
            Err(e) => Err(e.to_string()),
        };
        served.lock().expect("served").add(&format!("sync {r} of {}", t.editor.device.as_str()), start.elapsed(), ok);
        tokio::time::sleep(pause).await;
    }
    (t, made)
}

/// Signs the supervisor in (before the attack); returns a client and the session cookie.
async fn supervisor(url: &str, db: &Path) -> (reqwest::Client, String) {
    let conn = shidao_server::db::open(db).expect("store");
    let hash = shidao_server::web::auth::hash_password("slow-clients-pw").expect("hash");
    conn.execute("UPDATE users SET password_hash = ?1 WHERE id = 'sup'", [hash]).expect("password");
    let http = reqwest::Client::builder().tls_backend_rustls().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let cookie = |r: &reqwest::Response, name: &str| -> Option<String> {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=')?;
            (k == name && !v.is_empty()).then(|| format!("{k}={v}"))
        })
    };
    let form = http.get(format!("{url}/login")).send().await.expect("login form");
    let login = cookie(&form, "shidao_login").expect("login cookie");
    let page = form.text().await.expect("form");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("csrf").to_string();
    let r = http
        .post(format!("{url}/login"))
        .header("cookie", login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&user=sup&password=slow-clients-pw"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status().as_u16(), 303, "the supervisor signs in");
    let session = cookie(&r, "shidao_session").expect("session");
    (http, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_hostile_clients_do_not_lock_anyone_out() {
    let fds = shidao_server::listen::raise_fd_limit().unwrap_or(u64::MAX);
    let slow = env_or("SHIDAO_SLOW_CLIENTS", 3000);
    let secs = env_or("SHIDAO_SLOW_SECS", 8) as u64;
    assert!(fds > slow as u64 + 500, "the test needs {} descriptors for its own sockets; it has {fds}", slow + 500);
    let dir = tempfile::tempdir().expect("dir");

    // 1. Two relays at 1,024 descriptors: plain HTTP (16 tablets, the supervisor) and HTTPS
    //    (4 tablets), each on a central store of its own.
    let db = dir.path().join("central.db");
    let plain_codes = codes(&db, 16);
    let relay = limited_relay(dir.path(), &db, &[]);
    let (cert, key) = self_signed(dir.path());
    let tls_db = dir.path().join("central-tls.db");
    let tls_codes = codes(&tls_db, 4);
    let tls_relay = limited_relay(dir.path(), &tls_db, &["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()]);
    let tls_url = tls_relay.url.replace("127.0.0.1", "localhost");
    let pem = std::fs::read(&cert).expect("cert");
    let plain_tablets = enrol_all(&relay.url, &plain_codes, dir.path(), "plain", None).await;
    let tls_tablets = enrol_all(&tls_url, &tls_codes, dir.path(), "tls", Some(&pem)).await;
    let (sup, session) = supervisor(&relay.url, &db).await;
    let (pid, tls_pid) = (relay.pid(), tls_relay.pid());
    let (rss_before, tls_rss_before) = (rss_kb(pid), rss_kb(tls_pid));

    // 2. The attack: a quarter of the attackers of each kind, thirty to an address, each
    //    reconnecting when dropped until the attack is over.
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tallies: Vec<(Kind, Arc<Mutex<Tally>>)> =
        [Kind::Head, Kind::Trickle, Kind::Idle, Kind::Handshake].into_iter().map(|k| (k, Arc::default())).collect();
    // The attackers run on threads of their own, as they would on other machines: the
    // legitimate clients' latencies are then the relay's, not this process's queue.
    let attack_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("attack runtime");
    let mut attackers = Vec::new();
    for i in 0..slow {
        let (kind, tally) = &tallies[i % tallies.len()];
        let target = if *kind == Kind::Handshake { addr_of(&tls_relay.url) } else { addr_of(&relay.url) };
        let k = i / ATTACKERS_PER_ADDRESS;
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, (k / 250) as u8, 2 + (k % 250) as u8));
        let (kind, tally) = (*kind, tally.clone());
        attackers.push(attack_rt.spawn(async move {
            // Spread over the first second, as a flood of new connections arrives.
            tokio::time::sleep(Duration::from_micros((i as u64 * 1_000_000) / slow as u64)).await;
            attacker(kind, from, target, until, tally).await
        }));
    }
    // Let the attack fill the relays before the legitimate clients start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fds_under_attack = open_fds(pid);

    // 3. While it holds: the tablets make records and sync, the supervisor loads the dashboard,
    //    and a probe asks /healthz; every one of them timed. Memory sampled throughout.
    let served = Arc::new(Mutex::new(Served::default()));
    let rounds = ((secs.saturating_sub(3)).max(2) / 2) as usize;
    // A store is used from one thread: the tablets run on this one, the attack on the others.
    let local = tokio::task::LocalSet::new();
    let mut work = Vec::new();
    for t in plain_tablets.into_iter().chain(tls_tablets) {
        work.push(local.spawn_local(tablet_work(t, rounds, Duration::from_secs(1), served.clone())));
    }
    let dash = {
        let (served, url) = (served.clone(), relay.url.clone());
        tokio::spawn(async move {
            while Instant::now() + Duration::from_secs(2) < until {
                let start = Instant::now();
                let ok = until_served(&served, || async {
                    let r = sup.get(format!("{url}/")).header("cookie", &session).timeout(SERVED_WITHIN).send().await.map_err(|e| e.to_string())?;
                    if r.status().as_u16() != 200 {
                        return Err(format!("status {}", r.status()));
                    }
                    let t = r.text().await.map_err(|e| e.to_string())?;
                    if t.contains("瓯海区实验中学") { Ok(()) } else { Err(format!("dashboard without the schools: {}", &t[..t.len().min(300)])) }
                })
                .await;
                served.lock().expect("served").add("dashboard", start.elapsed(), ok);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let probe = {
        let (served, url) = (served.clone(), relay.url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().tls_backend_rustls().build().expect("client");
            while Instant::now() + Duration::from_secs(1) < until {
                let start = Instant::now();
                let ok = until_served(&served, || async {
                    let r = http.get(format!("{url}/healthz")).timeout(SERVED_WITHIN).send().await.map_err(|e| e.to_string())?;
                    if r.status().as_u16() == 200 { Ok(()) } else { Err(format!("status {}", r.status())) }
                })
                .await;
                served.lock().expect("served").add("healthz", start.elapsed(), ok);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (peak, made, tablets) = local
        .run_until(async move {
            let mut peak = (0u64, 0u64);
            while Instant::now() < until {
                peak = (peak.0.max(rss_kb(pid)), peak.1.max(rss_kb(tls_pid)));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let mut made = 0;
            let mut tablets = Vec::new();
            for w in work {
                let (t, n) = w.await.expect("tablet");
                made += n;
                tablets.push(t);
            }
            (peak, made, tablets)
        })
        .await;
    dash.await.expect("dashboard");
    probe.await.expect("probe");
    for a in attackers {
        a.await.expect("attacker");
    }
    attack_rt.shutdown_background();
    let attack_took = started.elapsed();

    // 4. The figures.
    let served = std::mem::take(&mut *served.lock().expect("served"));
    let mut all = Tally::default();
    for (kind, tally) in &tallies {
        let t = tally.lock().expect("tally");
        println!(
            "slow_clients[{kind:?}]: connections={} refused_503={} dropped={} longest_held={:.1}s (limit {:.1}s) late={} outlived={} not_connected={}",
            t.tried, t.refused, t.dropped, t.longest.as_secs_f64(), kind.limit().as_secs_f64(), t.late, t.outlived, t.no_connect
        );
        all.tried += t.tried;
        all.refused += t.refused;
        all.dropped += t.dropped;
        all.late += t.late;
        all.outlived += t.outlived;
        all.no_connect += t.no_connect;
    }
    println!(
        "slow_clients: attackers={slow} for {:.0}s: connections={} refused_503={} dropped={} late={} outlived={}; legitimate served={} (over {}s: {}) failed={} page reloads={} p50={}ms p99={}ms max={}ms; \
         relay fds under attack={fds_under_attack}; RSS plain {}→{} MB peak, https {}→{} MB peak",
        attack_took.as_secs_f64(),
        all.tried,
        all.refused,
        all.dropped,
        all.late,
        all.outlived,
        served.times.len(),
        SERVED_WITHIN.as_secs(),
        served.slow.len(),
        served.failures.len(),
        served.reloads.len(),
        served.percentile(0.5).as_millis(),
        served.percentile(0.99).as_millis(),
        served.percentile(1.0).as_millis(),
        rss_before / 1024,
        peak.0 / 1024,
        tls_rss_before / 1024,
        peak.1 / 1024,
    );

    // 5. What must hold. Everyone legitimate was served in time; the attack was real (thousands
    //    of connections held, the relay near its cap); none was held past its limit.
    assert!(served.failures.is_empty(), "legitimate requests not served:\n{}", served.failures.join("\n"));
    assert!(served.slow.is_empty(), "legitimate requests not served in {SERVED_WITHIN:?}:\n{}", served.slow.join("\n"));
    assert!(served.times.len() >= 20 * rounds, "every tablet synced every round: {} served", served.times.len());
    assert!(all.tried >= slow as u64, "every attacker connected at least once: {all:?}");
    assert!(fds_under_attack > 500, "the attack filled the relay: it held only {fds_under_attack} descriptors");
    let log = relay.log();
    let accept_failed = log.matches("accept failed").count();
    println!("slow_clients: plain relay accept errors={accept_failed}; {}", log.lines().filter(|l| l.contains("accept failed")).take(2).collect::<Vec<_>>().join(" | "));
    assert_eq!((all.late, all.outlived), (0, 0), "slow connections held past their limits");
    for (kind, tally) in &tallies {
        assert!(tally.lock().expect("tally").dropped > 0, "no {kind:?} connection was held and dropped");
    }
    //    Memory bounded: a relay holding ~900 hostile connections stays within 150 MB more
    //    than idle.
    for (name, before, peak) in [("plain", rss_before, peak.0), ("https", tls_rss_before, peak.1)] {
        assert!(peak < before + 150 * 1024, "{name} relay grew from {before} kB to {peak} kB");
    }
    //    Descriptors back to a handful once the attack is over and its last connections timed out.
    tokio::time::sleep(Duration::from_secs_f64(IDLE_TIMEOUT.max(HEADER_TIMEOUT)) + Duration::from_secs(1)).await;
    for (name, p) in [("plain", pid), ("https", tls_pid)] {
        let n = open_fds(p);
        assert!(n < 64, "{name} relay still holds {n} descriptors after the attack");
    }
    //    Nothing stored lost: every record made is in a central store, and the stores are sound.
    let count = |db: &Path| -> (i64, String) {
        let conn = rusqlite::Connection::open(db).expect("store");
        (conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0)).expect("count"), conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check"))
    };
    let ((plain_records, ok1), (tls_records, ok2)) = (count(&db), count(&tls_db));
    assert_eq!((ok1.as_str(), ok2.as_str()), ("ok", "ok"));
    assert_eq!((plain_records + tls_records) as usize, made, "records made on tablets and stored centrally");
    for t in &tablets {
        assert_eq!(t.store.unsynced().expect("unsynced").len(), 0, "{} has unsynced records", t.editor.device.as_str());
    }

    // 6. One address past its cap: the first 40 connections are held, the 41st is told 503 with
    //    Retry-After at once.
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 250));
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(from, 0)).expect("bind");
        held.push(socket.connect(addr_of(&relay.url)).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut extra = socket.connect(addr_of(&relay.url)).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(3), extra.read_to_string(&mut answer)).await.expect("answered at once").expect("read");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: ") && answer.contains(r#""code":"busy""#), "{answer}");
    drop(held);
    let log = relay.log() + &tls_relay.log();
    assert!(!log.contains("panicked"), "a relay panicked:\n{log}");
    assert!(log.contains("connection limits"), "the relay logs its limits at start");
}
