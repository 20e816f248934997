//! `type = "syslog"`: a syslog receiver (RFC 3164 and RFC 5424) on one TCP, TCP+TLS, UDP,
//! unix stream or unix datagram listener — what Docker's syslog driver, or any host's syslog
//! daemon, sends to. Several listeners: several sources.

use logwharf_config::address::SyslogAddress;
use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, TlsConfig};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SyslogSourceConfig {
    /// Where to listen: `tcp://…`, `udp://…`, `tcp+tls://…`, `unix:///path`,
    /// `unixgram:///path`; default `tcp://127.0.0.1:5514` (loopback: other hosts only when
    /// you say so).
    #[serde(alias = "syslog-address")]
    pub address: SyslogAddress,
    /// Largest frame accepted; longer frames are cut there, flagged and counted.
    pub max_frame: ByteSize,
    /// A connection holding an incomplete frame this long is closed and counted (slowloris).
    /// Idle connections without a partial frame are kept open.
    pub frame_timeout: DurationValue,
    /// Simultaneous stream connections; more are refused and counted.
    pub max_connections: usize,
    /// Bytes read from a socket per read call.
    pub read_buffer_bytes: ByteSize,
    /// Upper bound on events per batch sent into the pipeline.
    pub batch_max_events: usize,
    /// Kernel receive buffer for UDP/unixgram (SO_RCVBUF, capped by the kernel at
    /// net.core.rmem_max); unset: the system default.
    pub receive_buffer_bytes: Option<ByteSize>,
    /// Server certificate and key (and `ca_file` to require client certificates), for
    /// `tcp+tls://`.
    pub tls: Option<TlsConfig>,
    /// Unix socket file mode (octal string, e.g. "0666"); default 0660.
    pub socket_mode: Option<String>,
}

impl Default for SyslogSourceConfig {
    fn default() -> Self {
        Self {
            address: SyslogAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 5514,
            },
            max_frame: ByteSize(64 << 10),
            frame_timeout: DurationValue::from_millis(30_000),
            max_connections: 1024,
            read_buffer_bytes: ByteSize(64 << 10),
            batch_max_events: 2048,
            receive_buffer_bytes: None,
            tls: None,
            socket_mode: None,
        }
    }
}

impl SyslogSourceConfig {
    /// The unix socket mode in effect.
    pub fn socket_mode_bits(&self) -> u32 {
        self.socket_mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o660)
    }
}

impl ConfigTable for SyslogSourceConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        let a = &self.address;
        if a.is_tls() && self.tls.as_ref().is_none_or(|t| t.crt_file.is_none()) {
            d.error(
                &["tls"],
                "a tcp+tls:// listener needs tls.crt_file and tls.key_file",
            );
        }
        if !a.is_tls() && self.tls.is_some() {
            d.error(&["tls"], "tls is only used with a tcp+tls:// address");
        }
        if self.max_frame.0 < 480 {
            // RFC 3164 and 5424 both require receivers to accept at least 480 bytes.
            d.error(&["max_frame"], "must be at least 480 bytes (RFC 5424)");
        }
        if self.max_frame.0 > 64 << 20 {
            d.error(&["max_frame"], "must be at most 64m");
        }
        if self.max_connections == 0 {
            d.error(&["max_connections"], "must be at least 1");
        }
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.read_buffer_bytes.0 < 4096 {
            d.error(&["read_buffer_bytes"], "must be at least 4k");
        }
        if let Some(m) = &self.socket_mode {
            if u32::from_str_radix(m.trim_start_matches("0o"), 8).map_or(true, |v| v > 0o777) {
                d.error(
                    &["socket_mode"],
                    format!("invalid mode {m:?} (expected octal, e.g. \"0660\")"),
                );
            }
        }
    }
}

impl crate::sources::SourceConfig for SyslogSourceConfig {
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::SyslogSource::new(self.clone())?))
    }
}
