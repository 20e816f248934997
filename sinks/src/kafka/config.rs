//! `type = "kafka"`: events to Kafka topics through librdkafka.
//!
//! The keys the issue fixes: `brokers`, `topic` (a template rendered once per container),
//! `key` (a template; default the container's full id, so one container stays in one
//! partition), `encoding` (`json` | `raw` | `docker`), `headers`, `compression`, `acks`,
//! `enable_idempotence`, and `librdkafka_options` (passed through as they are; secrets come
//! from `${ENV}` and are never logged — see [`LibrdkafkaOptions`]).

pub use logwharf_config::kafka::LibrdkafkaOptions;
use logwharf_config::{
    ByteSize, ConfigTable, Decoder, DurationValue, Encoding, Template, TlsConfig,
};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` each. A comma-separated string is accepted too.
    #[serde(deserialize_with = "logwharf_config::kafka::deserialize_brokers")]
    pub brokers: Vec<String>,
    /// Topic template, e.g. `logs.{{.Name}}`.
    pub topic: Template,
    /// Message key template; unset: the container's full id. A key that renders empty is
    /// sent as no key (librdkafka's partitioner then spreads those messages).
    #[serde(default)]
    pub key: Option<Template>,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Metadata attached to every message as Kafka headers, named like the JSON event's
    /// fields: `container_id`, `container_name`, `image_name`, `image_id`,
    /// `compose_project`, `compose_service`, `stream`, `source`. A field without a value is
    /// left out. Default: none.
    #[serde(default)]
    pub headers: Vec<HeaderField>,
    #[serde(default)]
    pub compression: Compression,
    /// `all` (default), `1` or `0` — librdkafka's `acks`.
    #[serde(default)]
    pub acks: Acks,
    /// librdkafka's `enable.idempotence`: no duplicates and no reordering from retries.
    #[serde(default = "yes")]
    pub enable_idempotence: bool,
    /// Messages the producer queue holds at most (librdkafka's
    /// `queue.buffering.max.messages`); when full, the sink waits (backpressure).
    #[serde(default = "default_queue_max_messages")]
    pub queue_max_messages: u32,
    /// Bytes the producer queue holds at most (librdkafka's `queue.buffering.max.kbytes`).
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: ByteSize,
    /// The largest message the producer sends (librdkafka's `message.max.bytes`): one
    /// encoded event over it is refused before it is sent, counted and reported. Keep it at
    /// or below the brokers' `message.max.bytes` (Kafka's default is 1,048,588).
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: ByteSize,
    /// How long librdkafka keeps trying one message before it reports it failed (which the
    /// sink then retries itself). `0` (default): no limit — a message leaves the queue only
    /// delivered or refused for good.
    #[serde(default = "default_message_timeout")]
    pub message_timeout: DurationValue,
    /// TLS to the brokers (`security.protocol = "ssl"`): `ca_file` (default: the system's
    /// roots, found by librdkafka's `probe`), `crt_file` + `key_file` for a client
    /// certificate, `verify`. With SASL, set `security.protocol = "sasl_ssl"` and `sasl.*` in
    /// `librdkafka_options`. librdkafka does the TLS (OpenSSL, built in), not rustls.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Anything else librdkafka understands (`security.protocol`, `sasl.*`, `linger.ms`,
    /// `batch.size`, …), applied last, so it overrides the keys above.
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
}

fn yes() -> bool {
    true
}

fn default_encoding() -> Encoding {
    Encoding::Json
}

fn default_queue_max_messages() -> u32 {
    100_000
}

fn default_queue_max_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_message_max_bytes() -> ByteSize {
    ByteSize(1_000_000)
}

fn default_message_timeout() -> DurationValue {
    DurationValue::from_millis(0)
}

/// Metadata a message can carry as a Kafka header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderField {
    ContainerId,
    ContainerName,
    ImageName,
    ImageId,
    ComposeProject,
    ComposeService,
    Stream,
    Source,
}

impl HeaderField {
    /// The header's name (the JSON event's field name).
    pub fn name(self) -> &'static str {
        match self {
            HeaderField::ContainerId => "container_id",
            HeaderField::ContainerName => "container_name",
            HeaderField::ImageName => "image_name",
            HeaderField::ImageId => "image_id",
            HeaderField::ComposeProject => "compose_project",
            HeaderField::ComposeService => "compose_service",
            HeaderField::Stream => "stream",
            HeaderField::Source => "source",
        }
    }
}

/// `compression`: librdkafka's `compression.codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `acks`: how many replicas must have a message before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Every in-sync replica (`all`, also `-1`).
    #[default]
    All,
    /// The partition leader only.
    Leader,
    /// No acknowledgement (delivery reports then say nothing about the broker).
    None,
}

