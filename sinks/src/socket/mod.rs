//! `type = "socket"`: events as newline-delimited lines (JSON by default) to a TCP, UDP,
//! TCP+TLS or unix socket — the generic counterpart of the syslog sink, like Vector's `socket`
//! sink. Batches are gathered with the shared batcher, encoded into one buffer and written by
//! the shared socket writer (reconnect with backoff, resend window, acknowledged once
//! written); on datagram transports each event is one datagram.

pub mod config;

use crate::encoding::Encoder;
use crate::util::batcher::next_group;
use crate::util::socket::SocketWriter;
use crate::util::transport::Connector;
use bytes::Bytes;
pub use config::SocketSinkConfig;
use logwharf_collector::metrics as m;
use logwharf_collector::{Sink, SinkInput};

pub struct SocketSink {
    config: SocketSinkConfig,
    encoder: Encoder,
    writer: SocketWriter,
    events: metrics::Counter,
    bytes: metrics::Counter,
}

impl SocketSink {
    pub fn new(name: &str, config: &SocketSinkConfig) -> anyhow::Result<SocketSink> {
        let connector = Connector::new(
            config.address.clone(),
            config.tls.as_ref(),
            config.connect_timeout.0,
        )?;
        Ok(SocketSink {
            encoder: Encoder::new(config.encoding),
            writer: SocketWriter::new(
                name,
                "socket",
                connector,
                config.resend_window.0 as usize,
                config.resend_window_age.0,
            ),
            events: metrics::counter!(m::SINK_EVENTS, "sink" => name.to_string()),
            bytes: metrics::counter!(m::SINK_BYTES, "sink" => name.to_string()),
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for SocketSink {
    async fn run(mut self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let mut ends = Vec::new();
        let batch = self.config.batch;
        while let Some(group) = next_group(&mut input, &batch).await {
            let mut buf = Vec::new();
            ends.clear();
            let mut events = 0;
            for sb in &group {
                for ev in &sb.batch.events {
                    self.encoder.encode_line(&sb.batch.source, ev, &mut buf);
                    ends.push(buf.len());
                }
                events += sb.batch.len();
            }
            let n = buf.len();
            self.writer.deliver(Bytes::from(buf), &ends).await;
            for sb in group {
                sb.into_parts().1.delivered();
            }
            self.events.increment(events as u64);
            self.bytes.increment(n as u64);
        }
        self.writer.shutdown().await;
        Ok(())
    }
}
