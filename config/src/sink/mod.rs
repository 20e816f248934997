//! `[sinks.NAME]` tables: the keys every sink shares (`inputs`, `buffer`) and one config
//! struct per sink `type`.

pub mod blackhole;
pub mod cloudwatch;
pub mod console;
pub mod file;
pub mod fluentd;
pub mod kafka;
pub mod syslog;

pub use blackhole::BlackholeConfig;
pub use cloudwatch::CloudWatchConfig;
pub use console::ConsoleConfig;
pub use file::FileSinkConfig;
pub use fluentd::FluentdSinkConfig;
pub use kafka::KafkaSinkConfig;
pub use syslog::SyslogSinkConfig;

use crate::load::Decoder;
use serde::Deserialize;

/// The sink types logwharf knows, for error messages.
pub const SINK_TYPES: &[&str] = &[
    "blackhole",
    "cloudwatch",
    "console",
    "file",
    "fluentd",
    "kafka",
    "syslog",
];

/// One configured sink: what it reads, how its buffer behaves, and what it is.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Source names (or globs over them) whose events this sink receives.
    pub inputs: Vec<String>,
    pub buffer: BufferConfig,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Blackhole(BlackholeConfig),
    CloudWatch(Box<CloudWatchConfig>),
    Console(ConsoleConfig),
    File(FileSinkConfig),
    /// Boxed: much larger than the other variants.
    Fluentd(Box<FluentdSinkConfig>),
    /// Boxed: much larger than the other variants.
    Kafka(Box<KafkaSinkConfig>),
    /// Boxed: much larger than the other variants.
    Syslog(Box<SyslogSinkConfig>),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Blackhole(_) => "blackhole",
            SinkKind::CloudWatch(_) => "cloudwatch",
            SinkKind::Console(_) => "console",
            SinkKind::File(_) => "file",
            SinkKind::Fluentd(_) => "fluentd",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Syslog(_) => "syslog",
        }
    }

    /// Decodes the type-specific keys of one sink; `None` means errors were recorded.
    pub(crate) fn decode(type_name: &str, d: &mut Decoder<'_>) -> Option<SinkKind> {
        Some(match type_name {
            "blackhole" => SinkKind::Blackhole(d.decode()?),
            "cloudwatch" => {
                let c: CloudWatchConfig = d.decode()?;
                c.validate(d);
                SinkKind::CloudWatch(Box::new(c))
            }
            "console" => {
                let c: ConsoleConfig = d.decode()?;
                c.validate(d);
                SinkKind::Console(c)
            }
            "file" => {
                let c: FileSinkConfig = d.decode()?;
                c.validate(d);
                SinkKind::File(c)
            }
            "fluentd" => {
                let c: FluentdSinkConfig = d.decode()?;
                c.validate(d);
                SinkKind::Fluentd(Box::new(c))
            }
            "kafka" => {
                let c: KafkaSinkConfig = d.decode()?;
                c.validate(d);
                SinkKind::Kafka(Box::new(c))
            }
            "syslog" => {
                let c: SyslogSinkConfig = d.decode()?;
                c.validate(d);
                SinkKind::Syslog(Box::new(c))
            }
            _ => return None,
        })
    }
}

/// What a sink does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: the sources stop reading (files are their own buffer).
    #[default]
    Block,
    /// Drop the incoming batch and count it.
    DropNewest,
}

/// `[sinks.NAME.buffer]`: a bounded in-memory buffer between the sources and the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (the only type so far).
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Events the buffer holds at most.
    pub max_events: usize,
    pub when_full: WhenFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferType::Memory,
            max_events: 16_384,
            when_full: WhenFull::Block,
        }
    }
}

/// How a sink turns an event into bytes. Each sink accepts a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per event: `time`, `stream`, `message`, `container_id`, `source`,
    /// metadata and `fields`.
    Json,
    /// Docker's json-file line: `{"log":"…\n","stream":"…","time":"…"}` (+ `attrs`).
    Docker,
    /// `TIME CONTAINER STREAM MESSAGE`, for people.
    Text,
    /// The message bytes only.
    Raw,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Docker => "docker",
            Encoding::Text => "text",
            Encoding::Raw => "raw",
        }
    }

    /// Records an error unless `self` is one of `allowed`.
    pub(crate) fn check(self, allowed: &[Encoding], d: &mut Decoder<'_>) {
        if !allowed.contains(&self) {
            let names: Vec<_> = allowed.iter().map(|e| e.name()).collect();
            d.error(
                &["encoding"],
                format!(
                    "encoding {:?} is not supported by this sink (expected one of: {})",
                    self.name(),
                    names.join(", ")
                ),
            );
        }
    }
}
