//! `type = "syslog"`: a syslog receiver on one listener — TCP, TCP+TLS, unix stream (framing
//! detected per frame, [`framing`]) or UDP, unix datagram (one message per datagram) — parsing
//! RFC 3164 and RFC 5424 into events ([`parse`]). The receiver for Docker's syslog driver.
//!
//! Robustness: every connection has its own task, buffer (at most `max_frame` plus one read)
//! and frame deadline (`frame_timeout`, counted from the first byte of an incomplete frame, so
//! a slowloris peer trickling one frame is cut off while idle peers stay connected); at most
//! `max_connections` at once. Bad input is counted in `logwharf_source_errors_total{kind}` and
//! logged once per connection and kind with the peer's address; nothing a peer sends can stop
//! another connection or the daemon.
//!
//! Backpressure: a stream connection (and a unix datagram socket) is not read while its events
//! wait for room in the pipeline, so the kernel's flow control slows the sender. UDP cannot
//! wait: when the pipeline is full datagrams are dropped and counted
//! (`logwharf_source_dropped_events_total`).
//!
//! Nothing is acknowledged to peers (syslog has no acknowledgement); with `run --once` there is
//! nothing present to read, so the source returns at once.

pub mod config;
pub mod framing;
pub mod parse;

use crate::event::{Event, EventFlags};
use crate::listen::{remove_stale_socket, Accepted, Listener};
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::sources::{Source, SourceContext};
use crate::time::now_nanos;
use crate::topology::SourceOutput;
use anyhow::Context;
use bytes::{Bytes, BytesMut};
pub use config::SyslogSourceConfig;
use framing::{Frame, FrameError, Framer};
use logwharf_config::address::SyslogAddress;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

pub struct SyslogSource {
    config: SyslogSourceConfig,
    address: SyslogAddress,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl SyslogSource {
    pub fn new(config: SyslogSourceConfig) -> anyhow::Result<SyslogSource> {
        let address = config.address.clone();
        let tls = match (&address, &config.tls) {
            (SyslogAddress::TcpTls { .. }, Some(t)) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(t)?,
            )),
            (SyslogAddress::TcpTls { .. }, None) => {
                anyhow::bail!("a tcp+tls:// listener needs tls.crt_file and tls.key_file")
            }
            _ => None,
        };
        Ok(SyslogSource {
            config,
            address,
            tls,
        })
    }
}

/// What every connection task of one source shares.
struct Shared {
    source: Arc<str>,
    max_frame: usize,
    read_size: usize,
    batch_max: usize,
    frame_timeout: Duration,
    read_bytes: metrics::Counter,
}

impl Shared {
    fn error(&self, kind: &'static str) {
        metrics::counter!(m::SOURCE_ERRORS, "source" => self.source.to_string(), "kind" => kind)
            .increment(1);
        crate::status::global().receiver(&self.source).error(kind);
    }
}

