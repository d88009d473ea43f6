//! The relay's accept loop: it takes TCP connections itself (plain, or TLS through rustls) and
//! serves HTTP/1.1 on each with hyper, so that no client can hold the relay by being slow, idle
//! or hostile. What must stay true, for plain HTTP and HTTPS alike:
//!
//! - every phase a client controls has a time limit ([`Limits`]): the TLS handshake, reading a
//!   request head (hyper's timer, which also runs while a kept-alive connection waits for its
//!   next request), reading a body (a minimum average rate after a grace period, so a big upload
//!   on a slow link completes while a trickle is dropped), and a connection on which nothing
//!   moves while no request is being handled (idle keep-alive, a client that stopped reading);
//! - the connections held are capped in all and per client address. When all places are taken,
//!   the connection that has waited longest for a request (at least [`EVICT_AFTER`]; one that
//!   never had a request answered before one that has), or whose
//!   request body is already behind the minimum rate, is closed to make room (a request being
//!   handled otherwise never is), so a flood of connections that send nothing useful cannot
//!   keep out a client that does. Past the per-address cap, or
//!   when every place is busy with a request, the relay answers `503` with `Retry-After` and
//!   closes, and never stalls the accept loop (refusals are bounded too: past
//!   [`REFUSING_AT_ONCE`] of them the socket is simply closed);
//! - a forwarded client address (`X-Forwarded-For`) is believed only from a configured proxy;
//!   every request carries its [`ClientAddr`], which the sign-in and enrolment throttles count;
//! - on shutdown the listener closes, idle connections close, requests in flight finish (up to
//!   [`Limits::shutdown_grace`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, Response};
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Refusals (503 answers) written at once at most; past it a refused socket is closed at once.
pub const REFUSING_AT_ONCE: usize = 64;
/// Descriptors kept free of client connections when the cap is derived from the descriptor
/// limit: the store and its journal, readers for exports, logs, connections told to close and
/// not gone yet, the refusals above.
pub const RESERVED_DESCRIPTORS: u64 = 128 + REFUSING_AT_ONCE as u64;
/// How long a connection must have waited for a request before it may be closed to make room
/// (so a client whose request is on its way is not cut).
pub const EVICT_AFTER: Duration = Duration::from_millis(250);
/// Connections told to close to make room and not gone yet, at most.
const EVICTING_AT_ONCE: usize = 96;
/// How long a refusal may take to write and to drain what the client sent.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// The limits on what clients may hold; every one a setting of `serve` (see `cli.rs`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// From when a connection waits for a request (new, or kept alive after an answer) until
    /// the request's head is complete.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long while no request is being
    /// handled is closed; so is one whose client stopped reading an answer for this long.
    pub idle_timeout: Duration,
    /// The slowest average rate a request body may arrive at, in bytes per second, once
    /// [`Limits::body_grace`] has passed since the handler began reading it.
    pub body_min_rate: u64,
    pub body_grace: Duration,
    pub tls_handshake_timeout: Duration,
    /// Connections held at once in all; `None`: the descriptor limit less
    /// [`RESERVED_DESCRIPTORS`].
    pub max_connections: Option<usize>,
    /// Connections (or, behind a trusted proxy, requests in flight) per client address; IPv6
    /// addresses count per /64.
    pub max_per_address: usize,
    /// Proxies whose `X-Forwarded-For` is believed; their own connections are not capped per
    /// address.
    pub trusted_proxies: Vec<IpAddr>,
    /// What a refusal asks the client to wait.
    pub retry_after: Duration,
    /// How long requests in flight may take to finish once a stop is asked.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
            body_min_rate: 256,
            body_grace: Duration::from_secs(20),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            max_per_address: 64,
            trusted_proxies: Vec::new(),
            retry_after: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The address a request came from: the peer's, or the one a trusted proxy forwarded. Requests
/// that did not come through [`run`] (the router called directly, in tests) have none and count
/// as the unspecified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

