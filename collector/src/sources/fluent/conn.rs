//! One client connection: optional handshake, then read → frame → decode → batch → send, with
//! acknowledgements written back in order once each batch is delivered.
//!
//! Backpressure: while [`SourceOutput::send`] waits for buffer space, the socket is not read,
//! so TCP flow control slows the client. Acks: the `chunk` ids of the messages in a batch are
//! written only after that batch *and every batch before it* on this connection was delivered
//! (`on_done(true)`). Pieces of a partial line still being joined are the exception: their
//! chunk is acked with its batch, since the client (Docker with `fluentd-request-ack`) sends the
//! next piece only after that ack — a crash meanwhile loses at most the open pieces of a line
//! (bounded by `max_line_bytes` per line). A batch that was not delivered closes the connection
//! without acking, so the client resends. Bad input is counted (`logwharf_source_errors_total{kind}`), logged with the
//! peer, and closes this connection only.

use super::decode::{DecodeError, ForwardDecoder};
use super::handshake;
use super::msgpack::{value_len, MpError};
use crate::event::Event;
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::topology::SourceOutput;
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Shared-key settings of a listener.
pub struct AuthSettings {
    pub key: String,
    pub hostname: String,
}

/// What every connection of one listener shares.
pub struct ConnSettings {
    pub source: Arc<str>,
    pub out: SourceOutput,
    pub shutdown: Shutdown,
    pub limits: super::decode::Limits,
    pub max_line_bytes: usize,
    pub partial_timeout: Duration,
    pub batch_max_events: usize,
    pub auth: Option<AuthSettings>,
}

const READ_CHUNK: usize = 256 << 10;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts and logs a connection-level error.
pub fn count_error(source: &str, peer: &str, e: &DecodeError) {
    metrics::counter!(m::SOURCE_ERRORS, "source" => source.to_string(), "kind" => e.kind)
        .increment(1);
    crate::status::global().receiver(source).error(e.kind);
    tracing::warn!(
        source,
        peer = %peer,
        kind = e.kind,
        "closing the connection: {}",
        e.message
    );
}

struct AckMsg {
    seq: u64,
    ok: bool,
    chunks: Vec<String>,
}

/// Serves one connection until it ends, fails, or shutdown.
pub async fn serve<S>(stream: S, peer: String, s: Arc<ConnSettings>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 << 10);
    if let Some(auth) = &s.auth {
        let r = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            server_handshake(&mut rd, &mut wr, &mut buf, auth, s.limits.max_message),
        )
        .await
        .unwrap_or_else(|_| Err(DecodeError::new("auth", "no PING within 30 s")));
        if let Err(e) = r {
            count_error(&s.source, &peer, &e);
            return;
        }
        tracing::debug!(source = %s.source, peer, "client authenticated");
    }
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let closed = CancellationToken::new();
    let writer = tokio::spawn(
        ack_writer(wr, ack_rx, closed.clone(), s.source.clone(), peer.clone()).in_current_span(),
    );
    let mut c = Conn {
        decoder: ForwardDecoder::new(
            s.limits,
            super::partial::Partials::new(s.source.clone(), s.max_line_bytes, s.partial_timeout),
        )
        .count_invalid_ids(metrics::counter!(m::SOURCE_ERRORS, "source" => s.source.to_string(), "kind" => "invalid_container_id")),
        events: Vec::new(),
        chunks: Vec::new(),
        seq: 0,
        ack_tx,
        s: s.clone(),
    };
    let result = c.read_loop(&mut rd, &mut buf, &closed).await;
    // Whatever decoded before the end (or the error) is kept; open partial lines are shipped.
    let mut rest = Vec::new();
    c.decoder.partials.flush_all(&mut rest);
    c.events.append(&mut rest);
    let _ = c.flush().await;
    match result {
        Ok(()) => {}
        Err(ConnEnd::Bad(e)) => {
            count_error(&s.source, &peer, &e);
            closed.cancel();
        }
        Err(ConnEnd::Io(e)) => {
            tracing::debug!(source = %s.source, peer, error = %e, "connection read failed");
            closed.cancel();
        }
    }
    drop(c);
    let _ = writer.await;
}

enum ConnEnd {
    Bad(DecodeError),
    Io(std::io::Error),
}

struct Conn {
    decoder: ForwardDecoder,
    events: Vec<Event>,
    chunks: Vec<String>,
    seq: u64,
    ack_tx: mpsc::UnboundedSender<AckMsg>,
    s: Arc<ConnSettings>,
}

