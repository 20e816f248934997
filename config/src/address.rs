//! Network addresses as the config writes them: Docker's `syslog-address` forms
//! ([`SyslogAddress`], shared by the `syslog` sink and source) and Docker's `fluentd-address`
//! forms ([`ForwardAddress`], shared by the `fluent` source and the `fluentd` sink, with the
//! Forward handshake's [`ForwardAuth`]). One [`split_host_port`] parses the `host:port` part of
//! all of them.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// Docker's `syslog-address` forms. The default port is 514.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    /// `tcp://host:port`
    Tcp { host: String, port: u16 },
    /// `udp://host:port`
    Udp { host: String, port: u16 },
    /// `tcp+tls://host:port`
    TcpTls { host: String, port: u16 },
    /// `unix:///path` (stream socket)
    Unix(PathBuf),
    /// `unixgram:///path` (datagram socket)
    Unixgram(PathBuf),
}

impl SyslogAddress {
    pub const DEFAULT_PORT: u16 = 514;

    /// Parses Docker's address forms; the error says which forms exist.
    pub fn parse(s: &str) -> Result<SyslogAddress, String> {
        let bad = |why: &str| {
            format!(
                "invalid syslog address {s:?}: {why} (expected tcp://HOST:PORT, udp://HOST:PORT, \
                 tcp+tls://HOST:PORT, unix:///PATH or unixgram:///PATH)"
            )
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        match scheme {
            "unix" | "unixgram" => {
                if rest.is_empty() {
                    return Err(bad("empty path"));
                }
                let p = PathBuf::from(rest);
                Ok(if scheme == "unix" {
                    SyslogAddress::Unix(p)
                } else {
                    SyslogAddress::Unixgram(p)
                })
            }
            "tcp" | "udp" | "tcp+tls" => {
                let (host, port) =
                    split_host_port(rest, SyslogAddress::DEFAULT_PORT).map_err(|e| bad(&e))?;
                Ok(match scheme {
                    "tcp" => SyslogAddress::Tcp { host, port },
                    "udp" => SyslogAddress::Udp { host, port },
                    _ => SyslogAddress::TcpTls { host, port },
                })
            }
            other => Err(bad(&format!("unknown scheme {other:?}"))),
        }
    }

    /// `host:port` for the network forms.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        match self {
            SyslogAddress::Tcp { host, port }
            | SyslogAddress::Udp { host, port }
            | SyslogAddress::TcpTls { host, port } => Some((host, *port)),
            _ => None,
        }
    }

    /// Datagram transports (UDP, unixgram): one message per datagram, no framing, size cap.
    pub fn is_datagram(&self) -> bool {
        matches!(self, SyslogAddress::Udp { .. } | SyslogAddress::Unixgram(_))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, SyslogAddress::TcpTls { .. })
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or `host` (then `default_port`); a trailing `/` is
/// ignored. The error says what is wrong, for the caller to wrap with the whole address.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim_end_matches('/');
    if s.is_empty() {
        return Err("empty host".into());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("unexpected {after:?} after the host")),
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return Err("empty host".into());
            }
            let port = p.parse().map_err(|_| format!("invalid port {p:?}"))?;
            Ok((h.to_string(), port))
        }
        Some(_) => Err(format!("IPv6 hosts go in brackets: [::1]:{default_port}")),
        None => Ok((s.to_string(), default_port)),
    }
}

/// `scheme://host:port`, with an IPv6 host in brackets.
fn write_host_port(f: &mut fmt::Formatter<'_>, scheme: &str, h: &str, p: u16) -> fmt::Result {
    if h.contains(':') {
        write!(f, "{scheme}://[{h}]:{p}")
    } else {
        write!(f, "{scheme}://{h}:{p}")
    }
}

impl fmt::Display for SyslogAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogAddress::Tcp { host, port } => write_host_port(f, "tcp", host, *port),
            SyslogAddress::Udp { host, port } => write_host_port(f, "udp", host, *port),
            SyslogAddress::TcpTls { host, port } => write_host_port(f, "tcp+tls", host, *port),
            SyslogAddress::Unix(p) => write!(f, "unix://{}", p.display()),
            SyslogAddress::Unixgram(p) => write!(f, "unixgram://{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SyslogAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SyslogAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

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
        let (host, port) = split_host_port(rest, DEFAULT_FORWARD_PORT)
            .map_err(|_| format!("invalid address {s:?} (expected host:port)"))?;
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

impl fmt::Display for ForwardAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardAddress::Tcp { host, port } => write_host_port(f, "tcp", host, *port),
            ForwardAddress::Tls { host, port } => write_host_port(f, "tls", host, *port),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_addresses_parse_like_docker() {
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

    #[test]
    fn parses_docker_addresses() {
        assert_eq!(
            SyslogAddress::parse("tcp://127.0.0.1:16514").unwrap(),
            SyslogAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 16514
            }
        );
        assert_eq!(
            SyslogAddress::parse("udp://logs.example").unwrap(),
            SyslogAddress::Udp {
                host: "logs.example".into(),
                port: 514
            }
        );
        assert_eq!(
            SyslogAddress::parse("tcp+tls://[::1]:6514").unwrap(),
            SyslogAddress::TcpTls {
                host: "::1".into(),
                port: 6514
            }
        );
        assert_eq!(
            SyslogAddress::parse("unix:///dev/log").unwrap(),
            SyslogAddress::Unix("/dev/log".into())
        );
        assert_eq!(
            SyslogAddress::parse("unixgram:///run/x.sock").unwrap(),
            SyslogAddress::Unixgram("/run/x.sock".into())
        );
        for bad in [
            "127.0.0.1:514",
            "http://x:1",
            "tcp://:1",
            "tcp://h:99999",
            "unix://",
        ] {
            assert!(SyslogAddress::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SyslogAddress::parse("tcp+tls://[::1]:6514")
                .unwrap()
                .to_string(),
            "tcp+tls://[::1]:6514"
        );
    }
}
