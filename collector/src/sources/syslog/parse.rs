//! One syslog frame → one [`Event`], parsed with `syslog_loose` (RFC 5424 first, then
//! RFC 3164, tolerant of the loose variants older Docker versions and many hosts send).
//!
//! - `message`: MSG, a slice of the frame's buffer (no copy) when the frame is valid UTF-8;
//!   invalid UTF-8 is replaced by U+FFFD (as Docker's json-file does) and counted.
//! - `time`: the message's timestamp; RFC 3164 stamps without a year get the current year
//!   (last year for a December stamp seen in January) and the local time zone; none: now.
//! - `stream`: the inverse of Docker's mapping, severity info → stdout, err → stderr; other
//!   severities → unknown.
//! - `fields`: `facility`, `severity` (names), `hostname`, `appname` (Docker's tag), `procid`,
//!   `msgid`, `structured_data` (`{id: {param: value}}`) when present, and `peer`; the four
//!   header fields without control characters (they come from the peer: the trust boundary,
//!   [`crate::untrusted`]).
//! - A frame with no `<PRI>` (or unparseable) is passed on whole, flagged malformed, counted.
//!
//! Well-formed RFC 5424 without structured data — what Docker's `rfc5424`/`rfc5424micro`
//! send — takes a hand-written fast path ([`fast_5424`]) that gives the same result as
//! `syslog_loose` (a test checks them against each other); everything else goes to
//! `syslog_loose`.

use crate::event::{Event, EventFlags, Stream};
use crate::time::civil_from_days;
use crate::untrusted::clean_str;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::borrow::Cow;
use syslog_loose::{Message, ProcId, SyslogFacility, SyslogSeverity, Variant};

/// Problems found while parsing (each counted with this `kind`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseIssues {
    pub invalid_utf8: bool,
    pub malformed: bool,
}

/// Parses one frame. `now_ns` stands in for a missing timestamp.
pub fn parse_frame(frame: &Bytes, peer: &str, now_ns: i64) -> (Event, ParseIssues) {
    let mut issues = ParseIssues::default();
    let text: Cow<'_, str> = match std::str::from_utf8(frame) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            issues.invalid_utf8 = true;
            String::from_utf8_lossy(frame)
        }
    };
    let (year, month) = year_month(now_ns);
    let get_year = move |(m, ..): syslog_loose::IncompleteDate| {
        let y = match (m, month) {
            (12, 1) => year - 1,
            (1, 12) => year + 1,
            _ => year,
        };
        y as i32
    };
    if let Some(p) = fast_5424(&text) {
        let message = match &text {
            Cow::Borrowed(_) => frame.slice_ref(p.msg.as_bytes()),
            Cow::Owned(_) => Bytes::copy_from_slice(p.msg.as_bytes()),
        };
        let stream = match p.severity {
            SyslogSeverity::SEV_INFO => Stream::Stdout,
            SyslogSeverity::SEV_ERR => Stream::Stderr,
            _ => Stream::Unknown,
        };
        let mut ev = Event::new(p.time_ns.unwrap_or(now_ns), stream, message);
        let msg = Message {
            protocol: syslog_loose::Protocol::RFC5424(1),
            facility: Some(p.facility),
            severity: Some(p.severity),
            timestamp: None,
            hostname: p.hostname,
            appname: p.appname,
            procid: p.procid.map(ProcId::from),
            msgid: p.msgid,
            structured_data: Vec::new(),
            msg: p.msg,
        };
        ev.fields = Some(Box::new(fields(&msg, peer)));
        return (ev, issues);
    }
    let msg = syslog_loose::parse_message_with_year(&text, get_year, Variant::Either);
    if msg.facility.is_none() {
        issues.malformed = true;
        let message = match &text {
            Cow::Borrowed(_) => frame.clone(),
            Cow::Owned(s) => Bytes::from(s.clone().into_bytes()),
        };
        let mut ev = Event::new(now_ns, Stream::Unknown, message);
        ev.flags.insert(EventFlags::MALFORMED);
        let mut fields = Map::new();
        fields.insert("peer".into(), Value::String(peer.to_string()));
        ev.fields = Some(Box::new(fields));
        return (ev, issues);
    }
    let message = match &text {
        Cow::Borrowed(_) => frame.slice_ref(msg.msg.as_bytes()),
        Cow::Owned(_) => Bytes::copy_from_slice(msg.msg.as_bytes()),
    };
    let time_ns = msg
        .timestamp
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(now_ns);
    let stream = match msg.severity {
        Some(SyslogSeverity::SEV_INFO) => Stream::Stdout,
        Some(SyslogSeverity::SEV_ERR) => Stream::Stderr,
        _ => Stream::Unknown,
    };
    let mut ev = Event::new(time_ns, stream, message);
    ev.fields = Some(Box::new(fields(&msg, peer)));
    (ev, issues)
}

