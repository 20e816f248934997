//! `type = "fluentd"`: ships to a Fluentd / Fluent Bit aggregator (or a logwharf `fluent`
//! source) over the Forward protocol.
//!
//! Each group from the shared batcher (bounded by `batch.max_events`, `max_bytes`, `timeout`)
//! becomes one PackedForward message per tag ([`chunk`]; a large group is encoded on the
//! blocking pool, [`crate::util::offload`]), gzip-compressed with
//! `compress = "gzip"`, with records like Docker's fluentd driver writes them ([`record`]).
//! With `require_ack` every message carries a `chunk` id and the group is delivered only when
//! the server has acked all of them; no ack within `ack_timeout`, a write error or a closed
//! connection → reconnect with the shared backoff and resend the whole group (at-least-once:
//! duplicates are bounded by one group, i.e. `batch.max_events` rounded up to whole source
//! batches, since only one group is in flight). Without `require_ack` a group is delivered once
//! written. Only then are the logwharf batches acknowledged. Connections ([`transport`]) are
//! TCP, TLS (the shared rustls setup) or unix, with the optional shared-key handshake.

pub mod chunk;
pub mod config;
pub mod record;
pub mod transport;

use crate::util::batcher::next_group;
use crate::util::offload::{self, Offload};
use chunk::{ChunkBuilder, Message};
pub use config::{FluentdSinkConfig, ForwardCompression};
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use logwharf_collector::{Sink, SinkInput};
use logwharf_config::address::ForwardAddress;
use record::RecordEncoder;
use std::collections::HashSet;
use tokio::io::AsyncWriteExt;
use transport::{Connection, Target};

pub struct Fluentd {
    name: String,
    config: FluentdSinkConfig,
    target: Target,
}

impl Fluentd {
    /// Validates TLS files and names now; connects lazily.
    pub fn new(name: &str, config: FluentdSinkConfig) -> anyhow::Result<Fluentd> {
        let tls = match &config.address {
            ForwardAddress::Tls { host, .. } => {
                let t = config.tls.clone().unwrap_or_default();
                Some((
                    logwharf_collector::tls::client_config(&t)?,
                    logwharf_collector::tls::server_name(&t, host)?,
                ))
            }
            _ => None,
        };
        let auth = config.auth.as_ref().map(|a| {
            (
                a.shared_key.clone(),
                a.self_hostname
                    .clone()
                    .unwrap_or_else(logwharf_collector::host::hostname),
            )
        });
        let target = Target {
            address: config.address.clone(),
            tls,
            auth,
            connect_timeout: config.connect_timeout.0,
        };
        Ok(Fluentd {
            name: name.to_string(),
            config,
            target,
        })
    }

    fn error(&self, kind: &'static str, e: &anyhow::Error, attempt: u32) {
        metrics::counter!(m::SINK_ERRORS, "sink" => self.name.clone(), "kind" => kind).increment(1);
        tracing::warn!(sink = %self.name, address = %self.config.address, kind, attempt, "{e:#}");
        logwharf_collector::status::global()
            .sink(&self.name)
            .retrying(&format!("{kind} to {}: {e:#}", self.config.address));
    }

    /// Writes `msgs` (and waits for their acks) until it succeeds; returns the bytes written.
    async fn deliver(
        &self,
        conn: &mut Option<Connection>,
        msgs: &[Message],
        backoff: &mut Backoff,
    ) -> u64 {
        loop {
            if conn.as_mut().is_some_and(|c| c.is_closed()) {
                tracing::debug!(sink = %self.name, "the server closed the connection; reconnecting");
                *conn = None;
            }
            let c = match conn {
                Some(c) => c,
                None => match self.target.connect().await {
                    Ok(c) => {
                        tracing::info!(sink = %self.name, address = %self.config.address, "connected");
                        conn.insert(c)
                    }
                    Err(e) => {
                        self.error("connect", &e, backoff.attempts() + 1);
                        backoff.wait().await;
                        continue;
                    }
                },
            };
            match self.send(c, msgs).await {
                Ok(n) => {
                    backoff.reset();
                    return n;
                }
                Err((kind, e)) => {
                    self.error(kind, &e, backoff.attempts() + 1);
                    metrics::counter!(m::SINK_RETRIES, "sink" => self.name.clone()).increment(1);
                    *conn = None;
                    backoff.wait().await;
                }
            }
        }
    }

    async fn send(
        &self,
        c: &mut Connection,
        msgs: &[Message],
    ) -> Result<u64, (&'static str, anyhow::Error)> {
        let mut n = 0u64;
        for msg in msgs {
            c.wr.write_all(&msg.bytes).await.map_err(|e| {
                (
                    "write",
                    anyhow::anyhow!("writing to {}: {e}", self.config.address),
                )
            })?;
            n += msg.bytes.len() as u64;
        }
        c.wr.flush().await.map_err(|e| {
            (
                "write",
                anyhow::anyhow!("writing to {}: {e}", self.config.address),
            )
        })?;
        if !self.config.require_ack {
            return Ok(n);
        }
        let mut pending: HashSet<&str> = msgs.iter().filter_map(|m| m.chunk.as_deref()).collect();
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout.0;
        while !pending.is_empty() {
            let reply = match tokio::time::timeout_at(deadline, c.read_msg()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(("ack", e)),
                Err(_) => {
                    return Err((
                        "ack_timeout",
                        anyhow::anyhow!(
                            "{} of {} chunks not acknowledged within {:?}; resending",
                            pending.len(),
                            msgs.len(),
                            self.config.ack_timeout.0
                        ),
                    ))
                }
            };
            #[derive(serde::Deserialize)]
            struct Ack {
                ack: String,
            }
            match rmp_serde::from_slice::<Ack>(&reply) {
                Ok(a) => {
                    pending.remove(a.ack.as_str());
                }
                Err(e) => {
                    return Err((
                        "ack",
                        anyhow::anyhow!("the server sent something else than an ack: {e}"),
                    ))
                }
            }
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl Sink for Fluentd {
    async fn run(self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let c = &self.config;
        let mut builder = Offload::new(ChunkBuilder::new(
            RecordEncoder::for_sink(
                &self.name,
                c.tag.clone(),
                c.record,
                c.sub_second_precision,
                c.labels.clone(),
            ),
            c.compress == ForwardCompression::Gzip,
            c.require_ack,
        ));
        let events_out = metrics::counter!(m::SINK_EVENTS, "sink" => self.name.clone());
        let bytes_out = metrics::counter!(m::SINK_BYTES, "sink" => self.name.clone());
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::network();
        while let Some(group) = next_group(&mut input, &c.batch).await {
            let events = offload::events(&group);
            let (group, msgs) = builder
                .encode(group, events, |b: &mut ChunkBuilder, g: &Vec<_>| b.build(g))
                .await?;
            let written = self.deliver(&mut conn, &msgs, &mut backoff).await;
            let n: usize = msgs.iter().map(|m| m.events).sum();
            events_out.increment(n as u64);
            bytes_out.increment(written);
            for sb in group {
                sb.ack.delivered();
            }
        }
        if let Some(mut c) = conn {
            let _ = c.wr.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
