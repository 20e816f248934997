//! `type = "kafka"`: the aggregator side of a Kafka tier — a member of a consumer group that
//! reads what agents' `kafka` sinks wrote. `brokers`, `tls` and `librdkafka_options` have the
//! sink's shapes (logwharf_config::kafka).

use logwharf_config::kafka::LibrdkafkaOptions;
use logwharf_config::{ConfigTable, Decoder, DurationValue, StartPosition, TlsConfig};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port` each. A comma-separated string is accepted too.
    #[serde(deserialize_with = "logwharf_config::kafka::deserialize_brokers")]
    pub brokers: Vec<String>,
    /// Topic names; one starting with `^` is a regular expression (librdkafka's subscription
    /// then follows topics created later that match it).
    pub topics: Vec<String>,
    /// The consumer group: aggregators with the same `group_id` share the partitions.
    pub group_id: String,
    /// How a message value becomes an event.
    #[serde(default)]
    pub decoding: Decoding,
    /// Where a partition without a committed offset for the group starts.
    #[serde(default)]
    pub start_at: StartPosition,
    /// Upper bound on events per batch sent into the pipeline.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How often the offsets that every sink has delivered up to are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: DurationValue,
    /// On a rebalance (or shutdown), how long batches already sent from the partitions this
    /// member gives up may take to be delivered before what settled is committed and the
    /// rest is left to the partitions' next owner (who reads it again).
    #[serde(default = "default_revoke_timeout")]
    pub revoke_timeout: DurationValue,
    /// TLS to the brokers, as on the `kafka` sink.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Anything else librdkafka understands (`session.timeout.ms`, `security.protocol`,
    /// `sasl.*`, `fetch.max.bytes`, …), applied last, so it overrides the keys above.
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
}

/// `decoding`: what a message value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// logwharf's JSON event (the `kafka` sink's `encoding = "json"`): its container
    /// metadata, tag, attrs, fields, time and stream come back.
    #[default]
    Json,
    /// The value is the message; container metadata from the sink's `headers`.
    Raw,
    /// A Docker json-file line (`encoding = "docker"`); container metadata from `headers`.
    Docker,
}

fn default_batch_max_events() -> usize {
    1000
}

fn default_commit_interval() -> DurationValue {
    DurationValue::from_millis(1000)
}

fn default_revoke_timeout() -> DurationValue {
    DurationValue::from_millis(10_000)
}

impl ConfigTable for KafkaSourceConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        logwharf_config::kafka::validate_client(
            d,
            "source",
            &self.brokers,
            self.tls.as_ref(),
            &self.librdkafka_options,
        );
        if self.topics.is_empty() {
            d.error(&["topics"], "names no topic (expected e.g. [\"logs\"])");
        }
        for (i, t) in self.topics.iter().enumerate() {
            let at = ["topics", &i.to_string()];
            if t.starts_with('^') {
                if let Err(e) = regex::Regex::new(t) {
                    d.error(&at, format!("invalid regular expression {t:?}: {e}"));
                }
            } else if t.is_empty()
                || t.len() > 249
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                d.error(
                    &at,
                    format!("invalid topic {t:?} (1 to 249 of [a-zA-Z0-9._-], or a ^regex)"),
                );
            }
        }
        if self.group_id.trim().is_empty() {
            d.error(&["group_id"], "must not be empty");
        }
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.commit_interval.0.is_zero() {
            d.error(&["commit_interval"], "must be longer than 0");
        }
        for k in ["enable.auto.commit", "enable.auto.offset.store"] {
            if self
                .librdkafka_options
                .0
                .get(k)
                .is_some_and(|v| v == "true")
            {
                d.error(
                    &["librdkafka_options"],
                    format!(
                        "{k:?} cannot be true: the source commits only what every sink delivered"
                    ),
                );
            }
        }
    }
}

impl crate::sources::SourceConfig for KafkaSourceConfig {
    #[cfg(feature = "kafka")]
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::KafkaSource::new(self.clone())?))
    }

    /// Without librdkafka the config still loads and validates (the fuzz crate's `config`
    /// target); only running it is refused.
    #[cfg(not(feature = "kafka"))]
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        anyhow::bail!("this logwharf was built without the `kafka` feature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_shapes_shared_with_the_sink() {
        let c: KafkaSourceConfig = toml::from_str(
            "brokers = \"a:1, b:2\"\ntopics = [\"logs\", \"^logs\\\\..*\"]\ngroup_id = \"agg\"\n\
             [librdkafka_options]\n\"session.timeout.ms\" = 6000\n\"sasl.password\" = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(c.brokers, vec!["a:1", "b:2"]);
        assert_eq!(c.decoding, Decoding::Json);
        assert_eq!(c.start_at, StartPosition::Beginning);
        assert_eq!(c.librdkafka_options.0["session.timeout.ms"], "6000");
        assert!(!format!("{c:?}").contains("hunter2"));
        let raw: KafkaSourceConfig =
            toml::from_str("brokers = [\"a:1\"]\ntopics = [\"t\"]\ngroup_id = \"g\"\ndecoding = \"docker\"\nstart_at = \"end\"").unwrap();
        assert_eq!(raw.decoding, Decoding::Docker);
        assert_eq!(raw.start_at, StartPosition::End);
        assert!(toml::from_str::<KafkaSourceConfig>(
            "brokers = [\"a:1\"]\ntopics = [\"t\"]\ngroup_id = \"g\"\ndecoding = \"text\""
        )
        .is_err());
    }
}
