//! `type = "syslog"`: events to a syslog server (rsyslog, syslog-ng, …) over TCP, UDP,
//! TCP+TLS or a unix socket, framed exactly as Docker's syslog driver frames them.
//!
//! The address, facility, format and tag take Docker's values (and Docker's option names as
//! aliases: `syslog-address`, `syslog-facility`, `syslog-format`), so a `daemon.json` with
//! `"log-driver": "syslog"` translates line by line. [`SyslogAddress`] and [`Facility`] are
//! shared with the `syslog` source.

use logwharf_config::address::SyslogAddress;
use logwharf_config::{
    BatchConfig, ByteSize, ConfigTable, Decoder, DurationValue, Template, TlsConfig,
};
use serde::{Deserialize, Deserializer};

/// A syslog facility: Docker's names (`kern` … `local7`) or a number 0–23, as Docker's
/// `syslog-facility` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(pub u8);

impl Facility {
    /// Docker's names, by code (0–11 and 16–23; 12–15 have no Docker name).
    const NAMES: [(&'static str, u8); 20] = [
        ("kern", 0),
        ("user", 1),
        ("mail", 2),
        ("daemon", 3),
        ("auth", 4),
        ("syslog", 5),
        ("lpr", 6),
        ("news", 7),
        ("uucp", 8),
        ("cron", 9),
        ("authpriv", 10),
        ("ftp", 11),
        ("local0", 16),
        ("local1", 17),
        ("local2", 18),
        ("local3", 19),
        ("local4", 20),
        ("local5", 21),
        ("local6", 22),
        ("local7", 23),
    ];

    /// Docker's default.
    pub const DAEMON: Facility = Facility(3);

    pub fn parse(s: &str) -> Result<Facility, String> {
        if let Some((_, c)) = Self::NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(Facility(*c));
        }
        match s.parse::<u8>() {
            Ok(n) if n <= 23 => Ok(Facility(n)),
            _ => Err(format!(
                "invalid syslog facility {s:?} (expected one of: {}, or a number 0-23)",
                Self::NAMES.map(|(n, _)| n).join(", ")
            )),
        }
    }

    /// The name (`mail`), or the number for the codes Docker has no name for.
    pub fn name(self) -> String {
        Self::NAMES
            .iter()
            .find(|(_, c)| *c == self.0)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Facility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u8),
            S(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a facility name or number"))?
        {
            Raw::N(n) => Facility::parse(&n.to_string()),
            Raw::S(s) => Facility::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// The message format, Docker's `syslog-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SyslogFormat {
    /// Docker's default (`syslog-format` unset or `""`): `<PRI>Mmm _d hh:mm:ss TAG[PID]: MSG`.
    #[serde(rename = "unix", alias = "")]
    Unix,
    /// `<PRI>Mmm _d hh:mm:ss HOSTNAME TAG[PID]: MSG`.
    #[serde(rename = "rfc3164")]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOSTNAME TAG PROCID TAG - MSG`, timestamp in seconds.
    #[serde(rename = "rfc5424")]
    Rfc5424,
    /// As `rfc5424` with a microsecond timestamp.
    #[serde(rename = "rfc5424micro")]
    Rfc5424Micro,
}

impl SyslogFormat {
    pub fn name(self) -> &'static str {
        match self {
            SyslogFormat::Unix => "unix",
            SyslogFormat::Rfc3164 => "rfc3164",
            SyslogFormat::Rfc5424 => "rfc5424",
            SyslogFormat::Rfc5424Micro => "rfc5424micro",
        }
    }

    pub fn is_rfc5424(self) -> bool {
        matches!(self, SyslogFormat::Rfc5424 | SyslogFormat::Rfc5424Micro)
    }
}

/// How messages are delimited on a stream transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Each message ends with `\n` (Docker's framing over tcp and unix).
    Newline,
    /// `LEN SP MSG` (RFC 6587 / RFC 5425; Docker's framing for rfc5424 over tcp+tls).
    #[serde(alias = "octet_counting")]
    OctetCounting,
}

/// What to do with `\n` inside a message (which newline framing would cut in two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Newlines {
    /// Replace each `\n` by `#012`, rsyslog's escape for control characters (default).
    #[default]
    Escape,
    /// Send each line as its own syslog message with the same header.
    Split,
    /// Send the message as it is (only with octet-counting or a datagram transport).
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SyslogSinkConfig {
    /// Where to send (Docker's `syslog-address`).
    #[serde(alias = "syslog-address")]
    pub address: Option<SyslogAddress>,
    /// Docker's `syslog-facility`; default `daemon`.
    #[serde(alias = "syslog-facility")]
    pub facility: Facility,
    /// Docker's `syslog-format`; default Docker's default (`unix`, i.e. `""`).
    #[serde(alias = "syslog-format")]
    pub format: SyslogFormat,
    /// APP-NAME (and MSGID) template, rendered once per container; Docker's default `{{.ID}}`.
    pub tag: Template,
    /// Stream framing; default newline, octet-counting over tcp+tls with rfc5424 (as Docker).
    pub framing: Option<Framing>,
    /// `\n` inside messages: `escape` (default), `split` or `keep`.
    pub newlines: Newlines,
    /// HOSTNAME; default this host's name (Docker: dockerd's host name).
    pub hostname: Option<String>,
    /// PROCID; default logwharf's pid (Docker stamps dockerd's pid).
    pub procid: Option<String>,
    /// Datagram size cap (udp, unixgram), the trailing newline included; longer messages are
    /// truncated and counted. Default 1024 for rfc3164/unix, 2048 for rfc5424.
    pub max_message: Option<ByteSize>,
    /// Bytes of recently written data kept to resend after a connection loss (a stream peer may
    /// have accepted bytes it never read); 0 disables.
    pub resend_window: ByteSize,
    /// How long written data stays in the resend window.
    pub resend_window_age: DurationValue,
    pub connect_timeout: DurationValue,
    pub batch: BatchConfig,
    pub tls: Option<TlsConfig>,
}