/// The address as limits and throttles count it: an IPv4-mapped IPv6 address is its IPv4
/// address, and an IPv6 address stands for its /64 (what one subscriber is usually given).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Raises the soft limit on open descriptors to the hard limit; returns the soft limit now
/// (`None`: unlimited, or not known on this system).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (now.current, now.maximum)
            && current < maximum
            && let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) })
        {
            tracing::warn!(current, maximum, error = %e, "could not raise the descriptor limit");
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Connections held, in all and per address.
struct Held {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Of `total`, connections told to close to make room and not gone yet.
    evicting: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Every connection counted in `total`, for choosing one to close.
    conns: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// Why a connection or request is refused.
#[derive(Debug, Clone, Copy)]
enum Full {
    /// Every place is taken by a connection with a request being handled (or just made).
    Total,
    Address,
}

/// One place held; given back when dropped.
struct Slot {
    held: Arc<Held>,
    /// The connection's id among `conns`, when it counts in the total.
    id: Option<u64>,
    address: Option<IpAddr>,
}

impl Held {
    fn new(max_total: usize, max_per_address: usize) -> Held {
        Held { max_total, max_per_address, counts: Mutex::default() }
    }

    /// Takes a place for `address` (if counted per address) and, for a connection (`conn`), in
    /// all, closing the connection that has waited longest for a request if every place is taken.
    fn take(self: &Arc<Self>, conn: Option<&Arc<Activity>>, address: Option<IpAddr>) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let counts = &mut *counts;
        if let Some(a) = address
            && counts.per_address.get(&a).copied().unwrap_or(0) >= self.max_per_address
        {
            return Err(Full::Address);
        }
        if conn.is_some() && counts.total - counts.evicting >= self.max_total {
            // Connections told to close still hold their descriptors until their task runs;
            // past a few of them, refuse rather than grow past the cap.
            if counts.evicting >= EVICTING_AT_ONCE {
                return Err(Full::Total);
            }
            let victim = counts
                .conns
                .values()
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
                .filter_map(|c| Some((c.waiting()?, c)))
                .filter(|(waited, _)| *waited >= EVICT_AFTER)
                // Connections that never had a request answered go first (a kept-alive client's
                // next request is likelier to come than a stalled head's end).
                .max_by_key(|(waited, c)| (!c.answered.load(Ordering::Relaxed), *waited));
            let Some((_, victim)) = victim else {
                return Err(Full::Total);
            };
            victim.evicted.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
            counts.evicting += 1;
        }
        if let Some(a) = address {
            *counts.per_address.entry(a).or_insert(0) += 1;
        }
        let id = conn.map(|c| {
            counts.next_id += 1;
            counts.total += 1;
            counts.conns.insert(counts.next_id, c.clone());
            counts.next_id
        });
        Ok(Slot { held: self.clone(), id, address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.held.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = self.id {
            counts.total = counts.total.saturating_sub(1);
            if let Some(c) = counts.conns.remove(&id)
                && c.evicted.load(Ordering::Relaxed)
            {
                counts.evicting = counts.evicting.saturating_sub(1);
            }
        }
        if let Some(a) = self.address
            && let Some(n) = counts.per_address.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&a);
            }
        }
    }
}

