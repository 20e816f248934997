//! logwharf's sinks: one folder per sink `type`, each holding its config struct (`config.rs`:
//! keys, defaults, validation) and the task implementing the collector's [`Sink`] trait that
//! pulls batches, encodes, writes, and settles acknowledgements. Every sink is registered once,
//! in [`TYPES`]. [`encoding`] holds the event encoders every sink shares, [`util`] the batching
//! helper.
//!
//! [`Sink`]: logwharf_collector::Sink

pub mod blackhole;
pub mod cloudwatch;
pub mod console;
pub mod encoding;
pub mod file;
pub mod fluentd;
pub mod kafka;
pub mod socket;
pub mod syslog;
pub mod util;

use logwharf_collector::{sink_type, SinkType};

/// Every sink type: one line per sink.
pub const TYPES: &[SinkType] = &[
    sink_type::<blackhole::BlackholeConfig>("blackhole"),
    sink_type::<cloudwatch::CloudWatchConfig>("cloudwatch"),
    sink_type::<console::ConsoleConfig>("console"),
    sink_type::<file::FileSinkConfig>("file"),
    sink_type::<fluentd::FluentdSinkConfig>("fluentd"),
    sink_type::<kafka::KafkaSinkConfig>("kafka"),
    sink_type::<socket::SocketSinkConfig>("socket"),
    sink_type::<syslog::SyslogSinkConfig>("syslog"),
];

/// Loads a config text with every source and sink type, for this crate's unit tests.
#[cfg(test)]
pub(crate) fn load_test_config(
    text: &str,
) -> Result<logwharf_collector::Config, logwharf_config::ConfigErrors> {
    let registry = logwharf_collector::Registry {
        sources: logwharf_collector::sources::TYPES,
        sinks: TYPES,
    };
    logwharf_config::load_str(text, "t", &registry)
}