/// Logs the first problem of each kind per connection (a flood is counted, not logged).
#[derive(Default)]
struct Reported(HashSet<&'static str>);

impl Reported {
    fn report(&mut self, shared: &Shared, peer: &str, kind: &'static str, what: &str) {
        shared.error(kind);
        if self.0.insert(kind) {
            tracing::warn!(source = %shared.source, peer, kind, "syslog: {what} (counted in {}; further ones from this peer are only counted)", m::SOURCE_ERRORS);
        }
    }
}

#[async_trait::async_trait]
impl Source for SyslogSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        if ctx.once {
            tracing::info!(source = %ctx.name, "syslog source: nothing to read with --once (it only receives)");
            return Ok(());
        }
        let shared = Arc::new(Shared {
            source: ctx.name.clone(),
            max_frame: self.config.max_frame.0 as usize,
            read_size: self.config.read_buffer_bytes.0 as usize,
            batch_max: self.config.batch_max_events,
            frame_timeout: self.config.frame_timeout.0,
            read_bytes: metrics::counter!(m::SOURCE_READ_BYTES, "source" => ctx.name.to_string()),
        });
        let addr = self.address.to_string();
        match &self.address {
            SyslogAddress::Tcp { host, port } | SyslogAddress::TcpTls { host, port } => {
                let l = Listener::tcp(&format!("sources.{}", ctx.name), host, *port).await?;
                tracing::info!(source = %ctx.name, address = %addr, local = %l.local_addr(), "syslog source listening");
                serve_stream(l, self.tls.clone(), &self.config, shared, ctx).await
            }
            SyslogAddress::Unix(path) => {
                let l = Listener::unix(&format!("sources.{}", ctx.name), path)?;
                set_mode(path, self.config.socket_mode_bits())?;
                tracing::info!(source = %ctx.name, address = %addr, "syslog source listening");
                serve_stream(l, None, &self.config, shared, ctx).await
            }
            SyslogAddress::Udp { host, port } => {
                let s = UdpSocket::bind((host.as_str(), *port))
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                set_rcvbuf(&s, self.config.receive_buffer_bytes.map(|b| b.0));
                tracing::info!(source = %ctx.name, address = %addr, local = ?s.local_addr().ok(), "syslog source listening");
                serve_datagrams(DatagramSocket::Udp(s), shared, ctx).await
            }
            SyslogAddress::Unixgram(path) => {
                remove_stale_socket(path)?;
                let s = UnixDatagram::bind(path).with_context(|| format!("binding {addr}"))?;
                set_mode(path, self.config.socket_mode_bits())?;
                set_rcvbuf(&s, self.config.receive_buffer_bytes.map(|b| b.0));
                tracing::info!(source = %ctx.name, address = %addr, "syslog source listening");
                let r = serve_datagrams(DatagramSocket::Unix(s), shared, ctx).await;
                let _ = std::fs::remove_file(path);
                r
            }
        }
    }
}

fn set_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn set_rcvbuf(s: &impl std::os::fd::AsRawFd, bytes: Option<u64>) {
    let Some(b) = bytes else { return };
    let v = b.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: setsockopt with a pointer to a c_int we own and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::warn!(bytes = b, error = %std::io::Error::last_os_error(), "could not set the receive buffer size");
    }
}

/// Accepts connections until shutdown, one task each; then waits for them to finish.
async fn serve_stream(
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &SyslogSourceConfig,
    shared: Arc<Shared>,
    ctx: SourceContext,
) -> anyhow::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let gauge = metrics::gauge!(m::SOURCE_CONNECTIONS, "source" => shared.source.to_string());
    let mut listener = listener.count_errors(
        metrics::counter!(m::SOURCE_ERRORS, "source" => shared.source.to_string(), "kind" => "accept"),
    );
    let mut tasks = JoinSet::new();
    loop {
        let (io, peer): (Box<dyn ConnIo>, String) = tokio::select! {
            _ = ctx.shutdown.wait() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            (a, peer) = listener.accept() => match a {
                Accepted::Tcp(s) => (Box::new(s), peer),
                Accepted::Unix(s) => (Box::new(s), peer),
            },
        };
        if active.load(Ordering::Acquire) >= config.max_connections {
            shared.error("too_many_connections");
            tracing::warn!(source = %shared.source, peer, max_connections = config.max_connections, "syslog: connection refused, too many open");
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        gauge.set(active.load(Ordering::Acquire) as f64);
        crate::status::global()
            .receiver(&shared.source)
            .set_connections(active.load(Ordering::Acquire));
        let tls = tls.clone();
        let (shared, out, shutdown, active, gauge) = (
            shared.clone(),
            ctx.out.clone(),
            ctx.shutdown.clone(),
            active.clone(),
            gauge.clone(),
        );
        tasks.spawn(
            async move {
                tracing::debug!(source = %shared.source, peer, "syslog: connection opened");
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(io))
                            .await
                        {
                            Ok(Ok(s)) => read_stream(s, &peer, &shared, &out, &shutdown).await,
                            Ok(Err(e)) => {
                                Reported::default().report(
                                    &shared,
                                    &peer,
                                    "tls_handshake",
                                    &format!("TLS handshake failed: {e}"),
                                );
                            }
                            Err(_) => {
                                Reported::default().report(
                                    &shared,
                                    &peer,
                                    "tls_handshake",
                                    "TLS handshake timed out",
                                );
                            }
                        }
                    }
                    None => read_stream(io, &peer, &shared, &out, &shutdown).await,
                }
                active.fetch_sub(1, Ordering::AcqRel);
                gauge.set(active.load(Ordering::Acquire) as f64);
                crate::status::global()
                    .receiver(&shared.source)
                    .set_connections(active.load(Ordering::Acquire));
                tracing::debug!(source = %shared.source, peer, "syslog: connection closed");
            }
            .in_current_span(),
        );
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

