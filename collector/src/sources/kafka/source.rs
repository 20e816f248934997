//! The running `kafka` source: the librdkafka consumer's configuration and its thread. Only
//! with the collector's `kafka` feature (the config, the decoder and the partition
//! bookkeeping build without it, so the fuzz crate has them without librdkafka).

use super::{consumer, KafkaSourceConfig};
use crate::sources::{Source, SourceContext};
use anyhow::Context as _;
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