impl Acks {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let bad = || serde::de::Error::custom("invalid acks (expected \"all\", \"1\" or \"0\")");
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::N(-1) => Ok(Acks::All),
            Raw::N(1) => Ok(Acks::Leader),
            Raw::N(0) => Ok(Acks::None),
            Raw::N(_) => Err(bad()),
            Raw::S(s) => match s.trim() {
                "all" | "-1" => Ok(Acks::All),
                "1" => Ok(Acks::Leader),
                "0" => Ok(Acks::None),
                _ => Err(bad()),
            },
        }
    }
}

impl KafkaSinkConfig {
    /// A config with every key at its default but `brokers` and `topic`.
    pub fn new(brokers: Vec<String>, topic: Template) -> KafkaSinkConfig {
        KafkaSinkConfig {
            brokers,
            topic,
            key: None,
            encoding: default_encoding(),
            headers: Vec::new(),
            compression: Compression::None,
            acks: Acks::All,
            enable_idempotence: true,
            queue_max_messages: default_queue_max_messages(),
            queue_max_bytes: default_queue_max_bytes(),
            message_max_bytes: default_message_max_bytes(),
            message_timeout: default_message_timeout(),
            tls: None,
            librdkafka_options: LibrdkafkaOptions::default(),
        }
    }
}

impl ConfigTable for KafkaSinkConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        self.encoding
            .check(&[Encoding::Json, Encoding::Raw, Encoding::Docker], d);
        logwharf_config::kafka::validate_client(
            d,
            "sink",
            &self.brokers,
            self.tls.as_ref(),
            &self.librdkafka_options,
        );
        if self.topic.as_str().is_empty() {
            d.error(&["topic"], "must not be empty");
        }
        if self.enable_idempotence && self.acks != Acks::All {
            d.error(
                &["acks"],
                format!(
                    "acks = {:?} needs enable_idempotence = false (the idempotent producer requires acks = \"all\")",
                    self.acks.as_str()
                ),
            );
        }
        if self.queue_max_messages == 0 {
            d.error(&["queue_max_messages"], "must be at least 1");
        }
        if self.queue_max_bytes.0 < 1024 || self.queue_max_bytes.0 > (i32::MAX as u64) << 10 {
            d.error(&["queue_max_bytes"], "must be between 1k and 2047g");
        }
        if !(1000..=1_000_000_000).contains(&self.message_max_bytes.0) {
            d.error(
                &["message_max_bytes"],
                "must be between 1000 and 1000000000 (librdkafka's range)",
            );
        }
        if self.message_timeout.0.as_millis() > i32::MAX as u128 {
            d.error(&["message_timeout"], "is too long (at most 24d)");
        }
    }
}

impl logwharf_collector::SinkConfig for KafkaSinkConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        let dead_letters = crate::util::dead_letter::DeadLetters::new(&cx);
        Ok(Box::new(super::KafkaSink::with_dead_letters(
            &cx.name,
            self,
            dead_letters,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<KafkaSinkConfig, toml::de::Error> {
        toml::from_str(&format!(
            "brokers = [\"127.0.0.1:9092\"]\ntopic = \"logs\"\n{extra}"
        ))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.acks, Acks::All);
        assert!(c.enable_idempotence);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.encoding, Encoding::Json);
        assert!(c.key.is_none() && c.headers.is_empty());
        assert_eq!(c.message_timeout.0.as_millis(), 0);
    }

    #[test]
    fn brokers_as_a_comma_string_and_options_of_any_scalar() {
        let c: KafkaSinkConfig = toml::from_str(
            "brokers = \"a:1, b:2\"\ntopic = \"t\"\nacks = 1\nenable_idempotence = false\n\
             [librdkafka_options]\n\"linger.ms\" = 20\n\"sasl.password\" = \"hunter2\"\n\"socket.nagle.disable\" = true\n",
        )
        .unwrap();
        assert_eq!(c.brokers, vec!["a:1", "b:2"]);
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.librdkafka_options.0["linger.ms"], "20");
        assert_eq!(c.librdkafka_options.0["socket.nagle.disable"], "true");
        let shown = format!("{c:?}");
        assert!(shown.contains("sasl.password") && !shown.contains("hunter2"));
    }

    #[test]
    fn headers_and_compression_names() {
        let c =
            parse("headers = [\"container_name\", \"stream\"]\ncompression = \"zstd\"").unwrap();
        assert_eq!(
            c.headers,
            vec![HeaderField::ContainerName, HeaderField::Stream]
        );
        assert_eq!(c.compression.as_str(), "zstd");
        assert!(parse("compression = \"brotli\"").is_err());
        assert!(parse("headers = [\"labels\"]").is_err());
        assert!(parse("acks = 2").is_err());
    }
}
