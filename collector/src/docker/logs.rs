//! One container's log stream: `GET /containers/{id}/logs?follow&stdout&stderr&timestamps&since`
//! over a connection of its own, read as raw bytes (bollard guesses TTY-ness from the first
//! byte, which a TTY line starting with `\x01` defeats; here the caller says, from inspect),
//! and split into [`Frame`]s: the 8-byte multiplexing header (`[stream, 0, 0, 0, len u32 BE]`)
//! for normal containers, newline-split raw text for TTY containers.

use super::client::DockerHost;
use crate::event::Stream;
use anyhow::Context;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// A multiplexed frame larger than this is garbage, not a log message (Docker's own messages
/// are at most 16 KiB plus the timestamp).
pub const MAX_FRAME: usize = 8 << 20;

/// The body of an open log request.
pub struct LogStream {
    body: Incoming,
    conn: JoinHandle<()>,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl LogStream {
    /// The next chunk of bytes; `None` at the end of the stream (the container stopped, or
    /// `follow` was off).
    pub async fn next_chunk(&mut self) -> Option<anyhow::Result<Bytes>> {
        loop {
            match self.body.frame().await? {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        if !data.is_empty() {
                            return Some(Ok(data));
                        }
                    }
                }
                Err(e) => {
                    return Some(Err(anyhow::Error::new(e).context("reading the log stream")))
                }
            }
        }
    }
}

/// Opens the log stream of `id` from `since_ns` (inclusive; Docker takes `seconds.nanos`).
pub async fn open(
    host: &DockerHost,
    api_version: &str,
    id: &str,
    since_ns: i64,
    follow: bool,
) -> anyhow::Result<LogStream> {
    let since = format!(
        "{}.{:09}",
        since_ns.div_euclid(1_000_000_000),
        since_ns.rem_euclid(1_000_000_000)
    );
    let path = format!(
        "/v{api_version}/containers/{id}/logs?follow={}&stdout=1&stderr=1&timestamps=1&since={since}",
        u8::from(follow)
    );
    match host {
        DockerHost::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .with_context(|| format!("connecting to {host}"))?;
            request(s, &path).await
        }
        DockerHost::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a)
                .await
                .with_context(|| format!("connecting to {host}"))?;
            let _ = s.set_nodelay(true);
            request(s, &path).await
        }
    }
    .with_context(|| format!("opening the log stream of container {id}"))
}

async fn request<S>(io: S, path: &str) -> anyhow::Result<LogStream>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Docker log connection closed");
            }
        }
        .in_current_span(),
    );
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        // bollard's type for a daemon's error answer, so callers match on the status code as
        // they do for bollard's own requests (see [`daemon_status`]).
        return Err(bollard::errors::Error::DockerResponseServerError {
            status_code: status.as_u16(),
            message: msg.trim().to_string(),
        }
        .into());
    }
    Ok(LogStream {
        body: resp.into_body(),
        conn,
    })
}

/// The HTTP status of the daemon's error answer in `e`'s chain, if it is one.
pub fn daemon_status(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<bollard::errors::Error>() {
            Some(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
                Some(*status_code)
            }
            _ => None,
        })
}

/// One log message as the API delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: Stream,
    /// Docker's timestamp for the message; `None` when the prefix did not parse.
    pub time_ns: Option<i64>,
    /// The message without the timestamp and without the trailing newline.
    pub message: Bytes,
    /// False for a partial message (a line over 16 KiB cut by Docker, or output without `\n`).
    pub complete: bool,
}

/// The multiplexing header was not one.
#[derive(Debug, thiserror::Error)]
#[error("malformed log stream: bad frame header {0:02x?}")]
pub struct BadHeader(pub [u8; 8]);

/// Splits a log stream into frames.
pub struct Demux {
    tty: bool,
    buf: BytesMut,
    /// TTY mode: the last frame was a piece of a line longer than [`MAX_FRAME`] (no
    /// timestamp prefix in what follows).
    mid_line: bool,
}

