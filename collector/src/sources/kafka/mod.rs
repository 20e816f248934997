//! `type = "kafka"`: the aggregator tier's input. Agents' `kafka` sinks write a topic; a group
//! of aggregators, each running this source with the same `group_id`, share its partitions
//! through Kafka's own group protocol (no clustering of logwharf's own).
//!
//! Offsets move only after delivery: auto-commit is off, and the offset of a partition is
//! committed only once every sink delivered every message of it up to there, in order
//! ([`partitions`], on the shared ordered-ack tracker). On a rebalance the revoked partitions
//! stop, their batches in flight get `revoke_timeout` to settle, what settled is committed and
//! the rest is left to the next owner: at-least-once, never a gap.
//!
//! Layout: [`config`], [`decode`] (message → event for `json` | `raw` | `docker`),
//! [`partitions`] (ownership and what may be committed), [`consumer`] (the librdkafka
//! consumer on its own thread: polling, batching, rebalance callbacks, commits, lag).

pub mod config;
pub mod consumer;
pub mod decode;
pub mod partitions;

use super::{Source, SourceContext};
use anyhow::Context as _;
pub use config::KafkaSourceConfig;
use logwharf_config::StartPosition;
use rdkafka::ClientConfig;

pub struct KafkaSource {
    config: KafkaSourceConfig,
    client: ClientConfig,
}

impl KafkaSource {
    /// Checks the librdkafka configuration now, so a bad property fails at startup.
    pub fn new(config: KafkaSourceConfig) -> anyhow::Result<KafkaSource> {
        let client = client_config(&config);
        crate::kafka::check(&client).context("kafka source")?;
        Ok(KafkaSource { config, client })
    }
}

/// The consumer's librdkafka configuration: the source's keys, then `librdkafka_options`.
pub fn client_config(config: &KafkaSourceConfig) -> ClientConfig {
    let mut c = crate::kafka::base_config(&config.brokers, config.tls.as_ref());
    c.set("group.id", &config.group_id)
        // Offsets are committed by the source, and only what every sink delivered.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match config.start_at {
                StartPosition::Beginning => "earliest",
                StartPosition::End => "latest",
            },
        )
        // For the consumer-lag gauges; parsed without logging.
        .set("statistics.interval.ms", "5000");
    crate::kafka::apply_options(&mut c, &config.librdkafka_options);
    c
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        if ctx.once {
            tracing::info!(source = %ctx.name, "run --once: a consumer group has no end to read to");
            return Ok(());
        }
        let settings = consumer::Settings::new(&ctx.name, &self.config);
        let handle = tokio::runtime::Handle::current();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let client = self.client;
        let SourceContext { out, shutdown, .. } = ctx;
        std::thread::Builder::new()
            .name(format!("kafka-{}", settings.source))
            .spawn(move || {
                let r = consumer::run(&client, &settings, &out, &shutdown, &handle);
                let _ = done_tx.send(r);
            })
            .context("starting the kafka consumer thread")?;
        done_rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the kafka consumer thread panicked")))
    }
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
