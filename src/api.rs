//! The HTTP endpoint: `GET /metrics` (Prometheus text, from metrics-exporter-prometheus) and
//! `GET /health`. A minimal HTTP/1.1 responder: two fixed routes do not need a web framework.

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Installs the metrics recorder and serves it on `addr`.
pub async fn start(addr: SocketAddr) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint (api.address = {addr})"))?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics, health at /health");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(conn, handle.clone()));
        }
    });
    Ok(())
}

async fn serve(mut conn: tokio::net::TcpStream, handle: PrometheusHandle) {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Read the request head (bounded); the routes take no body.
    while n < buf.len() {
        match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf[n..]))
            .await
        {
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
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", handle.render()),
        "/health" => ("200 OK", "application/json", "{\"ok\":true}\n".to_string()),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /health\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes()).await;
}