trait ConnIo: AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ConnIo for T {}

/// Why a connection's read loop ended.
enum End {
    Eof,
    Shutdown,
    Closed,
}

/// Reads one stream connection until EOF, error, frame timeout or shutdown.
async fn read_stream<R: AsyncRead + Unpin>(
    mut r: R,
    peer: &str,
    shared: &Shared,
    out: &SourceOutput,
    shutdown: &Shutdown,
) {
    let mut buf = BytesMut::with_capacity(shared.read_size);
    let mut framer = Framer::new(shared.max_frame);
    let mut reported = Reported::default();
    let mut events: Vec<Event> = Vec::new();
    let mut partial_since: Option<Instant> = None;
    let end = loop {
        if buf.capacity() - buf.len() < shared.read_size / 2 {
            buf.reserve(shared.read_size);
        }
        let deadline = partial_since.map(|t| t + shared.frame_timeout);
        let n = tokio::select! {
            biased;
            _ = shutdown.wait() => break End::Shutdown,
            _ = sleep_until_opt(deadline) => {
                reported.report(shared, peer, "timeout", &format!(
                    "an incomplete frame was held open longer than frame_timeout ({:?}); closing the connection and discarding {} bytes",
                    shared.frame_timeout, buf.len()));
                break End::Closed;
            }
            r = r.read_buf(&mut buf) => r,
        };
        match n {
            Ok(0) => break End::Eof,
            Ok(n) => shared.read_bytes.increment(n as u64),
            Err(e) => {
                reported.report(shared, peer, "read", &format!("read failed: {e}"));
                break End::Closed;
            }
        }
        let now = now_nanos();
        let mut frames = 0usize;
        framer.decode(&mut buf, &mut |r| match r {
            Ok(f) => {
                frames += 1;
                push_frame(&mut events, f, peer, now, shared, &mut reported, false)
            }
            Err(e) => report_frame_error(&mut reported, shared, peer, e),
        });
        if !framer.in_frame(&buf) {
            partial_since = None;
        } else if frames > 0 || partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        if send(out, &mut events, shared.batch_max).await.is_err() {
            return;
        }
    };
    let now = now_nanos();
    match end {
        End::Eof | End::Shutdown => {
            let partial = matches!(end, End::Shutdown);
            framer.finish(&mut buf, &mut |r| match r {
                Ok(f) => push_frame(&mut events, f, peer, now, shared, &mut reported, partial),
                Err(e) => report_frame_error(&mut reported, shared, peer, e),
            });
        }
        End::Closed => {}
    }
    let _ = send(out, &mut events, shared.batch_max).await;
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn report_frame_error(reported: &mut Reported, shared: &Shared, peer: &str, e: FrameError) {
    let what = match e {
        FrameError::TooLarge => format!(
            "frame longer than max_frame ({} bytes): passed on cut and flagged, the rest discarded",
            shared.max_frame
        ),
        FrameError::BadOctetCount => {
            "invalid octet count: the bytes are read as a newline-framed message".to_string()
        }
        FrameError::Incomplete => "the connection ended inside an octet-counted frame".to_string(),
    };
    reported.report(shared, peer, e.kind(), &what);
}

fn push_frame(
    events: &mut Vec<Event>,
    f: Frame,
    peer: &str,
    now: i64,
    shared: &Shared,
    reported: &mut Reported,
    partial: bool,
) {
    let (mut ev, issues) = parse::parse_frame(&f.data, peer, now);
    if issues.invalid_utf8 {
        reported.report(
            shared,
            peer,
            "invalid_utf8",
            "message is not valid UTF-8: invalid bytes replaced by U+FFFD",
        );
    }
    if issues.malformed {
        reported.report(
            shared,
            peer,
            "malformed",
            "not a syslog message (no <PRI>): passed on whole, flagged malformed",
        );
    }
    if f.truncated {
        ev.flags.insert(EventFlags::TRUNCATED);
    }
    if partial {
        ev.flags.insert(EventFlags::PARTIAL);
    }
    events.push(ev);
}

/// Sends `events` in batches of at most `max`; waits while the pipeline is full.
async fn send(
    out: &SourceOutput,
    events: &mut Vec<Event>,
    max: usize,
) -> Result<(), crate::topology::Closed> {
    while !events.is_empty() {
        let rest = if events.len() > max {
            events.split_off(max)
        } else {
            Vec::new()
        };
        let batch = std::mem::replace(events, rest);
        out.send(batch, None).await?;
    }
    Ok(())
}

enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramSocket {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, String)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).await.map(|(n, a)| (n, a.to_string())),
            DatagramSocket::Unix(s) => s.recv_from(buf).await.map(|(n, a)| (n, unix_peer(&a))),
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, String)> {
        match self {
            DatagramSocket::Udp(s) => s.try_recv_from(buf).map(|(n, a)| (n, a.to_string())),
            DatagramSocket::Unix(s) => s.try_recv_from(buf).map(|(n, a)| (n, unix_peer(&a))),
        }
    }
}

