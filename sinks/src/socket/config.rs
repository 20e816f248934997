//! `type = "socket"`: the socket sink's keys. The address takes the same forms as the syslog
//! sink's (`tcp://`, `udp://`, `tcp+tls://`, `unix://`, `unixgram://`).

use logwharf_config::address::SyslogAddress;
use logwharf_config::{
    BatchConfig, ByteSize, ConfigTable, Decoder, DurationValue, Encoding, TlsConfig,
};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSinkConfig {
    /// Where to send.
    pub address: SyslogAddress,
    /// `json` (default), `text`, `docker` or `raw`; one event per line (per datagram).
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Client TLS settings for `tcp+tls://`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Bytes of recently written data resent after a connection loss; 0 disables.
    #[serde(default = "default_resend_window")]
    pub resend_window: ByteSize,
    /// How long written data stays in the resend window.
    #[serde(default = "default_resend_window_age")]
    pub resend_window_age: DurationValue,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationValue,
}

fn default_encoding() -> Encoding {
    Encoding::Json
}

fn default_resend_window() -> ByteSize {
    ByteSize(4 << 20)
}

fn default_resend_window_age() -> DurationValue {
    DurationValue::from_millis(10_000)
}

fn default_connect_timeout() -> DurationValue {
    DurationValue::from_millis(5_000)
}

impl ConfigTable for SocketSinkConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        let all = [
            Encoding::Json,
            Encoding::Text,
            Encoding::Docker,
            Encoding::Raw,
        ];
        self.encoding.check(&all, d);
        if self.tls.is_some() && !self.address.is_tls() {
            d.error(&["tls"], "tls is only used with a tcp+tls:// address");
        }
    }
}

impl logwharf_collector::SinkConfig for SocketSinkConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        let mut config = self.clone();
        config.batch = crate::util::batcher::within_buffer(&self.batch, &cx.buffer);
        Ok(Box::new(super::SocketSink::new(&cx.name, &config)?))
    }
}
