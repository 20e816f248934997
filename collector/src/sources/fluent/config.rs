//! `type = "fluent"`: a Fluentd Forward-protocol receiver (what Docker's fluentd driver, Fluent
//! Bit's forward output and fluent-logger clients send to). Its address syntax,
//! [`ForwardAddress`], is shared with the `fluentd` sink (logwharf_config::address).

use logwharf_config::address::{ForwardAddress, ForwardAuth, DEFAULT_FORWARD_PORT};
use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, TlsConfig};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FluentSourceConfig {
    /// `tcp://127.0.0.1:24224` (default), `host:port`, `tls://…` (needs `tls`), `unix:///path`.
    pub address: ForwardAddress,
    /// Server certificate and key (and, with `ca_file`, required client certificates).
    pub tls: Option<TlsConfig>,
    /// Require the shared-key handshake from every client.
    pub auth: Option<ForwardAuth>,
    /// Cap on one Forward message as received (a frame larger than this closes the connection).
    pub max_message_bytes: ByteSize,
    /// Cap on the decompressed size of one CompressedPackedForward message.
    pub max_decompressed_bytes: ByteSize,
    /// Cap on a line joined from Docker's partial records; the rest is cut and counted.
    pub max_line_bytes: ByteSize,
    /// How long partial records wait for their continuation before they are shipped flagged.
    pub partial_timeout: DurationValue,
    /// Connections accepted at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Answer UDP heartbeats on the same port (Fluentd's `heartbeat_type udp`).
    pub heartbeat: bool,
    /// Upper bound on events per batch sent into the pipeline.
    pub batch_max_events: usize,
}

impl Default for FluentSourceConfig {
    fn default() -> Self {
        Self {
            address: ForwardAddress::Tcp {
                host: "127.0.0.1".into(),
                port: DEFAULT_FORWARD_PORT,
            },
            tls: None,
            auth: None,
            max_message_bytes: ByteSize(16 << 20),
            max_decompressed_bytes: ByteSize(64 << 20),
            max_line_bytes: ByteSize(1 << 20),
            partial_timeout: DurationValue::from_millis(5000),
            max_connections: 1024,
            heartbeat: false,
            batch_max_events: 2048,
        }
    }
}

impl ConfigTable for FluentSourceConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        match (&self.address, &self.tls) {
            (ForwardAddress::Tls { .. }, None) => d.error(
                &["tls"],
                "a tls:// address needs a `tls` table with crt_file and key_file",
            ),
            (_, Some(t)) if t.crt_file.is_none() || t.key_file.is_none() => {
                d.error(&["tls"], "a listener needs crt_file and key_file")
            }
            (ForwardAddress::Unix(_), Some(_)) => {
                d.error(&["tls"], "TLS is not supported on unix sockets")
            }
            _ => {}
        }
        if matches!(&self.auth, Some(a) if a.shared_key.is_empty()) {
            d.error(&["auth", "shared_key"], "must not be empty");
        }
        if self.max_message_bytes.0 < 1024 {
            d.error(&["max_message_bytes"], "must be at least 1k");
        }
        if self.max_decompressed_bytes.0 < 1024 {
            d.error(&["max_decompressed_bytes"], "must be at least 1k");
        }
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.max_connections == 0 {
            d.error(&["max_connections"], "must be at least 1");
        }
        if self.heartbeat && matches!(self.address, ForwardAddress::Unix(_)) {
            d.error(&["heartbeat"], "UDP heartbeats need a TCP address");
        }
    }
}

impl crate::sources::SourceConfig for FluentSourceConfig {
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::FluentSource::new(self.clone())?))
    }
}
