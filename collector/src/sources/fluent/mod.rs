//! `type = "fluent"`: a Fluentd Forward-protocol server (spec v1) — the receiver for Docker's
//! fluentd driver, Fluent Bit's forward output, fluent-logger clients and logwharf's own
//! `fluentd` sink.
//!
//! Layout: [`msgpack`] (bounds-checked reading on rmp), [`decode`] (the four modes →
//! events), [`record`] (record keys → event fields, shared metadata), [`partial`] (Docker's
//! partial lines), [`handshake`] (shared-key HELO/PING/PONG, used by the sink too), [`conn`]
//! (one connection: framing, batching, ordered acks). This file listens (TCP, TLS, unix) and
//! answers UDP heartbeats.

pub mod config;
pub mod conn;
pub mod decode;
pub mod handshake;
pub mod msgpack;
pub mod partial;
pub mod record;

use super::{Source, SourceContext};
use crate::listen::{Accepted, Listener};
use crate::metrics as m;
use anyhow::Context;
pub use config::FluentSourceConfig;
use conn::{AuthSettings, ConnSettings};
use logwharf_config::address::ForwardAddress;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

pub struct FluentSource {
    config: FluentSourceConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl FluentSource {
    /// Validates the TLS files now, so a bad certificate fails at startup.
    pub fn new(config: FluentSourceConfig) -> anyhow::Result<FluentSource> {
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(t).context("fluent source TLS")?,
            )),
            None => None,
        };
        Ok(FluentSource { config, tls })
    }
}

async fn bind(name: &str, addr: &ForwardAddress) -> anyhow::Result<Listener> {
    let owner = format!("sources.{name}");
    let l = match addr {
        ForwardAddress::Tcp { host, port } | ForwardAddress::Tls { host, port } => {
            Listener::tcp(&owner, host, *port).await?
        }
        ForwardAddress::Unix(path) => Listener::unix(&owner, path)?,
    };
    Ok(l.count_errors(
        metrics::counter!(m::SOURCE_ERRORS, "source" => name.to_string(), "kind" => "accept"),
    ))
}

#[async_trait::async_trait]
impl Source for FluentSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        if ctx.once {
            tracing::info!(source = %ctx.name, "run --once: a network receiver has nothing present to read");
            return Ok(());
        }
        let c = &self.config;
        let mut listener = bind(&ctx.name, &c.address).await?;
        tracing::info!(source = %ctx.name, address = %c.address, tls = self.tls.is_some(), auth = c.auth.is_some(), "fluent source listening");
        let settings = Arc::new(ConnSettings {
            source: ctx.name.clone(),
            out: ctx.out.clone(),
            shutdown: ctx.shutdown.clone(),
            limits: decode::Limits {
                max_message: c.max_message_bytes.0.min(u32::MAX as u64) as usize,
                max_decompressed: c.max_decompressed_bytes.0.min(u32::MAX as u64) as usize,
            },
            max_line_bytes: c.max_line_bytes.0.min(u32::MAX as u64) as usize,
            partial_timeout: c.partial_timeout.0,
            batch_max_events: c.batch_max_events,
            auth: c.auth.as_ref().map(|a| AuthSettings {
                key: a.shared_key.clone(),
                hostname: a
                    .self_hostname
                    .clone()
                    .unwrap_or_else(crate::host::hostname),
            }),
        });
        let mut tasks = JoinSet::new();
        if c.heartbeat {
            if let Some((host, port)) = c.address.host_port() {
                let sock = tokio::net::UdpSocket::bind((host, port))
                    .await
                    .with_context(|| format!("binding the UDP heartbeat on {host}:{port}"))?;
                tasks.spawn(heartbeat(sock, ctx.shutdown.clone()).in_current_span());
            }
        }
        let permits = Arc::new(Semaphore::new(c.max_connections));
        let connections = metrics::gauge!(m::SOURCE_CONNECTIONS, "source" => ctx.name.to_string());
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.context("connection limit")?,
                _ = ctx.shutdown.wait() => break,
            };
            let (stream, peer) = tokio::select! {
                a = listener.accept() => a,
                _ = ctx.shutdown.wait() => break,
            };
            let s = settings.clone();
            let tls = self.tls.clone();
            let g = connections.clone();
            tasks.spawn(
                async move {
                    g.increment(1.0);
                    let receiver = crate::status::global().receiver(&s.source);
                    receiver.connected();
                    tracing::debug!(source = %s.source, peer, "connection accepted");
                    match (stream, tls) {
                        (Accepted::Tcp(t), Some(acceptor)) => {
                            match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(t))
                                .await
                            {
                                Ok(Ok(t)) => conn::serve(t, peer, s).await,
                                Ok(Err(e)) => conn::count_error(
                                    &s.source,
                                    &peer,
                                    &decode::DecodeError::new(
                                        "tls",
                                        format!("TLS handshake failed: {e}"),
                                    ),
                                ),
                                Err(_) => conn::count_error(
                                    &s.source,
                                    &peer,
                                    &decode::DecodeError::new("tls", "TLS handshake timed out"),
                                ),
                            }
                        }
                        (Accepted::Tcp(t), None) => {
                            let _ = t.set_nodelay(true);
                            conn::serve(t, peer, s).await
                        }
                        (Accepted::Unix(u), _) => conn::serve(u, peer, s).await,
                    }
                    g.decrement(1.0);
                    receiver.disconnected();
                    drop(permit);
                }
                .in_current_span(),
            );
            // Reap finished connections so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        // Connections see the shutdown too: they flush what they decoded and end.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!(source = %ctx.name, "connections did not finish within 10 s of shutdown");
        }
        Ok(())
    }
}

async fn heartbeat(sock: tokio::net::UdpSocket, shutdown: crate::shutdown::Shutdown) {
    let mut buf = [0u8; 128];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((_, from)) = r {
                    let _ = sock.send_to(b"\0", from).await;
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}
