//! A stream or datagram socket that a sink writes encoded batches to (the `syslog` and
//! `socket` sinks): connects lazily over [`transport`](super::transport), writes each buffer
//! until it is written (reconnecting with the shared backoff; nothing is acknowledged before),
//! and after a lost stream connection first writes again what was written shortly before the
//! loss (the resend window, bounded by bytes and age), since a peer that dies may have accepted
//! bytes it never read. Delivery is at-least-once: a peer restart can show a few duplicates,
//! not gaps. UDP promises nothing: a datagram that cannot be sent is counted and skipped.

use super::transport::{Connection, Connector};
use bytes::Bytes;
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Recently written stream data, written again after a connection loss. Trimmed by age when
/// data is added and when a connection is lost, never while waiting to reconnect.
struct ResendWindow {
    chunks: VecDeque<(Instant, Bytes)>,
    bytes: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl ResendWindow {
    fn push(&mut self, data: Bytes) {
        if self.max_bytes == 0 {
            return;
        }
        self.bytes += data.len();
        self.chunks.push_back((Instant::now(), data));
        self.trim();
    }

    fn trim(&mut self) {
        let now = Instant::now();
        while let Some((t, c)) = self.chunks.front() {
            let too_big = self.bytes - c.len() >= self.max_bytes && self.chunks.len() > 1;
            let too_old = now.duration_since(*t) > self.max_age;
            if !(too_big || too_old) {
                break;
            }
            self.bytes -= c.len();
            self.chunks.pop_front();
        }
    }
}

/// One sink's connection to its peer, with the retry and resend rules above.
pub struct SocketWriter {
    name: String,
    /// What the peer is, for log lines ("syslog", "socket").
    peer_kind: &'static str,
    connector: Connector,
    conn: Option<Connection>,
    backoff: Backoff,
    window: ResendWindow,
    retries: metrics::Counter,
    resent: metrics::Counter,
    /// The sink's `/status` entry: its last error, and that it is through again.
    status: std::sync::Arc<logwharf_collector::status::SinkStats>,
}

impl SocketWriter {
    /// `resend_bytes`/`resend_age` bound the resend window (0 bytes: no resending).
    pub fn new(
        sink: &str,
        peer_kind: &'static str,
        connector: Connector,
        resend_bytes: usize,
        resend_age: Duration,
    ) -> SocketWriter {
        SocketWriter {
            name: sink.to_string(),
            peer_kind,
            connector,
            conn: None,
            backoff: Backoff::network(),
            window: ResendWindow {
                chunks: VecDeque::new(),
                bytes: 0,
                max_bytes: resend_bytes,
                max_age: resend_age,
            },
            retries: metrics::counter!(m::SINK_RETRIES, "sink" => sink.to_string()),
            resent: metrics::counter!(m::SINK_RESENT_BYTES, "sink" => sink.to_string()),
            status: logwharf_collector::status::global().sink(sink),
        }
    }

    /// Writes `buf` (messages ending at `ends` for datagrams) until it is written, reconnecting
    /// with backoff. Returns only on success: a sink that gave up would lose data (shutdown
    /// aborts this at the deadline, leaving the batches unacknowledged).
    pub async fn deliver(&mut self, buf: Bytes, ends: &[usize]) {
        let mut next = 0; // datagrams: index of the next message to send
        loop {
            if self.conn.is_none() {
                match self.connect().await {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => {
                        self.failed("connect", &e);
                        self.backoff.wait().await;
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match conn {
                Connection::Stream(s) => match s.write_all(&buf).await {
                    Ok(()) => {
                        if self.backoff.attempts() > 0 {
                            self.status.ok();
                        }
                        self.backoff.reset();
                        self.window.push(buf);
                        return;
                    }
                    Err(e) => {
                        self.conn = None;
                        // What the lost connection may not have delivered: the window as of
                        // now (not as of the reconnect, however long the peer stays away).
                        self.window.trim();
                        self.failed("write", &anyhow::Error::new(e));
                        self.backoff.wait().await;
                    }
                },
                Connection::Datagram(d) => {
                    while next < ends.len() {
                        let start = if next == 0 { 0 } else { ends[next - 1] };
                        let msg = &buf[start..ends[next]];
                        let mut r = d.send(msg).await;
                        if d.is_udp()
                            && matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
                        {
                            // An ICMP error about an earlier datagram: this one was not sent.
                            count_error(&self.name, "refused");
                            r = d.send(msg).await;
                        }
                        match r {
                            Ok(_) => next += 1,
                            Err(e) if d.is_udp() => {
                                // UDP promises nothing; count the loss and go on.
                                count_error(&self.name, "send");
                                tracing::debug!(sink = %self.name, address = %self.connector.address(), error = %e, "datagram not sent");
                                next += 1;
                            }
                            Err(e) => {
                                self.conn = None;
                                self.failed("write", &anyhow::Error::new(e));
                                self.backoff.wait().await;
                                break;
                            }
                        }
                    }
                    if next >= ends.len() {
                        self.backoff.reset();
                        return;
                    }
                }
            }
        }
    }

    /// Connects, then writes the resend window (what the previous connection may have lost).
    async fn connect(&mut self) -> anyhow::Result<Connection> {
        let mut conn = self.connector.connect().await?;
        if let Connection::Stream(s) = &mut conn {
            if self.window.bytes > 0 {
                tracing::info!(sink = %self.name, address = %self.connector.address(), bytes = self.window.bytes,
                    "reconnected; resending what was written shortly before the connection was lost (at-least-once: the peer may see duplicates)");
                for (_, c) in &self.window.chunks {
                    s.write_all(c).await?;
                }
                self.resent.increment(self.window.bytes as u64);
            } else if self.backoff.attempts() > 0 {
                tracing::info!(sink = %self.name, address = %self.connector.address(), "reconnected");
            }
        }
        Ok(conn)
    }

    fn failed(&mut self, kind: &'static str, e: &anyhow::Error) {
        count_error(&self.name, kind);
        self.retries.increment(1);
        self.status.retrying(&format!(
            "{} {kind} to {}: {e:#}",
            self.peer_kind,
            self.connector.address()
        ));
        let n = self.backoff.attempts();
        if n.is_multiple_of(10) {
            tracing::warn!(sink = %self.name, address = %self.connector.address(), attempt = n + 1,
                error = %format!("{e:#}"), "{} {kind} failed; retrying with backoff (nothing is acknowledged until written)", self.peer_kind);
        }
    }

    /// Closes a stream connection cleanly (at the end of the sink's run).
    pub async fn shutdown(&mut self) {
        if let Some(Connection::Stream(s)) = self.conn.as_mut() {
            s.shutdown().await;
        }
    }
}

fn count_error(sink: &str, kind: &'static str) {
    metrics::counter!(m::SINK_ERRORS, "sink" => sink.to_string(), "kind" => kind).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_window_is_bounded_by_bytes_and_age() {
        let mut w = ResendWindow {
            chunks: VecDeque::new(),
            bytes: 0,
            max_bytes: 10,
            max_age: Duration::from_secs(60),
        };
        for _ in 0..5 {
            w.push(Bytes::from_static(b"abcd"));
        }
        assert_eq!(w.bytes, 12);
        w.max_age = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(2));
        w.trim();
        assert_eq!(w.bytes, 0);
    }
}
