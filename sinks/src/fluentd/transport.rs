//! Connections to a Forward server: TCP, TLS (the shared rustls client setup) or a unix socket,
//! with the client half of the shared-key handshake, and reading the server's replies (HELO,
//! PONG, `{"ack": chunk}`) framed by the collector's bounds-checked msgpack reader.

use bytes::BytesMut;
use logwharf_collector::sources::fluent::handshake;
use logwharf_collector::sources::fluent::msgpack::{value_len, MpError};
use logwharf_config::address::ForwardAddress;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Anything a connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type BoxIo = Box<dyn Io>;

/// How to reach the server.
pub struct Target {
    pub address: ForwardAddress,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub auth: Option<(String, String)>,
    pub connect_timeout: Duration,
}

/// Replies larger than this are not acks; the connection is dropped.
const MAX_REPLY: usize = 64 << 10;

/// An established (and authenticated) connection.
pub struct Connection {
    rd: ReadHalf<BoxIo>,
    pub wr: WriteHalf<BoxIo>,
    buf: BytesMut,
}

impl Target {
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let addr = &self.address;
        let io: BoxIo = match addr {
            ForwardAddress::Unix(p) => Box::new(
                tokio::time::timeout(self.connect_timeout, tokio::net::UnixStream::connect(p))
                    .await
                    .map_err(|_| anyhow::anyhow!("connecting to {addr}: timed out"))?
                    .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?,
            ),
            ForwardAddress::Tcp { host, port } | ForwardAddress::Tls { host, port } => {
                let tcp = tokio::time::timeout(
                    self.connect_timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| anyhow::anyhow!("connecting to {addr}: timed out"))?
                .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    Some((cfg, name)) => {
                        let c = tokio_rustls::TlsConnector::from(cfg.clone());
                        Box::new(
                            tokio::time::timeout(
                                self.connect_timeout,
                                c.connect(name.clone(), tcp),
                            )
                            .await
                            .map_err(|_| anyhow::anyhow!("TLS handshake with {addr}: timed out"))?
                            .map_err(|e| anyhow::anyhow!("TLS handshake with {addr}: {e}"))?,
                        )
                    }
                    None => Box::new(tcp),
                }
            }
        };
        let (rd, wr) = tokio::io::split(io);
        let mut c = Connection {
            rd,
            wr,
            buf: BytesMut::with_capacity(4096),
        };
        if let Some((key, hostname)) = &self.auth {
            let r = tokio::time::timeout(self.connect_timeout, c.handshake(key, hostname)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("shared-key handshake with {addr}: {e}"),
                Err(_) => anyhow::bail!("shared-key handshake with {addr}: timed out"),
            }
        }
        Ok(c)
    }
}

impl Connection {
    async fn handshake(&mut self, key: &str, hostname: &str) -> anyhow::Result<()> {
        let helo = self.read_msg().await?;
        let nonce = handshake::parse_helo(&helo).map_err(|e| anyhow::anyhow!("bad HELO: {e}"))?;
        let mut out = Vec::new();
        let salt = handshake::write_ping(&mut out, hostname, &nonce, key);
        self.wr.write_all(&out).await?;
        let pong = self.read_msg().await?;
        handshake::check_pong(&pong, &salt, &nonce, key).map_err(|e| anyhow::anyhow!(e))
    }

    /// The next msgpack value from the server.
    pub async fn read_msg(&mut self) -> anyhow::Result<bytes::Bytes> {
        loop {
            if !self.buf.is_empty() {
                match value_len(&self.buf, MAX_REPLY) {
                    Ok(n) => return Ok(self.buf.split_to(n).freeze()),
                    Err(MpError::Incomplete { .. }) => {}
                    Err(e) => anyhow::bail!("unexpected reply from the server: {e}"),
                }
            }
            self.buf.reserve(4096);
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                anyhow::bail!("the server closed the connection");
            }
        }
    }

    /// True when the server has closed (or reset) the connection, checked without waiting: a
    /// write to a half-closed socket would otherwise "succeed" and lose the data.
    pub fn is_closed(&mut self) -> bool {
        use std::task::{Context, Poll};
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Poll the read half once: Ready(0) or an error means closed; Pending means alive.
        let mut rd = std::pin::Pin::new(&mut self.rd);
        let mut rb = tokio::io::ReadBuf::new(&mut probe);
        match AsyncRead::poll_read(rd.as_mut(), &mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => true,
            Poll::Ready(Ok(())) => {
                // An unsolicited byte (a stray ack): keep it for the reader.
                self.buf.extend_from_slice(rb.filled());
                false
            }
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }
}