fn fields(msg: &Message<&str>, peer: &str) -> Map<String, Value> {
    let mut f = Map::new();
    let s = |v: &str| Value::String(v.to_string());
    // Header fields come from the peer and end up in other headers (the syslog sink's
    // APP-NAME): no control characters, whatever the framing let through.
    let h = |v: &str| Value::String(clean_str(v).into_owned());
    if let Some(x) = msg.facility {
        f.insert("facility".into(), s(x.as_str()));
    }
    if let Some(x) = msg.severity {
        f.insert("severity".into(), s(x.as_str()));
    }
    if let Some(x) = msg.hostname {
        f.insert("hostname".into(), h(x));
    }
    if let Some(x) = msg.appname {
        f.insert("appname".into(), h(x));
    }
    match &msg.procid {
        Some(ProcId::PID(p)) => {
            f.insert("procid".into(), Value::from(*p));
        }
        Some(ProcId::Name(n)) => {
            f.insert("procid".into(), h(n));
        }
        None => {}
    }
    if let Some(x) = msg.msgid {
        f.insert("msgid".into(), h(x));
    }
    if !msg.structured_data.is_empty() {
        let mut sd = Map::new();
        for el in &msg.structured_data {
            let params: Map<String, Value> = el
                .params()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
            sd.insert(el.id.to_string(), Value::Object(params));
        }
        f.insert("structured_data".into(), Value::Object(sd));
    }
    f.insert("peer".into(), s(peer));
    f
}

/// The parts of a well-formed RFC 5424 message without structured data.
#[derive(Debug, PartialEq)]
pub struct Fast5424<'a> {
    pub facility: SyslogFacility,
    pub severity: SyslogSeverity,
    pub time_ns: Option<i64>,
    pub hostname: Option<&'a str>,
    pub appname: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    pub msg: &'a str,
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, each header field one token
/// (`-` for none); `None` for anything else (structured data, other versions, RFC 3164, odd
/// spacing, a timestamp that is not RFC 3339), which `syslog_loose` then parses.
pub fn fast_5424(input: &str) -> Option<Fast5424<'_>> {
    let s = input.trim();
    let rest = s.strip_prefix('<')?;
    let close = rest.as_bytes().iter().take(4).position(|&b| b == b'>')?;
    // Digits only: `u8::from_str` would also take a `+`.
    if close == 0 || !rest.as_bytes()[..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pri: u8 = rest[..close].parse().ok()?;
    let facility = facility_of(pri >> 3)?;
    let severity = severity_of(pri & 7)?;
    let rest = rest[close + 1..].strip_prefix("1 ")?;
    let mut it = rest.splitn(7, ' ');
    let ts = it.next()?;
    let time_ns = match ts {
        "-" => None,
        t => Some(crate::time::parse_rfc3339_nanos(t.as_bytes())?),
    };
    // RFC 5424 header fields are PRINTUSASCII; anything else (a tab, a CR, which
    // syslog_loose takes as the end of the field) is left to syslog_loose.
    let mut field = || -> Option<Option<&str>> {
        match it.next()? {
            "" => None,
            "-" => Some(None),
            v if v.bytes().all(|b| matches!(b, b'!'..=b'~')) => Some(Some(v)),
            _ => None,
        }
    };
    let (hostname, appname, procid, msgid) = (field()?, field()?, field()?, field()?);
    if it.next()? != "-" {
        return None;
    }
    let msg = it.next().unwrap_or("");
    if msg.starts_with(char::is_whitespace) {
        return None; // syslog_loose drops white space before MSG
    }
    Some(Fast5424 {
        facility,
        severity,
        time_ns,
        hostname,
        appname,
        procid,
        msgid,
        msg,
    })
}