/// Connections the kernel may complete before the relay takes them. A burst of reconnections
/// (a network back after an outage, or a flood) past this overflows the queue, and clients whose
/// handshake the kernel dropped are left with connections the relay never sees; the kernel caps
/// it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`; the first address it resolves to) with [`BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{addr}` names no address"))))
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let fd_limit = raise_fd_limit();
    let max_total = match (limits.max_connections, fd_limit) {
        (Some(n), _) => n,
        (None, Some(fds)) => usize::try_from(fds.saturating_sub(RESERVED_DESCRIPTORS).max(16)).unwrap_or(usize::MAX),
        (None, None) => 100_000,
    };
    tracing::info!(
        descriptors = fd_limit.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
        max_connections = max_total,
        max_per_address = limits.max_per_address,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        body_min_rate = limits.body_min_rate,
        body_grace_s = limits.body_grace.as_secs_f64(),
        tls_handshake_timeout_s = limits.tls_handshake_timeout.as_secs_f64(),
        trusted_proxies = ?limits.trusted_proxies,
        "connection limits"
    );
    if let Some(fds) = fd_limit
        && (max_total as u64).saturating_add(RESERVED_DESCRIPTORS) > fds
    {
        tracing::warn!(fds, max_total, "the connection cap is above what the descriptor limit allows; raise `ulimit -n` (LimitNOFILE)");
    }
    let held = Arc::new(Held::new(max_total, limits.max_per_address));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: wait a
                    // little (connections closing free descriptors) and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let peer_ip = address_key(peer.ip());
        let proxied = limits.trusted_proxies.iter().any(|p| address_key(*p) == peer_ip);
        let activity = Arc::new(Activity::new());
        match held.take(Some(&activity), (!proxied).then_some(peer_ip)) {
            Ok(slot) => {
                let conn = Conn {
                    app: app.clone(),
                    limits: limits.clone(),
                    held: held.clone(),
                    peer,
                    proxied,
                    stop: stop_rx.clone(),
                    open: OpenGuard::new(open.clone()),
                    _slot: slot,
                };
                let tls = tls.clone();
                tokio::spawn(conn.serve(stream, tls, activity));
            }
            Err(full) => {
                tracing::debug!(%peer, ?full, "connection refused: at the cap");
                match refusing.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let tls = tls.clone();
                        let retry = limits.retry_after;
                        let handshake = limits.tls_handshake_timeout.min(REFUSAL_TIME);
                        tokio::spawn(async move {
                            let _permit = permit;
                            match tls {
                                None => refuse(stream, retry).await,
                                Some(acceptor) => {
                                    if let Ok(Ok(s)) = tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                                        refuse(s, retry).await;
                                    }
                                }
                            }
                        });
                    }
                    Err(_) => drop(stream),
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + limits.shutdown_grace;
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = open.load(Ordering::SeqCst);
    if left > 0 {
        tracing::warn!(connections = left, "stopping with requests still in flight");
    }
    Ok(())
}

/// Counts connections open, for the wait at shutdown.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error body of every refusal at a cap (the JSON every other refusal has).
const BUSY_BODY: &str = r#"{"code":"busy","reason":"服务器繁忙，请稍后再试 / the server is busy; try again shortly"}"#;

/// The whole answer to a refused connection: 503, how long to wait, and the JSON error body
/// every other refusal has.
fn refusal(retry_after: Duration) -> String {
    let body = BUSY_BODY;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        retry_after.as_secs().max(1),
        body.len()
    )
}

/// Writes the refusal, then reads (and drops) what the client sent for a moment, so closing
/// does not reset the connection before the client has read the answer.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, retry_after: Duration) {
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        s.write_all(refusal(retry_after).as_bytes()).await?;
        s.flush().await?;
        s.shutdown().await?;
        let mut sink = [0u8; 4096];
        while s.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// [`Activity::waiting_since`] while a request is being handled.
const NOT_WAITING: u64 = u64::MAX;