impl Default for SyslogSinkConfig {
    fn default() -> Self {
        Self {
            address: None,
            facility: Facility::DAEMON,
            format: SyslogFormat::Unix,
            tag: Template::parse("{{.ID}}").expect("valid"),
            framing: None,
            newlines: Newlines::Escape,
            hostname: None,
            procid: None,
            max_message: None,
            resend_window: ByteSize(4 << 20),
            resend_window_age: DurationValue::from_millis(10_000),
            connect_timeout: DurationValue::from_millis(5_000),
            batch: BatchConfig {
                max_events: 4096,
                max_bytes: ByteSize(1 << 20),
                timeout: DurationValue::from_millis(100),
            },
            tls: None,
        }
    }
}

impl SyslogSinkConfig {
    /// The framing in effect: explicit, else octet-counting for rfc5424 over TLS (Docker's
    /// RFC 5425 framer), else newline.
    pub fn effective_framing(&self) -> Framing {
        match (self.framing, &self.address) {
            (Some(f), _) => f,
            (None, Some(a)) if a.is_tls() && self.format.is_rfc5424() => Framing::OctetCounting,
            _ => Framing::Newline,
        }
    }

    /// The datagram cap in effect.
    pub fn effective_max_message(&self) -> usize {
        match self.max_message {
            Some(b) => b.0 as usize,
            None if self.format.is_rfc5424() => 2048,
            None => 1024,
        }
    }
}

impl ConfigTable for SyslogSinkConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        let Some(addr) = &self.address else {
            d.error(
                &[],
                "missing `address` (e.g. \"tcp://127.0.0.1:514\"; Docker's syslog-address)",
            );
            return;
        };
        if self.tls.is_some() && !addr.is_tls() {
            d.error(&["tls"], "tls is only used with a tcp+tls:// address");
        }
        if self.framing.is_some() && addr.is_datagram() {
            d.error(
                &["framing"],
                "framing applies to stream transports (tcp, tcp+tls, unix), not datagrams",
            );
        }
        if self.newlines == Newlines::Keep
            && !addr.is_datagram()
            && self.effective_framing() == Framing::Newline
        {
            d.error(
                &["newlines"],
                "newlines = \"keep\" with newline framing would split messages; use framing = \"octet-counting\"",
            );
        }
        if let Some(m) = self.max_message {
            if m.0 < 64 {
                d.error(&["max_message"], "must be at least 64 bytes");
            }
        }
        if self.batch.max_events == 0 {
            d.error(&["batch", "max_events"], "must be at least 1");
        }
        if let Some(h) = &self.hostname {
            if h.is_empty() || h.contains(char::is_whitespace) {
                d.error(&["hostname"], "must be a non-empty word without spaces");
            }
        }
        if let Some(p) = &self.procid {
            if p.is_empty() || p.contains(char::is_whitespace) {
                d.error(&["procid"], "must be a non-empty word without spaces");
            }
        }
    }
}

impl logwharf_collector::SinkConfig for SyslogSinkConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        let dead_letters = crate::util::dead_letter::DeadLetters::new(&cx);
        let mut config = self.clone();
        config.batch = crate::util::batcher::within_buffer(&self.batch, &cx.buffer);
        Ok(Box::new(super::SyslogSink::with_dead_letters(
            &cx.name,
            &config,
            dead_letters,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_facilities() {
        assert_eq!(Facility::parse("mail").unwrap(), Facility(2));
        assert_eq!(Facility::parse("local7").unwrap(), Facility(23));
        assert_eq!(Facility::parse("17").unwrap(), Facility(17));
        assert!(Facility::parse("24").is_err());
        assert!(Facility::parse("mial").unwrap_err().contains("authpriv"));
        assert_eq!(Facility(10).name(), "authpriv");
    }

    #[test]
    fn loads_with_docker_option_names() {
        let c = crate::load_test_config(
            r#"
[sources.in]
type = "syslog"
address = "tcp://127.0.0.1:5514"
[sinks.rsyslog]
type = "syslog"
inputs = ["in"]
syslog-address = "tcp+tls://127.0.0.1:6514"
syslog-facility = "mail"
syslog-format = "rfc5424micro"
tag = "{{.Name}}"
tls = { ca_file = "/tmp/ca.pem" }
"#,
        )
        .unwrap();
        let s = c.sinks["rsyslog"]
            .inner
            .downcast_ref::<SyslogSinkConfig>()
            .unwrap();
        assert_eq!(s.facility, Facility(2));
        assert_eq!(s.format, SyslogFormat::Rfc5424Micro);
        assert_eq!(s.effective_framing(), Framing::OctetCounting);
        assert_eq!(s.effective_max_message(), 2048);
        let src = c.sources["in"]
            .downcast_ref::<logwharf_collector::sources::syslog::SyslogSourceConfig>()
            .unwrap();
        assert_eq!(src.max_frame.0, 64 << 10);
    }

    #[test]
    fn reports_bad_syslog_options() {
        let e = crate::load_test_config(
            r#"
[sources.in]
type = "syslog"
address = "udp://127.0.0.1:5514"
max_frame = 10
[sinks.s]
type = "syslog"
inputs = ["in"]
address = "udp://127.0.0.1:514"
facility = "mial"
framing = "octet-counting"
"#,
        )
        .unwrap_err();
        let e: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            e[0].starts_with("line 5: sources.in.max_frame: must be at least 480"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("line 10: sinks.s.facility: invalid syslog facility \"mial\""),
            "{e:?}"
        );
    }
}