impl Conn {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        buf: &mut BytesMut,
        closed: &CancellationToken,
    ) -> Result<(), ConnEnd> {
        let max = self.s.limits.max_message;
        let read_bytes =
            metrics::counter!(m::SOURCE_READ_BYTES, "source" => self.s.source.to_string());
        let mut need = 0usize;
        loop {
            // Every complete message in the buffer.
            while !buf.is_empty() && buf.len() >= need {
                match value_len(buf, max) {
                    Ok(n) => {
                        need = 0;
                        let frame = buf.split_to(n).freeze();
                        let info = self
                            .decoder
                            .decode(&frame, &mut self.events)
                            .map_err(ConnEnd::Bad)?;
                        if let Some(c) = info.chunk {
                            self.chunks.push(c);
                        }
                        if self.events.len() >= self.s.batch_max_events {
                            self.flush().await.map_err(|_| ConnEnd::Io(closed_err()))?;
                        }
                    }
                    Err(MpError::Incomplete { need: n }) => {
                        need = n.unwrap_or(buf.len() + 1);
                        break;
                    }
                    Err(e) => return Err(ConnEnd::Bad(e.into())),
                }
            }
            self.flush().await.map_err(|_| ConnEnd::Io(closed_err()))?;

            // `need` never exceeds `max` (value_len refuses larger messages).
            let want = need.saturating_sub(buf.len()).max(READ_CHUNK);
            buf.reserve(want);
            let deadline = self.decoder.partials.next_deadline();
            tokio::select! {
                biased;
                _ = closed.cancelled() => return Ok(()),
                _ = self.s.shutdown.wait() => return Ok(()),
                _ = sleep_until_opt(deadline) => {
                    self.decoder
                        .partials
                        .flush_expired(std::time::Instant::now(), &mut self.events);
                }
                r = rd.read_buf(buf) => match r {
                    Ok(0) if buf.is_empty() => return Ok(()),
                    Ok(0) => {
                        return Err(ConnEnd::Bad(DecodeError::new(
                            "truncated",
                            format!("the connection closed inside a message ({} bytes of it received)", buf.len()),
                        )))
                    }
                    Ok(n) => read_bytes.increment(n as u64),
                    Err(e) => return Err(ConnEnd::Io(e)),
                },
            }
        }
    }

    /// Sends the events decoded so far as one batch, with the chunks to ack once delivered.
    async fn flush(&mut self) -> Result<(), crate::topology::Closed> {
        // Not held back for partial lines still open: a client waiting for the ack of piece N
        // (Docker with fluentd-request-ack) sends piece N+1 only after it.
        let acks = std::mem::take(&mut self.chunks);
        if self.events.is_empty() && acks.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        let (seq, tx) = (self.seq, self.ack_tx.clone());
        let on_done = Box::new(move |ok: bool| {
            let _ = tx.send(AckMsg {
                seq,
                ok,
                chunks: acks,
            });
        });
        let events = std::mem::take(&mut self.events);
        self.s.out.send(events, Some(on_done)).await
    }
}

fn closed_err() -> std::io::Error {
    std::io::Error::other("the pipeline is shutting down")
}

async fn sleep_until_opt(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Writes `{"ack": chunk}` for delivered batches, in batch order.
async fn ack_writer<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    mut rx: mpsc::UnboundedReceiver<AckMsg>,
    closed: CancellationToken,
    source: Arc<str>,
    peer: String,
) {
    let mut next = 1u64;
    let mut done: BTreeMap<u64, (bool, Vec<String>)> = BTreeMap::new();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = closed.cancelled() => return,
        };
        done.insert(msg.seq, (msg.ok, msg.chunks));
        let mut out = Vec::new();
        while let Some((ok, chunks)) = done.remove(&next) {
            next += 1;
            if !ok {
                tracing::warn!(%source, peer, "a batch was not delivered; closing the connection unacknowledged so the client resends");
                closed.cancel();
                return;
            }
            for c in chunks {
                write_ack(&mut out, &c);
            }
        }
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                tracing::debug!(%source, peer, error = %e, "writing acks failed");
                closed.cancel();
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// `{"ack": chunk}`.
pub fn write_ack(out: &mut Vec<u8>, chunk: &str) {
    let _ = rmp::encode::write_map_len(out, 1);
    let _ = rmp::encode::write_str(out, "ack");
    let _ = rmp::encode::write_str(out, chunk);
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<bytes::Bytes, DecodeError> {
    loop {
        if !buf.is_empty() {
            match value_len(buf, max) {
                Ok(n) => return Ok(buf.split_to(n).freeze()),
                Err(MpError::Incomplete { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.reserve(4096);
        match rd.read_buf(buf).await {
            Ok(0) => {
                return Err(DecodeError::new(
                    "auth",
                    "the client closed the connection during the handshake",
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(DecodeError::new(
                    "auth",
                    format!("reading the handshake: {e}"),
                ))
            }
        }
    }
}

async fn server_handshake<S: AsyncRead + AsyncWrite>(
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
    buf: &mut BytesMut,
    auth: &AuthSettings,
    max: usize,
) -> Result<(), DecodeError> {
    let nonce = handshake::random16();
    let mut out = Vec::new();
    handshake::write_helo(&mut out, &nonce);
    let io = |e: std::io::Error| DecodeError::new("auth", format!("writing the handshake: {e}"));
    wr.write_all(&out).await.map_err(io)?;
    let msg = read_frame(rd, buf, max.min(64 << 10)).await?;
    let ping = handshake::parse_ping(&msg)
        .map_err(|e| DecodeError::new("auth", format!("bad PING: {e}")))?
        .ok_or_else(|| {
            DecodeError::new(
                "auth",
                "the client sent data before authenticating (expected PING)",
            )
        })?;
    out.clear();
    if !handshake::ping_is_valid(&ping, &nonce, &auth.key) {
        let host = ping.hostname.to_string();
        handshake::write_pong(&mut out, false, "shared_key mismatch", "", b"", b"", "");
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
        return Err(DecodeError::new(
            "auth",
            format!("wrong shared key from client {host:?}"),
        ));
    }
    let salt = ping.salt.to_vec();
    handshake::write_pong(&mut out, true, "", &auth.hostname, &salt, &nonce, &auth.key);
    wr.write_all(&out).await.map_err(io)?;
    Ok(())
}
