//! The syslog sink's connections: TCP, TCP+TLS and unix stream sockets (one write for many
//! messages, with the peer's close noticed before the next write) and UDP and unix datagram
//! sockets (one datagram per message).
//!
//! A stream peer that closes (rsyslog stopped) first sends FIN; writes after it still succeed
//! until the RST comes back, so a writer that only looks at write results loses what it writes
//! in between. A reader task watches the read side and marks the connection closed as soon as
//! the FIN arrives.

use anyhow::Context;
use logwharf_config::address::SyslogAddress;
use logwharf_config::TlsConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpStream, UdpSocket, UnixDatagram, UnixStream};
use tokio::sync::Notify;
use tracing::Instrument;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How to reach the peer; built once from the config (TLS setup included).
pub struct Connector {
    address: SyslogAddress,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
}

impl Connector {
    pub fn new(
        address: SyslogAddress,
        tls: Option<&TlsConfig>,
        connect_timeout: Duration,
    ) -> anyhow::Result<Connector> {
        let tls = match &address {
            SyslogAddress::TcpTls { host, .. } => {
                let default = TlsConfig::default();
                let cfg = tls.unwrap_or(&default);
                let client = logwharf_collector::tls::client_config(cfg)?;
                let name = logwharf_collector::tls::server_name(cfg, host)?;
                Some((tokio_rustls::TlsConnector::from(client), name))
            }
            _ => None,
        };
        Ok(Connector {
            address,
            tls,
            connect_timeout,
        })
    }

    pub fn address(&self) -> &SyslogAddress {
        &self.address
    }

    /// Opens a connection (within the connect timeout).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {:?}", self.connect_timeout))?
    }

    async fn connect_inner(&self) -> anyhow::Result<Connection> {
        Ok(match &self.address {
            SyslogAddress::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Connection::stream(Box::new(s))
            }
            SyslogAddress::TcpTls { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                let (connector, name) = self.tls.as_ref().context("TLS is not set up")?;
                let s = connector
                    .connect(name.clone(), s)
                    .await
                    .context("TLS handshake")?;
                Connection::stream(Box::new(s))
            }
            SyslogAddress::Unix(path) => {
                Connection::stream(Box::new(UnixStream::connect(path).await?))
            }
            SyslogAddress::Udp { host, port } => {
                let target = tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .next()
                    .with_context(|| format!("{host} has no address"))?;
                let local: std::net::SocketAddr = if target.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).await?;
                s.connect(target).await?;
                Connection::Datagram(Datagram::Udp(s))
            }
            SyslogAddress::Unixgram(path) => {
                let s = UnixDatagram::unbound()?;
                s.connect(path)?;
                Connection::Datagram(Datagram::Unix(s))
            }
        })
    }
}

/// An open connection.
pub enum Connection {
    Stream(StreamConn),
    Datagram(Datagram),
}

impl Connection {
    fn stream(io: Box<dyn Io>) -> Connection {
        let (mut r, w) = tokio::io::split(io);
        let closed = Arc::new(Closed::default());
        let c = closed.clone();
        let reader = tokio::spawn(
            async move {
                // Syslog servers send nothing; anything read is discarded. EOF or an error: closed.
                let mut buf = [0u8; 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                c.flag.store(true, Ordering::Release);
                c.notify.notify_waiters();
            }
            .in_current_span(),
        );
        Connection::Stream(StreamConn { w, closed, reader })
    }
}

#[derive(Default)]
struct Closed {
    flag: AtomicBool,
    notify: Notify,
}

/// A stream connection: writes go to `w`; a reader task watches for the peer's close.
pub struct StreamConn {
    w: WriteHalf<Box<dyn Io>>,
    closed: Arc<Closed>,
    reader: tokio::task::JoinHandle<()>,
}

impl StreamConn {
    /// Writes all of `buf`, failing as soon as the peer is seen closing.
    pub async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let closed = || {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "peer closed the connection",
            )
        };
        // Registered before the flag is read, so a close in between is not missed.
        let notified = self.closed.notify.notified();
        if self.closed.flag.load(Ordering::Acquire) {
            return Err(closed());
        }
        tokio::select! {
            r = async { self.w.write_all(buf).await?; self.w.flush().await } => r,
            _ = notified => Err(closed()),
        }
    }

    /// True once the peer has closed (or the read side failed).
    pub fn is_closed(&self) -> bool {
        self.closed.flag.load(Ordering::Acquire)
    }

    /// Closes cleanly (TLS close_notify, FIN).
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.w.shutdown()).await;
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A datagram socket, connected to the peer.
pub enum Datagram {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Datagram {
    pub async fn send(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Datagram::Udp(s) => s.send(buf).await,
            Datagram::Unix(s) => s.send(buf).await,
        }
    }

    pub fn is_udp(&self) -> bool {
        matches!(self, Datagram::Udp(_))
    }
}
