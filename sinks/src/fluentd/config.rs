//! `type = "fluentd"`: Forward-protocol client to fluentd / Fluent Bit aggregators, with
//! Docker's fluentd-driver option names accepted as aliases.

use logwharf_config::address::{ForwardAddress, ForwardAuth, DEFAULT_FORWARD_PORT};
use logwharf_config::{BatchConfig, ConfigTable, Decoder, DurationValue, Template, TlsConfig};
use serde::Deserialize;

/// What each Forward record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// Docker's fluentd driver's keys: `container_id`, `container_name`, `source`, `log`, the
    /// label/env extras and the partial-message fields.
    #[default]
    Docker,
    /// logwharf's whole event (the `json` encoding's keys).
    Event,
}

/// `compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardCompression {
    #[default]
    None,
    /// CompressedPackedForward.
    Gzip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FluentdSinkConfig {
    /// `host:port`, `tcp://`, `tls://` or `unix://` (Docker's `fluentd-address`).
    #[serde(alias = "fluentd-address")]
    pub address: ForwardAddress,
    /// Forward tag per container; default `{{.ID}}` (Docker's default). Events without a
    /// container keep the tag they arrived with.
    pub tag: Template,
    pub record: RecordFormat,
    /// EventTime with nanoseconds (true) or integer seconds (false).
    #[serde(
        alias = "fluentd-sub-second-precision",
        deserialize_with = "lenient_bool"
    )]
    pub sub_second_precision: bool,
    pub compress: ForwardCompression,
    /// Send a `chunk` id with every message and wait for the server's ack (at-least-once).
    #[serde(alias = "fluentd-request-ack", deserialize_with = "lenient_bool")]
    pub require_ack: bool,
    /// Resend a message whose ack has not come back within this long.
    pub ack_timeout: DurationValue,
    /// Give up on a connection attempt (and back off) after this long.
    pub connect_timeout: DurationValue,
    /// Container labels added to Docker records as extra keys (Docker's `labels` option).
    pub labels: Vec<String>,
    pub auth: Option<ForwardAuth>,
    /// TLS options for a `tls://` address (CA, client certificate, `verify`, `server_name`).
    pub tls: Option<TlsConfig>,
    pub batch: BatchConfig,
}

/// A boolean, or the strings `"true"`/`"false"` as daemon.json's `log-opts` spell them.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        S(String),
    }
    match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("expected true or false"))? {
        Raw::B(b) => Ok(b),
        Raw::S(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected true or false, not {s:?}"))),
    }
}

impl Default for FluentdSinkConfig {
    fn default() -> Self {
        Self {
            address: ForwardAddress::Tcp {
                host: "localhost".into(),
                port: DEFAULT_FORWARD_PORT,
            },
            tag: Template::parse("{{.ID}}").expect("valid template"),
            record: RecordFormat::Docker,
            sub_second_precision: true,
            compress: ForwardCompression::None,
            require_ack: false,
            ack_timeout: DurationValue::from_millis(60_000),
            connect_timeout: DurationValue::from_millis(10_000),
            labels: Vec::new(),
            auth: None,
            tls: None,
            batch: BatchConfig::default(),
        }
    }
}

impl ConfigTable for FluentdSinkConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        if self.tls.is_some() && !matches!(self.address, ForwardAddress::Tls { .. }) {
            d.error(&["tls"], "TLS options need a tls:// address");
        }
        if matches!(&self.auth, Some(a) if a.shared_key.is_empty()) {
            d.error(&["auth", "shared_key"], "must not be empty");
        }
        if self.batch.max_events == 0 {
            d.error(&["batch", "max_events"], "must be at least 1");
        }
        if self.ack_timeout.0.is_zero() {
            d.error(&["ack_timeout"], "must be greater than 0");
        }
    }
}

impl logwharf_collector::SinkConfig for FluentdSinkConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        let mut config = self.clone();
        config.batch = crate::util::batcher::within_buffer(&self.batch, &cx.buffer);
        Ok(Box::new(super::Fluentd::new(&cx.name, config)?))
    }
}
