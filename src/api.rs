//! The HTTP endpoint: `GET /metrics` (Prometheus text, from [`crate::recorder`]),
//! `GET /health` (the supervisor's [`Health`] report: 200 when every source and sink runs, 503
//! naming the failing ones), `GET /status` (the live state of every container and sink, from
//! [`logwharf_collector::status`]) and `GET /tap?…` (the events flowing now, as NDJSON:
//! [`crate::tap`]). A minimal HTTP/1.1 responder: four fixed routes do not need a web
//! framework. Connections are accepted through the collector's one [`Listener`], which backs
//! off on accept errors (EMFILE) instead of spinning.

use crate::progress::Progress;
use crate::recorder::{self, Metrics};
use anyhow::Context;
use logwharf_collector::listen::Listener;
use logwharf_collector::Health;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Installs the metrics recorder (feeding `progress` too, when given) and serves it and
/// `health` on `addr`.
pub async fn start(
    addr: SocketAddr,
    health: Health,
    progress: Option<Arc<Progress>>,
) -> anyhow::Result<()> {
    let mut listener = Listener::tcp("api", &addr.ip().to_string(), addr.port())
        .await
        .with_context(|| format!("starting the metrics endpoint (api.address = {addr})"))?;
    let handle = recorder::install(progress)?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics, health at /health");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await;
            let logwharf_collector::listen::Accepted::Tcp(conn) = conn else {
                continue;
            };
            tokio::spawn(serve(conn, handle.clone(), health.clone()));
        }
    });
    Ok(())
}

async fn serve(mut conn: tokio::net::TcpStream, handle: Metrics, health: Health) {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Read the request head (bounded); the routes take no body.
    while n < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(k)) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, ctype, body) = match path {
        "/tap" => return crate::tap::serve(conn, query).await,
        "/status" => {
            let doc = logwharf_collector::status::global().report(&health);
            ("200 OK", "application/json", format!("{doc}\n"))
        }
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", handle.render()),
        "/health" => {
            let (ok, doc) = health.report();
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", format!("{doc}\n"))
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics, /health, /status or /tap\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes()).await;
}
