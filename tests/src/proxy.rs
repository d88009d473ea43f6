//! A TCP proxy between tablets and the relay, on loopback, that misbehaves on purpose: it cuts
//! connections at random byte offsets (in either direction), delays them, and sends a copy of
//! everything a tablet sent over a connection to the relay a second time (a duplicated request).
//! The relay behind it can be replaced (after a restart on a new port) while tablets keep the
//! proxy's address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shidao_core::sample::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// How often each fault happens, in per mille of exchanges (cuts, delays) or connections
/// (duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub cut_up: u32,
    pub cut_down: u32,
    pub delay: u32,
    pub duplicate: u32,
    /// Cuts fall in `0..max_offset` bytes of the direction cut.
    pub max_offset: usize,
    pub max_delay: Duration,
}

impl Faults {
    /// No faults: a plain pass-through.
    pub const NONE: Faults = Faults { cut_up: 0, cut_down: 0, delay: 0, duplicate: 0, max_offset: 1, max_delay: Duration::ZERO };

    /// A hostile network: about one exchange in three is cut, one in five delayed; one
    /// connection in eight is sent twice.
    pub fn hostile() -> Faults {
        Faults { cut_up: 150, cut_down: 180, delay: 200, duplicate: 120, max_offset: 1_200, max_delay: Duration::from_millis(250) }
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub delays: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
}

impl Stats {
    pub fn faults(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed) + self.delays.load(Ordering::Relaxed) + self.duplicates.load(Ordering::Relaxed)
    }
    pub fn line(&self) -> String {
        format!(
            "connections={} cuts={} delays={} duplicates={} upstream_down={}",
            self.connections.load(Ordering::Relaxed),
            self.cuts.load(Ordering::Relaxed),
            self.delays.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed)
        )
    }
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    stats: Stats,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').parse().expect("relay address 127.0.0.1:port")
}

/// What happens to one exchange (a request and its response) on a connection.
#[derive(Default)]
struct Plan {
    cut_up: Option<usize>,
    cut_down: Option<usize>,
    delay: Option<Duration>,
}

impl Shared {
    fn plan(&self) -> Plan {
        let f = *self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut roll = |per_mille: u32| (rng.below(1000) as u32) < per_mille;
        let (cut_up, cut_down, delay) = (roll(f.cut_up), roll(f.cut_down), roll(f.delay));
        Plan {
            cut_up: cut_up.then(|| rng.below(f.max_offset.max(1))),
            cut_down: (cut_down && !cut_up).then(|| rng.below(f.max_offset.max(1))),
            delay: delay.then(|| f.max_delay.mul_f64(rng.below(1000) as f64 / 1000.0)),
        }
    }

    fn duplicate(&self) -> bool {
        let f = *self.faults.lock().unwrap_or_else(|p| p.into_inner());
        (self.rng.lock().unwrap_or_else(|p| p.into_inner()).below(1000) as u32) < f.duplicate
    }
}

/// A connection carries one exchange after another (keep-alive): a tablet's bytes that follow
/// the relay's bytes start a new exchange, and each exchange gets a plan of its own.
struct Conn {
    shared: Arc<Shared>,
    plan: Plan,
    /// Bytes of the current exchange sent up (tablet → relay) and down.
    up: usize,
    down: usize,
    /// The last direction that carried bytes: true when it was down.
    last_down: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

impl Conn {
    /// How many of `n` bytes may pass now, and a delay to wait first; fewer than `n` is a cut.
    fn admit(&mut self, dir: Dir, n: usize) -> (usize, Option<Duration>) {
        let mut delay = None;
        if dir == Dir::Up && self.last_down {
            self.plan = self.shared.plan();
            self.up = 0;
            self.down = 0;
            delay = self.plan.delay;
            if delay.is_some() {
                self.shared.stats.delays.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_down = dir == Dir::Down;
        let (sent, limit) = match dir {
            Dir::Up => (&mut self.up, self.plan.cut_up),
            Dir::Down => (&mut self.down, self.plan.cut_down),
        };
        let allowed = limit.map_or(n, |l| n.min(l.saturating_sub(*sent)));
        *sent += allowed;
        (allowed, delay)
    }
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 in front of the relay at `relay_url`.
    pub async fn start(relay_url: &str, faults: Faults, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            upstream: Mutex::new(addr_of(relay_url)),
            faults: Mutex::new(faults),
            rng: Mutex::new(Rng::new(seed)),
            stats: Stats::default(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, s.clone()));
            }
        });
        Proxy { url, shared, task }
    }

    /// Points the proxy at a relay restarted on another port.
    pub fn set_upstream(&self, relay_url: &str) {
        *self.shared.upstream.lock().unwrap_or_else(|p| p.into_inner()) = addr_of(relay_url);
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` as the connection's plans allow; keeps a copy in `record`. Returns
/// true when it stopped because of a cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    conn: Arc<Mutex<Conn>>,
    dir: Dir,
    record: Option<Arc<Mutex<Vec<u8>>>>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return false;
            }
            Ok(n) => n,
        };
        let (allowed, delay) = conn.lock().unwrap_or_else(|p| p.into_inner()).admit(dir, n);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..allowed]).await.is_err() {
            return false;
        }
        if let Some(r) = &record {
            r.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..allowed]);
        }
        if allowed < n {
            return true;
        }
    }
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let upstream = *shared.upstream.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(server) = TcpStream::connect(upstream).await else {
        // The relay is down (killed, restarting): the tablet sees its connection closed.
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let conn = Arc::new(Mutex::new(Conn { shared: shared.clone(), plan: Plan::default(), up: 0, down: 0, last_down: true }));
    let sent = shared.duplicate().then(|| Arc::new(Mutex::new(Vec::new())));
    let mut up = tokio::spawn(pump(cr, sw, conn.clone(), Dir::Up, sent.clone()));
    let mut down = tokio::spawn(pump(sr, cw, conn, Dir::Down, None));
    // A cut in one direction drops the whole connection at once.
    let cut = tokio::select! {
        r = &mut up => {
            let cut = r.unwrap_or(false);
            if cut { down.abort(); } else { let _ = (&mut down).await; }
            cut
        }
        r = &mut down => {
            let cut = r.unwrap_or(false);
            if cut { up.abort(); } else { let _ = (&mut up).await; }
            cut
        }
    };
    if cut {
        shared.stats.cuts.fetch_add(1, Ordering::Relaxed);
    }
    // Everything the tablet sent on this connection once more, as a network or a client that
    // retries blindly would send it.
    if let Some(sent) = sent {
        let bytes = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
        if bytes.is_empty() {
            return;
        }
        shared.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut again) = TcpStream::connect(upstream).await
            && again.write_all(&bytes).await.is_ok()
        {
            let _ = again.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), again.read_to_end(&mut sink)).await;
        }
    }
}