fn facility_of(code: u8) -> Option<SyslogFacility> {
    use SyslogFacility::*;
    const ALL: [SyslogFacility; 24] = [
        LOG_KERN,
        LOG_USER,
        LOG_MAIL,
        LOG_DAEMON,
        LOG_AUTH,
        LOG_SYSLOG,
        LOG_LPR,
        LOG_NEWS,
        LOG_UUCP,
        LOG_CRON,
        LOG_AUTHPRIV,
        LOG_FTP,
        LOG_NTP,
        LOG_AUDIT,
        LOG_ALERT,
        LOG_CLOCKD,
        LOG_LOCAL0,
        LOG_LOCAL1,
        LOG_LOCAL2,
        LOG_LOCAL3,
        LOG_LOCAL4,
        LOG_LOCAL5,
        LOG_LOCAL6,
        LOG_LOCAL7,
    ];
    ALL.get(code as usize).copied()
}

fn severity_of(code: u8) -> Option<SyslogSeverity> {
    use SyslogSeverity::*;
    const ALL: [SyslogSeverity; 8] = [
        SEV_EMERG,
        SEV_ALERT,
        SEV_CRIT,
        SEV_ERR,
        SEV_WARNING,
        SEV_NOTICE,
        SEV_INFO,
        SEV_DEBUG,
    ];
    ALL.get(code as usize).copied()
}

