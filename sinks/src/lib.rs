//! logwharf's sinks: one module per sink `type`, each a config struct (from logwharf-config) →
//! [`build`] (validates, connects lazily) → a task implementing the collector's [`Sink`] trait
//! that pulls batches, encodes, writes, and settles acknowledgements. [`encoding`] holds the
//! event encoders every sink shares.

pub mod blackhole;
pub mod cloudwatch;
pub mod console;
pub mod encoding;
pub mod file;
pub mod fluentd;
pub mod kafka;
pub mod syslog;
pub mod util;

use logwharf_collector::Sink;
use logwharf_config::{SinkConfig, SinkKind};

/// Builds the sink a config describes. No network or file I/O happens here.
pub fn build(name: &str, config: &SinkConfig) -> anyhow::Result<Box<dyn Sink>> {
    Ok(match &config.kind {
        SinkKind::Blackhole(_) => Box::new(blackhole::Blackhole::new(name)),
        SinkKind::CloudWatch(c) => Box::new(cloudwatch::CloudWatch::new(
            name,
            c,
            config.buffer.max_events,
        )?),
        SinkKind::Console(c) => Box::new(console::ConsoleSink::new(name, c)),
        SinkKind::File(c) => Box::new(file::FileSink::new(name, c)),
        SinkKind::Fluentd(c) => Box::new(fluentd::Fluentd::new(name, (**c).clone())?),
        SinkKind::Kafka(c) => Box::new(kafka::KafkaSink::new(name, c)?),
        SinkKind::Syslog(c) => Box::new(syslog::SyslogSink::new(name, c)?),
    })
}
