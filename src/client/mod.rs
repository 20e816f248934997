//! The commands that ask a running daemon (`status`, `tap`, `top`): they find it by the
//! config's `api.address` and speak just enough HTTP/1.1 to GET one of its routes.

pub mod status;
pub mod tap;
pub mod top;

use anyhow::Context;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's API address, as an address to connect to (a wildcard bind becomes loopback).
pub fn connect_address(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// No daemon answered at `addr`: the one-line message for it.
#[derive(Debug)]
pub struct NoDaemon {
    pub addr: SocketAddr,
    pub cause: std::io::Error,
}

impl std::fmt::Display for NoDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no logwharf daemon answers at {} (api.address): {}",
            self.addr, self.cause
        )
    }
}

impl std::error::Error for NoDaemon {}

/// An open response: its status code and a reader of its body.
pub struct Response {
    pub status: u16,
    pub body: BufReader<TcpStream>,
}

/// Sends `GET target` to `addr`; the body is read by the caller (to its end: the daemon
/// closes the connection after each response).
pub fn get(
    addr: SocketAddr,
    target: &str,
    read_timeout: Option<Duration>,
) -> anyhow::Result<Response> {
    let addr = connect_address(addr);
    let mut conn =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|cause| NoDaemon { addr, cause })?;
    conn.set_read_timeout(read_timeout)?;
    conn.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|cause| NoDaemon { addr, cause })?;
    let mut body = BufReader::new(conn);
    let mut line = String::new();
    body.read_line(&mut line)
        .map_err(|cause| NoDaemon { addr, cause })?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{addr} did not answer like logwharf's API: {line:?}"))?;
    loop {
        line.clear();
        if body.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    Ok(Response { status, body })
}

/// `GET /status`, parsed.
pub fn fetch_status(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let mut r = get(addr, "/status", Some(TIMEOUT))?;
    let mut text = String::new();
    r.body.read_to_string(&mut text)?;
    if r.status != 200 {
        anyhow::bail!("{addr}/status answered {}: {}", r.status, text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("{addr}/status: not JSON"))
}

/// Bytes for people: `812 B`, `1.5 MB`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds for people: `45s`, `12m`, `3.5h`.
pub fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}