fn year_month(now_ns: i64) -> (i64, u32) {
    let (y, m, _) = civil_from_days(now_ns.div_euclid(86_400_000_000_000));
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_611_862_000_000_000; // 2026-11-25T13:04:22Z

    fn parse(s: &[u8]) -> (Event, ParseIssues) {
        parse_frame(&Bytes::copy_from_slice(s), "127.0.0.1:1234", NOW)
    }

    fn field<'a>(e: &'a Event, k: &str) -> &'a Value {
        &e.fields.as_ref().unwrap()[k]
    }

    #[test]
    fn docker_rfc5424micro() {
        let (e, i) = parse(b"<19>1 2026-11-25T13:04:34.665154Z vm sysl/d2ae8d3a9846 3024 sysl/d2ae8d3a9846 - hello-err");
        assert_eq!(i, ParseIssues::default());
        assert_eq!(&e.message[..], b"hello-err");
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.time_ns, 1_795_611_874_665_154_000);
        assert_eq!(field(&e, "facility"), "mail");
        assert_eq!(field(&e, "severity"), "err");
        assert_eq!(field(&e, "hostname"), "vm");
        assert_eq!(field(&e, "appname"), "sysl/d2ae8d3a9846");
        assert_eq!(field(&e, "procid"), 3024);
        assert_eq!(field(&e, "msgid"), "sysl/d2ae8d3a9846");
    }

    #[test]
    fn docker_rfc3164_and_default() {
        let (e, _) = parse(b"<22>Nov 25 13:39:38 vm lw-capture/8f44ff78346d[11458]: hello-out");
        assert_eq!(&e.message[..], b"hello-out");
        assert_eq!(e.stream, Stream::Stdout);
        assert_eq!(field(&e, "appname"), "lw-capture/8f44ff78346d");
        assert_eq!(field(&e, "hostname"), "vm");
        assert_eq!(field(&e, "procid"), 11458);
        let (e, _) = parse(b"<19>Nov 25 13:39:40 lw-capture/26d31ef65b90[11458]: hello-err");
        assert_eq!(&e.message[..], b"hello-err");
        assert_eq!(field(&e, "appname"), "lw-capture/26d31ef65b90");
        assert_eq!(field(&e, "facility"), "mail");
    }

    #[test]
    fn structured_data() {
        let (e, _) = parse(br#"<165>1 2026-11-25T13:04:34Z h app 1 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] msg"#);
        assert_eq!(&e.message[..], b"msg");
        assert_eq!(
            field(&e, "structured_data")["exampleSDID@32473"]["iut"],
            "3"
        );
        assert_eq!(e.stream, Stream::Unknown);
    }

    #[test]
    fn the_fast_path_agrees_with_syslog_loose() {
        let cases = [
            "<19>1 2026-11-25T13:04:34.665154Z vm sysl/d2ae8d3a9846 3024 sysl/d2ae8d3a9846 - hello-err",
            "<22>1 2026-11-25T13:04:34Z vm a 3024 a - hello  out  ",
            "<165>1 2026-11-25T14:04:34.1+01:00 - - - - - ",
            "<0>1 2026-11-25T13:04:34Z h app name - - x y z",
            "<191>1 2026-11-25T13:04:34Z h app 1 m - msg with - dashes",
            "<14>1 2026-11-25T13:04:34Z h app 1 - -",
            "  <14>1 2026-11-25T13:04:34Z h app 1 - - padded  ",
        ];
        for c in cases {
            let fast = fast_5424(c).unwrap_or_else(|| panic!("no fast path for {c:?}"));
            let slow = syslog_loose::parse_message_with_year(c, |_| 2026, Variant::RFC5424);
            assert_eq!(Some(fast.facility), slow.facility, "{c}");
            assert_eq!(Some(fast.severity), slow.severity, "{c}");
            assert_eq!(
                fast.time_ns,
                slow.timestamp.and_then(|t| t.timestamp_nanos_opt()),
                "{c}"
            );
            assert_eq!(fast.hostname, slow.hostname, "{c}");
            assert_eq!(fast.appname, slow.appname, "{c}");
            assert_eq!(fast.procid.map(ProcId::from), slow.procid, "{c}");
            assert_eq!(fast.msgid, slow.msgid, "{c}");
            assert_eq!(fast.msg, slow.msg, "{c}");
        }
        // A NILVALUE timestamp is valid RFC 5424 that syslog_loose does not take (it passes the
        // whole line on as MSG); the fast path takes it.
        let nil = fast_5424("<191>1 - h app 1 m - x").unwrap();
        assert_eq!((nil.time_ns, nil.msg), (None, "x"));
        for other in [
            "<14>1 2026-11-25T13:04:34Z h app 1 - [a b=\"c\"] sd",
            "<14>Nov 25 13:04:34 h app[1]: x",
            "<14>2 2026-11-25T13:04:34Z h app 1 - - v2",
            "<14>1 2026-11-25T13:04:34Z h  app 1 - - double space",
            "<999>1 - - - - - - x",
            "<14>1 yesterday h app 1 - - x",
            // Found by fuzzing (fuzz/fuzz_targets/syslog.rs): syslog_loose ends a field at
            // any white space, so the fast path must not take these.
            "<19>1 2026-11-25T13:40:16Z vm app 11458 lw-c\rapture - hello-err",
            "<19>1 2026-11-25T13:40:16Z v\tm app 1 - - x",
            "<19>1 2026-11-25T13:40:16Z vm caf\u{e9} 1 - - x",
            "<22>1 2026-11-25T13:40:16Z vm app 1 m -  \u{5}leading space",
            "<+9>1 2026-11-25T13:39:35Z vm app 1 m - plus sign",
        ] {
            assert!(fast_5424(other).is_none(), "{other}");
        }
    }

    #[test]
    fn garbage_is_malformed_and_kept() {
        let (e, i) = parse(b"\x01\x02 not syslog");
        assert!(i.malformed);
        assert!(e.flags.contains(EventFlags::MALFORMED));
        assert_eq!(&e.message[..], b"\x01\x02 not syslog");
        assert_eq!(e.time_ns, NOW);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let (e, i) = parse(b"<14>1 2026-11-25T13:04:34Z h app - - - caf\xe9!");
        assert!(i.invalid_utf8);
        assert!(!i.malformed);
        assert_eq!(std::str::from_utf8(&e.message).unwrap(), "caf\u{fffd}!");
    }
}