impl Demux {
    pub fn new(tty: bool) -> Demux {
        Demux {
            tty,
            buf: BytesMut::new(),
            mid_line: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Result<Frame, BadHeader>> {
        if self.tty {
            // A TTY stream has no frames, only lines: one without a newline is cut into
            // pieces of MAX_FRAME (shipped as partial messages), so memory stays bounded.
            // Looked for in the first MAX_FRAME bytes only, so that the pieces do not depend
            // on how the stream was cut into reads.
            let window = self.buf.len().min(MAX_FRAME);
            let (raw, more) = match memchr::memchr(b'\n', &self.buf[..window]) {
                Some(nl) => (self.buf.split_to(nl + 1).freeze(), false),
                None if self.buf.len() >= MAX_FRAME => {
                    (self.buf.split_to(MAX_FRAME).freeze(), true)
                }
                None => return None,
            };
            return Some(Ok(self.tty_frame(raw, more)));
        }
        if self.buf.len() < 8 {
            return None;
        }
        let h: [u8; 8] = self.buf[..8].try_into().ok()?;
        let stream = match h[0] {
            0 | 1 => Stream::Stdout,
            2 => Stream::Stderr,
            _ => return Some(Err(self.bad(h))),
        };
        if h[1..4] != [0, 0, 0] {
            return Some(Err(self.bad(h)));
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > MAX_FRAME {
            return Some(Err(self.bad(h)));
        }
        if self.buf.len() < 8 + len {
            return None;
        }
        self.buf.advance(8);
        let raw = self.buf.split_to(len).freeze();
        Some(Ok(parse_payload(stream, raw, false)))
    }

    /// At the end of the stream: what is left of a TTY line without its newline.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.tty && !self.buf.is_empty() {
            let raw = self.buf.split().freeze();
            return Some(self.tty_frame(raw, false));
        }
        self.buf.clear();
        None
    }

    /// A TTY line (or a piece of one; `more`: the line goes on in the next piece).
    fn tty_frame(&mut self, raw: Bytes, more: bool) -> Frame {
        let frame = if self.mid_line {
            split_newline(Stream::Stdout, None, raw, true)
        } else {
            parse_payload(Stream::Stdout, raw, true)
        };
        self.mid_line = more;
        frame
    }

    fn bad(&mut self, h: [u8; 8]) -> BadHeader {
        self.buf.clear();
        BadHeader(h)
    }
}

/// `TIMESTAMP SP message [\r]\n` → a frame.
fn parse_payload(stream: Stream, raw: Bytes, tty: bool) -> Frame {
    let (time_ns, msg) = match memchr::memchr(b' ', &raw) {
        Some(sp) if sp >= 20 => match crate::time::parse_rfc3339_nanos(&raw[..sp]) {
            Some(t) => (Some(t), raw.slice(sp + 1..)),
            None => (None, raw),
        },
        _ => (None, raw),
    };
    split_newline(stream, time_ns, msg, tty)
}

/// The frame of message `msg`: complete when it ends in a newline (dropped, with a TTY's
/// `\r` before it).
fn split_newline(stream: Stream, time_ns: Option<i64>, mut msg: Bytes, tty: bool) -> Frame {
    let complete = msg.last() == Some(&b'\n');
    if complete {
        msg.truncate(msg.len() - 1);
        if tty && msg.last() == Some(&b'\r') {
            msg.truncate(msg.len() - 1);
        }
    }
    Frame {
        stream,
        time_ns,
        message: msg,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_status_is_typed_not_found_in_the_text() {
        let answer = |code: u16| {
            anyhow::Error::new(bollard::errors::Error::DockerResponseServerError {
                status_code: code,
                message: "No such container: 404404".into(),
            })
            .context("opening the log stream of container 4040404")
        };
        assert_eq!(daemon_status(&answer(404)), Some(404));
        assert_eq!(
            daemon_status(&answer(500)),
            Some(500),
            "404 in the text is not a 404"
        );
        let io = anyhow::anyhow!("connection reset").context("container 404 log stream");
        assert_eq!(daemon_status(&io), None);
    }

    fn framed(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn demultiplexes_split_across_chunks() {
        let mut bytes = framed(1, b"2026-11-25T13:04:22.901652423Z hello\n");
        bytes.extend(framed(2, b"2026-11-25T13:04:22.901652423Z \x01err\n"));
        bytes.extend(framed(1, b"2026-11-25T13:04:23Z part"));
        let mut d = Demux::new(false);
        let mut out = Vec::new();
        for chunk in bytes.chunks(5) {
            d.push(chunk);
            while let Some(f) = d.next_frame() {
                out.push(f.unwrap());
            }
        }
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].message, "hello");
        assert_eq!(out[0].time_ns, Some(1_795_611_862_901_652_423));
        assert_eq!(
            (out[1].stream, &out[1].message[..]),
            (Stream::Stderr, &b"\x01err"[..])
        );
        assert!(!out[2].complete);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn tty_lines_have_no_header_and_lose_cr() {
        let mut d = Demux::new(true);
        d.push(b"2026-11-25T13:04:22Z \x01\x00\x00\x00tty line\r\n2026-11-25T13:04:23Z tail");
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(&f.message[..], b"\x01\x00\x00\x00tty line");
        assert!(d.next_frame().is_none());
        let last = d.finish().unwrap();
        assert_eq!((&last.message[..], last.complete), (&b"tail"[..], false));
    }

    #[test]
    fn a_tty_line_without_newline_is_cut_at_max_frame() {
        let mut d = Demux::new(true);
        let mut line = b"2026-11-25T13:04:22Z ".to_vec();
        line.resize(MAX_FRAME + 100, b'x');
        d.push(&line);
        let first = d.next_frame().unwrap().unwrap();
        assert!(!first.complete);
        assert!(first.time_ns.is_some());
        assert!(d.buffered() <= 100);
        // What follows is the same line: no timestamp is looked for in it.
        d.push(b"2026-11-25T13:04:23Z end\n");
        let rest = d.next_frame().unwrap().unwrap();
        assert_eq!(rest.time_ns, None);
        assert!(rest.complete);
        assert!(rest.message.ends_with(b"2026-11-25T13:04:23Z end"));
        // The next line is a line of its own again.
        d.push(b"2026-11-25T13:04:24Z next\n");
        let next = d.next_frame().unwrap().unwrap();
        assert_eq!(
            (&next.message[..], next.time_ns.is_some()),
            (&b"next"[..], true)
        );
    }

    #[test]
    fn garbage_header_is_an_error() {
        let mut d = Demux::new(false);
        d.push(b"hello world, not a header\n");
        assert!(d.next_frame().unwrap().is_err());
        assert_eq!(d.buffered(), 0);
    }
}