/// What a connection knows of its traffic, for the idle check and for choosing one to close.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds since `start` when a byte last moved.
    last: AtomicU64,
    /// Whether the last write found the client not reading (the socket's buffer full).
    write_blocked: std::sync::atomic::AtomicBool,
    /// Requests being handled (from the head until the answer's last byte).
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the connection began waiting for its next request, or
    /// when its request's body began once that body is behind the minimum rate; [`NOT_WAITING`]
    /// while a request is handled otherwise.
    waiting_since: AtomicU64,
    /// Told to close to make room for another.
    evicted: std::sync::atomic::AtomicBool,
    /// A request on it has been answered.
    answered: std::sync::atomic::AtomicBool,
    evict: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            write_blocked: false.into(),
            in_flight: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(0),
            evicted: false.into(),
            answered: false.into(),
            evict: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the connection has waited for a request (or for a body behind its rate);
    /// `None` while a request is handled.
    fn waiting(&self) -> Option<Duration> {
        match self.waiting_since.load(Ordering::Relaxed) {
            NOT_WAITING => None,
            since => Some(Duration::from_millis(self.now_ms().saturating_sub(since))),
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.touch();
        self.answered.store(true, Ordering::Relaxed);
        self.waiting_since.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// How long nothing has moved.
    fn quiet(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// The socket, noting every byte that moves.
struct Tracked<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.touch();
                self.activity.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        match &r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.touch();
                self.activity.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One accepted connection and what it needs.
struct Conn {
    app: Router,
    limits: Arc<Limits>,
    held: Arc<Held>,
    peer: SocketAddr,
    proxied: bool,
    stop: watch::Receiver<bool>,
    open: OpenGuard,
    _slot: Slot,
}

impl Conn {
    async fn serve(mut self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, activity: Arc<Activity>) {
        let io = Tracked { io: stream, activity: activity.clone() };
        match tls {
            None => self.http(io, activity).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(io));
                let stream = tokio::select! {
                    r = handshake => r,
                    _ = self.stop.changed() => return,
                    _ = activity.evict.notified() => return,
                };
                match stream {
                    Ok(Ok(s)) => self.http(s, activity).await,
                    Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut self, io: S, activity: Arc<Activity>) {
        let service = Service {
            app: self.app.clone(),
            limits: self.limits.clone(),
            held: self.held.clone(),
            peer: self.peer,
            proxied: self.proxied,
            activity: activity.clone(),
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout).keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), hyper::service::service_fn(move |req| service.clone().call(req)));
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let mut check = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended");
                    }
                    break;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = activity.evict.notified() => {
                    tracing::debug!(peer = %self.peer, "connection closed to make room: it sent no request");
                    break;
                }
                _ = check.tick() => {
                    let quiet = activity.quiet() >= idle;
                    let idle_now = activity.in_flight.load(Ordering::Relaxed) == 0;
                    let not_reading = activity.write_blocked.load(Ordering::Relaxed);
                    if quiet && (idle_now || not_reading) {
                        tracing::debug!(peer = %self.peer, not_reading, "connection closed: nothing moved within the idle timeout");
                        break;
                    }
                }
            }
        }
        drop(self.open);
    }
}

/// The per-connection service: the client's address on the request, the body under its
/// minimum rate, and the request counted in flight until its answer's last byte.
#[derive(Clone)]
struct Service {
    app: Router,
    limits: Arc<Limits>,
    held: Arc<Held>,
    peer: SocketAddr,
    proxied: bool,
    activity: Arc<Activity>,
}

impl Service {
    async fn call(self, req: Request<Incoming>) -> Result<Response<GuardedBody>, Infallible> {
        let in_flight = InFlight::new(self.activity.clone());
        let client = if self.proxied { forwarded(&req, &self.limits.trusted_proxies) } else { None };
        let client = client.unwrap_or_else(|| self.peer.ip());
        // Behind a trusted proxy, the cap per address counts requests in flight.
        let slot = if self.proxied {
            match self.held.take(None, Some(address_key(client))) {
                Ok(s) => Some(s),
                Err(_) => {
                    let resp = busy(self.limits.retry_after);
                    return Ok(resp.map(|b| GuardedBody { inner: b, _in_flight: Some(in_flight), _slot: None }));
                }
            }
        } else {
            None
        };
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ClientAddr(client));
        let body = MinRateBody::new(body, self.limits.body_min_rate, self.limits.body_grace, self.activity.clone());
        let req = Request::from_parts(parts, Body::new(body));
        let resp = match self.app.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        Ok(resp.map(|b| GuardedBody { inner: b, _in_flight: Some(in_flight), _slot: slot }))
    }
}

/// A 503 for a request over the per-address cap behind a proxy.
fn busy(retry_after: Duration) -> Response<Body> {
    let mut resp = Response::new(Body::from(BUSY_BODY));
    *resp.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from(retry_after.as_secs().max(1)));
    resp
}

/// The client's address from `X-Forwarded-For`: the nearest address that is not one of the
/// trusted proxies (the ones before it could have been written by the client itself).
fn forwarded<B>(req: &Request<B>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let trusted: Vec<IpAddr> = trusted.iter().map(|t| address_key(*t)).collect();
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        let text = value.to_str().ok()?;
        for hop in text.split(',') {
            hops.push(hop.trim().parse().ok()?);
        }
    }
    hops.into_iter().rev().find(|h| !trusted.contains(&address_key(*h)))
}