fn unix_peer(a: &tokio::net::unix::SocketAddr) -> String {
    match a.as_pathname() {
        Some(p) => format!("unix:{}", p.display()),
        None => "unix".to_string(),
    }
}

/// Datagrams in batches. Unix datagram sockets have flow control (a sender blocks when the
/// receiver's queue is full), so a unixgram source waits for the pipeline like a stream does.
/// UDP has none: the receiver keeps reading into a pending batch (at most eight batches'
/// worth) while a sender task waits for the pipeline, and what does not fit is dropped and
/// counted (`reason="pipeline_full"`); what overflows the kernel's receive buffer before we
/// read it is counted too (`reason="receive_buffer"`, from /proc/net/udp).
async fn serve_datagrams(
    sock: DatagramSocket,
    shared: Arc<Shared>,
    ctx: SourceContext,
) -> anyhow::Result<()> {
    let lossy = matches!(sock, DatagramSocket::Udp(_));
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(1);
    let out = ctx.out.clone();
    let sender = tokio::spawn(
        async move {
            while let Some(b) = rx.recv().await {
                if out.send(b, None).await.is_err() {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    let dropped = metrics::counter!(m::SOURCE_DROPPED, "source" => shared.source.to_string(), "reason" => "pipeline_full");
    let mut kernel = KernelDrops::new(&sock, &shared.source);
    let cap = shared.batch_max.saturating_mul(8);
    let mut buf = vec![0u8; 65_536];
    let mut reported = Reported::default();
    let mut drop_logged = false;
    let mut pending: Vec<Event> = Vec::new();
    loop {
        if let Some(k) = kernel.as_mut() {
            k.poll();
        }
        let first = tokio::select! {
            _ = ctx.shutdown.wait() => break,
            // Wake up now and then to count kernel drops while no datagram arrives.
            _ = tokio::time::sleep(Duration::from_secs(1)), if kernel.is_some() => continue,
            permit = tx.reserve(), if !pending.is_empty() => match permit {
                Ok(p) => {
                    p.send(std::mem::take(&mut pending));
                    continue;
                }
                Err(_) => break,
            },
            r = sock.recv(&mut buf) => r,
        };
        let mut events = Vec::new();
        let mut next = Some(first);
        let now = now_nanos();
        while let Some(r) = next.take() {
            match r {
                Ok((n, peer)) => {
                    shared.read_bytes.increment(n as u64);
                    datagram(&mut events, &buf[..n], &peer, now, &shared, &mut reported);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    shared.error("read");
                    tracing::warn!(source = %shared.source, error = %e, "syslog: receive failed");
                    break;
                }
            }
            if events.len() < shared.batch_max {
                next = Some(sock.try_recv(&mut buf));
            }
        }
        if events.is_empty() {
            continue;
        }
        if !lossy {
            // Flow control: not reading makes the unixgram sender wait.
            if tx.send(events).await.is_err() {
                break;
            }
            continue;
        }
        let room = cap.saturating_sub(pending.len());
        if events.len() > room {
            let lost = events.len() - room;
            events.truncate(room);
            dropped.increment(lost as u64);
            if !drop_logged {
                drop_logged = true;
                tracing::warn!(source = %shared.source, "syslog: pipeline full, UDP datagrams dropped (counted in {})", m::SOURCE_DROPPED);
            }
        }
        pending.append(&mut events);
    }
    if !pending.is_empty() {
        let _ = tx.send(pending).await;
    }
    drop(tx);
    let _ = sender.await;
    Ok(())
}

/// Datagrams the kernel dropped because the socket's receive buffer was full (the `drops`
/// column of /proc/net/udp for this socket), counted as `reason="receive_buffer"` — checked at
/// most once a second.
struct KernelDrops {
    inode: u64,
    seen: u64,
    last_check: Instant,
    counter: metrics::Counter,
}

impl KernelDrops {
    fn new(sock: &DatagramSocket, source: &str) -> Option<KernelDrops> {
        use std::os::fd::AsRawFd;
        let DatagramSocket::Udp(s) = sock else {
            return None;
        };
        // SAFETY: fstat on our own open socket fd into a zeroed stat we own.
        let inode = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(s.as_raw_fd(), &mut st) != 0 {
                return None;
            }
            st.st_ino
        };
        let mut k = KernelDrops {
            inode,
            seen: 0,
            last_check: Instant::now(),
            counter: metrics::counter!(m::SOURCE_DROPPED, "source" => source.to_string(), "reason" => "receive_buffer"),
        };
        k.seen = k.read().unwrap_or(0);
        Some(k)
    }

    fn read(&self) -> Option<u64> {
        let inode = self.inode.to_string();
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() >= 13 && cols[9] == inode {
                    return cols[12].parse().ok();
                }
            }
        }
        None
    }

    fn poll(&mut self) {
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_check = Instant::now();
        if let Some(now) = self.read() {
            let before = std::mem::replace(&mut self.seen, now);
            if now > before {
                self.counter.increment(now - before);
                tracing::warn!(dropped = now - before, "syslog: the kernel dropped UDP datagrams (receive buffer full; raise receive_buffer_bytes); counted in {}", m::SOURCE_DROPPED);
            }
        }
    }
}

fn datagram(
    events: &mut Vec<Event>,
    data: &[u8],
    peer: &str,
    now: i64,
    shared: &Shared,
    reported: &mut Reported,
) {
    let mut end = data.len();
    while end > 0 && matches!(data[end - 1], b'\n' | b'\r' | b'\0') {
        end -= 1;
    }
    if end == 0 {
        return;
    }
    let truncated = end > shared.max_frame;
    if truncated {
        reported.report(
            shared,
            peer,
            FrameError::TooLarge.kind(),
            &format!(
                "datagram longer than max_frame ({} bytes): cut and flagged",
                shared.max_frame
            ),
        );
        end = shared.max_frame;
    }
    push_frame(
        events,
        Frame {
            data: Bytes::copy_from_slice(&data[..end]),
            truncated,
        },
        peer,
        now,
        shared,
        reported,
        false,
    );
}
