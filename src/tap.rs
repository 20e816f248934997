//! `GET /tap?container=GLOB&source=NAME&sink=NAME&limit=N`: the events flowing through the
//! daemon now, one JSON object a line as `encoding = "json"` writes them, until the client
//! hangs up (or `limit` events were sent). The pipeline never waits for a tap: the
//! collector's [`TapHub`](logwharf_collector::status::tap::TapHub) drops what a slow client
//! has no room for, and this tells the client how many with a `{"tap_dropped":N}` line before
//! the next events it gets.

use logwharf_collector::status::tap::TapFilter;
use logwharf_config::Encoding;
use logwharf_sinks::encoding::Encoder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What a `/tap` query asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TapQuery {
    pub containers: Vec<String>,
    pub source: Option<String>,
    pub sink: Option<String>,
    pub limit: Option<u64>,
}

impl TapQuery {
    pub fn parse(query: &str) -> Result<TapQuery, String> {
        let mut q = TapQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v).ok_or_else(|| format!("{k}: not a valid URL-encoded value"))?;
            match k {
                "container" => q.containers.push(v),
                "source" => q.source = Some(v),
                "sink" => q.sink = Some(v),
                "limit" => {
                    q.limit = Some(
                        v.parse()
                            .map_err(|_| format!("limit: {v:?} is not a number"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown parameter {k:?} (container, source, sink, limit)"
                    ))
                }
            }
        }
        Ok(q)
    }

    /// The query string for these choices.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .containers
            .iter()
            .map(|c| format!("container={}", encode(c)))
            .collect();
        if let Some(s) = &self.source {
            parts.push(format!("source={}", encode(s)));
        }
        if let Some(s) = &self.sink {
            parts.push(format!("sink={}", encode(s)));
        }
        if let Some(n) = self.limit {
            parts.push(format!("limit={n}"));
        }
        parts.join("&")
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Serves one tap client on `conn` until it hangs up.
pub async fn serve(mut conn: TcpStream, query: &str) {
    let filter = TapQuery::parse(query).and_then(|q| {
        let containers = logwharf_collector::filter::glob_set(&q.containers)
            .map_err(|e| format!("container: {e}"))?;
        let filter = TapFilter {
            source: q.source,
            sink: q.sink,
            containers,
        };
        Ok((filter, q.limit))
    });
    let (filter, limit) = match filter {
        Ok(f) => f,
        Err(e) => {
            let body = format!("bad tap query: {e}\n");
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            return;
        }
    };
    limit_send_buffer(&conn);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut tap = logwharf_collector::status::global()
        .taps()
        .subscribe(filter);
    let encoder = Encoder::new(Encoding::Json);
    let mut left = limit.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    while left > 0 {
        let Some((batch, dropped)) = tap.next().await else {
            return;
        };
        out.clear();
        if dropped > 0 {
            out.extend_from_slice(format!("{{\"tap_dropped\":{dropped}}}\n").as_bytes());
        }
        for e in batch
            .events
            .iter()
            .take(left.min(usize::MAX as u64) as usize)
        {
            encoder.encode_line(&batch.source, e, &mut out);
            left -= 1;
        }
        if conn.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = conn.shutdown().await;
}

/// What a tap encodes ahead of its client's reading is what the kernel's send buffer holds
/// (autotuned up to megabytes: thousands of events encoded for a client that may never read
/// them). 64 KiB (the kernel doubles it) still streams at loopback speed.
fn limit_send_buffer(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = 64 << 10;
    // SAFETY: setsockopt with a pointer to a c_int we own and its size.
    let r = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "tap: could not set the send buffer size");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips() {
        let q = TapQuery {
            containers: vec!["web-*".into(), "db 1".into()],
            source: Some("logs".into()),
            sink: None,
            limit: Some(5),
        };
        assert_eq!(TapQuery::parse(&q.to_query()), Ok(q));
        assert!(TapQuery::parse("limit=x").is_err());
        assert!(TapQuery::parse("what=1").is_err());
    }
}