/// A request counted in flight on its connection.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> InFlight {
        a.request_started();
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The answer's body, keeping its request counted until it is sent or dropped.
struct GuardedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
    _slot: Option<Slot>,
}

impl HttpBody for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body arrived slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes per second")]
pub struct BodyTooSlow {
    pub rate: u64,
}

/// A request body that fails once it is behind its minimum rate: after `grace` from the first
/// read, `received` bytes must have come within `grace + received / rate`.
/// While it is behind the rate (grace or not) its connection may be closed to make room.
struct MinRateBody {
    inner: Incoming,
    rate: u64,
    grace: Duration,
    started: Option<Instant>,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
    /// When the body began, in the connection's milliseconds.
    started_ms: u64,
    behind: bool,
}

impl MinRateBody {
    fn new(inner: Incoming, rate: u64, grace: Duration, activity: Arc<Activity>) -> MinRateBody {
        MinRateBody { inner, rate: rate.max(1), grace, started: None, received: 0, timer: None, activity, started_ms: 0, behind: false }
    }

    /// Notes whether the body is behind its rate right now (ignoring the grace).
    fn note_pace(&mut self, start: Instant, done: bool) {
        let behind = !done && (self.received as f64) < self.rate as f64 * start.elapsed().as_secs_f64();
        if behind != self.behind {
            self.behind = behind;
            let since = if behind { self.started_ms } else { NOT_WAITING };
            self.activity.waiting_since.store(since, Ordering::Relaxed);
        }
    }
}

impl Drop for MinRateBody {
    fn drop(&mut self) {
        if self.behind && self.activity.in_flight.load(Ordering::Relaxed) > 0 {
            self.activity.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
        }
    }
}

