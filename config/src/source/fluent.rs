//! `type = "fluent"`: a Fluentd Forward-protocol receiver (what Docker's fluentd driver, Fluent
//! Bit's forward output and fluent-logger clients send to). Also home of [`ForwardAddress`], the
//! address syntax the `fluentd` sink shares.

use crate::load::Decoder;
use crate::{ByteSize, DurationValue, TlsConfig};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// The Forward protocol's well-known port.
pub const DEFAULT_FORWARD_PORT: u16 = 24224;

/// Where a Forward peer listens: `host:port`, `tcp://host:port`, `tls://host:port` or
/// `unix:///path` (Docker's `fluentd-address` syntax, plus `tls://`). The port defaults to 24224.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAddress {
    Tcp { host: String, port: u16 },
    Tls { host: String, port: u16 },
    Unix(PathBuf),
}

impl ForwardAddress {
    pub fn parse(s: &str) -> Result<ForwardAddress, String> {
        let t = s.trim();
        if let Some(path) = t.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("invalid address {s:?}: unix:// needs a path"));
            }
            return Ok(ForwardAddress::Unix(PathBuf::from(path)));
        }
        let (tls, rest) = if let Some(r) = t.strip_prefix("tls://") {
            (true, r)
        } else if let Some(r) = t.strip_prefix("tcp://") {
            (false, r)
        } else if t.contains("://") {
            return Err(format!(
                "invalid address {s:?}: unsupported scheme (expected tcp://, tls:// or unix://)"
            ));
        } else {
            (false, t)
        };
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| format!("invalid address {s:?} (expected host:port)"))?;
        Ok(if tls {
            ForwardAddress::Tls { host, port }
        } else {
            ForwardAddress::Tcp { host, port }
        })
    }

    /// `host:port` for TCP and TLS (brackets kept for IPv6); `None` for unix sockets.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        match self {
            ForwardAddress::Tcp { host, port } | ForwardAddress::Tls { host, port } => {
                Some((host, *port))
            }
            ForwardAddress::Unix(_) => None,
        }
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    if s.is_empty() {
        return None;
    }
    // [v6]:port, [v6], host:port, host
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_FORWARD_PORT,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return None;
            }
            Some((h.to_string(), p.parse().ok()?))
        }
        Some(_) => None,
        None => Some((s.to_string(), DEFAULT_FORWARD_PORT)),
    }
}

impl fmt::Display for ForwardAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            ForwardAddress::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            ForwardAddress::Tls { host, port } if host.contains(':') => {
                write!(f, "tls://[{host}]:{port}")
            }
            ForwardAddress::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            ForwardAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for ForwardAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ForwardAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The Forward protocol's shared-key handshake (HELO / PING / PONG).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    /// The secret both ends know. Never logged.
    pub shared_key: String,
    /// Our name in the handshake; default: the machine's host name.
    #[serde(default)]
    pub self_hostname: Option<String>,
}

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

impl FluentSourceConfig {
    pub(crate) fn validate(&self, d: &mut Decoder<'_>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_docker() {
        let tcp = |h: &str, p| ForwardAddress::Tcp {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            ForwardAddress::parse("127.0.0.1:24225"),
            Ok(tcp("127.0.0.1", 24225))
        );
        assert_eq!(
            ForwardAddress::parse("localhost"),
            Ok(tcp("localhost", 24224))
        );
        assert_eq!(
            ForwardAddress::parse("tcp://fluentd:1"),
            Ok(tcp("fluentd", 1))
        );
        assert_eq!(ForwardAddress::parse("[::1]:9"), Ok(tcp("::1", 9)));
        assert_eq!(
            ForwardAddress::parse("tls://agg.example:24284"),
            Ok(ForwardAddress::Tls {
                host: "agg.example".into(),
                port: 24284
            })
        );
        assert_eq!(
            ForwardAddress::parse("unix:///run/fluent.sock"),
            Ok(ForwardAddress::Unix("/run/fluent.sock".into()))
        );
        assert!(ForwardAddress::parse("udp://x:1").is_err());
        assert!(ForwardAddress::parse("x:notaport").is_err());
        assert!(ForwardAddress::parse(":1").is_err());
        assert_eq!(
            ForwardAddress::parse("tcp://[::1]:7").unwrap().to_string(),
            "tcp://[::1]:7"
        );
    }
}