impl HttpBody for MinRateBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let start = match this.started {
            Some(s) => s,
            None => {
                this.started_ms = this.activity.now_ms();
                *this.started.insert(Instant::now())
            }
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                this.note_pace(start, false);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                this.note_pace(start, true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.note_pace(start, false);
                let deadline = start + this.grace + Duration::from_secs_f64(this.received as f64 / this.rate as f64);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow { rate: this.rate })))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_per_ipv4_and_per_ipv6_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(address_key(mapped), "10.1.2.3".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn caps_in_all_and_per_address_give_places_back() {
        let held = Arc::new(Held::new(3, 2));
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let busy = || {
            let a = Arc::new(Activity::new());
            a.request_started();
            a
        };
        let one = held.take(Some(&busy()), Some(x)).expect("first");
        let _two = held.take(Some(&busy()), Some(x)).expect("second");
        assert!(matches!(held.take(Some(&busy()), Some(x)), Err(Full::Address)));
        let _three = held.take(Some(&busy()), Some(y)).expect("another address");
        assert!(matches!(held.take(Some(&busy()), None), Err(Full::Total)), "every place has a request in flight");
        drop(one);
        assert!(held.take(Some(&busy()), Some(x)).is_ok());
        assert_eq!(held.counts.lock().expect("lock").total, 2, "the place taken just above was given back when it was dropped");
    }

    #[tokio::test]
    async fn when_full_the_connection_waiting_longest_for_a_request_makes_room() {
        tokio::time::pause();
        let held = Arc::new(Held::new(2, 10));
        let old = Arc::new(Activity::new());
        let _a = held.take(Some(&old), None).expect("a");
        tokio::time::advance(Duration::from_millis(200)).await;
        let young = Arc::new(Activity::new());
        let _b = held.take(Some(&young), None).expect("b");
        // 1. Nobody has waited long enough to be cut: the newcomer is refused.
        assert!(matches!(held.take(Some(&Arc::new(Activity::new())), None), Err(Full::Total)));
        tokio::time::advance(Duration::from_secs(3)).await;
        // 2. Now the one waiting longest is told to close, and the newcomer is in.
        let _c = held.take(Some(&Arc::new(Activity::new())), None).expect("room made");
        assert!(old.evicted.load(Ordering::Relaxed) && !young.evicted.load(Ordering::Relaxed));
        // 3. The next newcomer makes the second waiter go; the evicted one is not chosen twice.
        let _d = held.take(Some(&Arc::new(Activity::new())), None).expect("room made again");
        assert!(young.evicted.load(Ordering::Relaxed));
        // 4. A kept-alive connection that has answered a request is spared while one that never
        //    sent a whole request can go, even if it has waited less.
        let held = Arc::new(Held::new(2, 10));
        let kept = Arc::new(Activity::new());
        kept.request_started();
        kept.request_ended();
        let _k = held.take(Some(&kept), None).expect("kept");
        tokio::time::advance(Duration::from_secs(5)).await;
        let stalled = Arc::new(Activity::new());
        let _s = held.take(Some(&stalled), None).expect("stalled");
        tokio::time::advance(Duration::from_secs(1)).await;
        let _n = held.take(Some(&Arc::new(Activity::new())), None).expect("room made");
        assert!(stalled.evicted.load(Ordering::Relaxed) && !kept.evicted.load(Ordering::Relaxed));
        // 5. A connection with a request being handled is never chosen.
        let held = Arc::new(Held::new(1, 10));
        let working = Arc::new(Activity::new());
        working.request_started();
        let _w = held.take(Some(&working), None).expect("w");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(held.take(Some(&Arc::new(Activity::new())), None), Err(Full::Total)));
        assert!(!working.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn a_forwarded_address_is_the_nearest_hop_that_is_not_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.9".parse().expect("ip");
        let req = Request::get("/")
            .header("x-forwarded-for", "1.2.3.4, 203.0.113.7")
            .header("x-forwarded-for", "10.0.0.9")
            .body(())
            .expect("req");
        assert_eq!(forwarded(&req, &[proxy]), Some("203.0.113.7".parse().expect("ip")));
        let junk = Request::get("/").header("x-forwarded-for", "not-an-address").body(()).expect("req");
        assert_eq!(forwarded(&junk, &[proxy]), None);
        let none = Request::get("/").body(()).expect("req");
        assert_eq!(forwarded(&none, &[proxy]), None);
    }

    /// Serves a router that answers each request's [`ClientAddr`]; returns its address.
    async fn echo_server(limits: Limits) -> SocketAddr {
        let app = Router::new().route("/who", axum::routing::get(|ClientAddr(a): ClientAddr| async move { a.to_string() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(run(listener, app, None, limits, std::future::pending()));
        addr
    }

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer)).await.expect("answered in time").expect("read");
        answer
    }

    #[tokio::test]
    async fn the_forwarded_address_is_believed_from_a_trusted_proxy_only() {
        let request = "GET /who HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n";
        let trusting = echo_server(Limits { trusted_proxies: vec!["127.0.0.1".parse().expect("ip")], ..Limits::default() }).await;
        let answer = exchange(trusting, request).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("203.0.113.9"), "{answer}");
        let plain = echo_server(Limits::default()).await;
        let answer = exchange(plain, request).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn an_unfinished_head_is_dropped_and_an_address_past_its_cap_is_told_503() {
        let addr = echo_server(Limits { header_timeout: Duration::from_millis(300), max_per_address: 1, ..Limits::default() }).await;
        // 1. A head that never ends: the connection is closed after the header timeout.
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        // 2. Meanwhile the address holds its one place: a second connection is refused at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = exchange(addr, "GET /who HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("retry-after: 5"), "{answer}");
        let start = Instant::now();
        let mut rest = Vec::new();
        // Closed cleanly or by a reset, either way within the timeout (plus scheduling).
        let _closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await.expect("closed in time");
        assert!(start.elapsed() < Duration::from_secs(2), "closed after {:?}", start.elapsed());
        // 3. The place is free again: a whole request is answered.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = exchange(addr, "GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[test]
    fn the_refusal_is_a_complete_503_with_retry_after() {
        let text = refusal(Duration::from_secs(7));
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("retry-after: 7\r\n") && head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let parsed: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(parsed["code"], "busy");
    }
}
