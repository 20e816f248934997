//! Where the syslog sink turns an event into bytes: the message formats of Docker's syslog
//! driver, byte for byte (see `tests/fixtures/syslog/` for the captures), and the framing.
//!
//! | format         | bytes (before framing)                                   |
//! |----------------|----------------------------------------------------------|
//! | `unix` (`""`)  | `<PRI>Mmm _d hh:mm:ss TAG[PID]: MSG\n`                   |
//! | `rfc3164`      | `<PRI>Mmm _d hh:mm:ss HOSTNAME TAG[PID]: MSG\n`          |
//! | `rfc5424`      | `<PRI>1 YYYY-MM-DDThh:mm:ssZ HOSTNAME TAG PID TAG - MSG\n` |
//! | `rfc5424micro` | as rfc5424 with `.ffffff` microseconds                   |
//!
//! PRI = facility × 8 + severity: stdout → info (6), stderr → err (3), as Docker. Like Docker
//! (whose srslog library appends the `\n` before framing), octet counting counts the trailing
//! newline: `96 <22>1 … - hello-out\n`.
//!
//! Header fields (HOSTNAME, APP-NAME/TAG, PROCID, MSGID) are held to RFC 5424's PRINTUSASCII
//! and lengths ([`header_field`]) in every format; MSG's own newlines follow `newlines`
//! (`keep` is refused with newline framing): no byte of an event can end a frame early.
//!
//! Differences from Docker, on purpose: the timestamp is the log line's own time (Docker stamps
//! the time it sends), PROCID defaults to logwharf's pid (Docker: dockerd's), and empty lines
//! are sent (Docker's driver skips them).

use super::config::{Framing, Newlines, SyslogFormat};
use crate::util::confine::{cap_len, confine_into, Charset};
use logwharf_collector::time::{civil_from_days, write_rfc3339, Fraction};
use logwharf_collector::{Event, Stream};

/// Severity codes Docker uses.
pub const SEVERITY_ERR: u8 = 3;
pub const SEVERITY_INFO: u8 = 6;

/// The syslog severity of an event: from its stream as Docker does, else (events relayed
/// from a syslog source) from its `severity` field, else info.
pub fn severity(ev: &Event) -> u8 {
    match ev.stream {
        Stream::Stdout => SEVERITY_INFO,
        Stream::Stderr => SEVERITY_ERR,
        Stream::Unknown => ev
            .fields
            .as_ref()
            .and_then(|f| f.get("severity"))
            .and_then(|v| v.as_str())
            .and_then(severity_code)
            .unwrap_or(SEVERITY_INFO),
    }
}

/// `err` → 3 … (the names the syslog source writes into `fields.severity`).
pub fn severity_code(name: &str) -> Option<u8> {
    Some(match name {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" => 3,
        "warning" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" => 7,
        _ => return None,
    })
}

/// Which time zone the rfc3164/unix `Mmm _d hh:mm:ss` stamp is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The host's local time, as Docker (Go's `time.Now().Format(time.Stamp)`).
    Local,
    /// A fixed offset in seconds east of UTC (tests).
    Fixed(i32),
}

/// The local UTC offset, looked up once per hour of event time rather than per line.
#[derive(Debug)]
struct OffsetCache {
    zone: Zone,
    hour: i64,
    offset: i64,
}

impl OffsetCache {
    fn offset_at(&mut self, secs: i64) -> i64 {
        let hour = secs.div_euclid(3600);
        match self.zone {
            Zone::Fixed(o) => o as i64,
            Zone::Local if hour == self.hour => self.offset,
            Zone::Local => {
                self.hour = hour;
                self.offset = local_offset(secs);
                self.offset
            }
        }
    }
}

fn local_offset(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed tm we own; t is a valid time_t.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i64
        }
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Encodes events into syslog messages as Docker's driver writes them.
#[derive(Debug)]
pub struct Formatter {
    format: SyslogFormat,
    facility: u8,
    hostname: String,
    procid: String,
    /// `None` for datagram transports (one message per datagram, no framing).
    framing: Option<Framing>,
    newlines: Newlines,
    /// Datagram size cap, the trailing newline included.
    max_datagram: usize,
    offsets: OffsetCache,
    scratch: Vec<u8>,
    /// The seconds part of the stamp for `stamp_secs`.
    stamp: Vec<u8>,
    stamp_secs: i64,
    /// What follows the stamp, for `tag`.
    tag: String,
    tag_part: Vec<u8>,
}

/// What [`Formatter::encode`] did besides writing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncodeStats {
    /// Messages written (more than the events with `newlines = "split"`).
    pub messages: usize,
    /// Datagrams cut at the size cap.
    pub truncated: usize,
}

impl Formatter {
    pub fn new(
        format: SyslogFormat,
        facility: u8,
        hostname: String,
        procid: String,
        framing: Option<Framing>,
        newlines: Newlines,
        max_datagram: usize,
    ) -> Formatter {
        Formatter {
            format,
            facility,
            hostname: header_field(&hostname, MAX_HOSTNAME),
            procid: header_field(&procid, MAX_PROCID),
            framing,
            newlines,
            max_datagram: max_datagram.max(64),
            offsets: OffsetCache {
                zone: Zone::Local,
                hour: i64::MIN,
                offset: 0,
            },
            scratch: Vec::with_capacity(256),
            stamp: Vec::with_capacity(32),
            stamp_secs: 0,
            tag: String::new(),
            tag_part: Vec::with_capacity(128),
        }
    }

    /// Writes rfc3164/unix stamps in `zone` instead of the local time.
    pub fn with_zone(mut self, zone: Zone) -> Formatter {
        self.offsets.zone = zone;
        self.stamp.clear();
        self
    }

    /// Appends `ev` (APP-NAME `tag`) to `out`, framed. For datagram transports the end offset
    /// of every message is pushed to `ends`.
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        ev: &Event,
        tag: &str,
        stats: &mut EncodeStats,
    ) {
        let mut header = std::mem::take(&mut self.scratch);
        header.clear();
        self.header(&mut header, ev, tag);
        let msg: &[u8] = &ev.message;
        if self.newlines == Newlines::Split && memchr::memchr(b'\n', msg).is_some() {
            for line in msg.split(|&b| b == b'\n') {
                self.message(out, ends, &header, line, stats);
            }
        } else {
            self.message(out, ends, &header, msg, stats);
        }
        self.scratch = header;
    }

    /// Everything before MSG. The seconds part of the stamp and the part after it (which
    /// depends only on the tag) are cached: consecutive lines share both.
    fn header(&mut self, h: &mut Vec<u8>, ev: &Event, tag: &str) {
        let pri = self.facility as u32 * 8 + severity(ev) as u32;
        h.push(b'<');
        push_u32(h, pri);
        h.push(b'>');
        let secs = ev.time_ns.div_euclid(1_000_000_000);
        if secs != self.stamp_secs || self.stamp.is_empty() {
            self.stamp_secs = secs;
            let mut st = std::mem::take(&mut self.stamp);
            st.clear();
            if self.format.is_rfc5424() {
                write_rfc3339(&mut st, secs * 1_000_000_000, Fraction::Seconds);
                st.pop(); // the `Z`, written after the fraction
            } else {
                self.stamp(&mut st, ev.time_ns);
            }
            self.stamp = st;
        }
        if tag != self.tag || self.tag_part.is_empty() {
            self.tag.clear();
            self.tag.push_str(tag);
            // The tag may come from a peer: one header token of RFC 5424's characters.
            let app = header_field(tag, MAX_APP_NAME);
            let t = &mut self.tag_part;
            t.clear();
            t.push(b' ');
            if self.format.is_rfc5424() {
                t.extend_from_slice(self.hostname.as_bytes());
                t.push(b' ');
                t.extend_from_slice(app.as_bytes());
                t.push(b' ');
                t.extend_from_slice(self.procid.as_bytes());
                t.push(b' ');
                t.extend_from_slice(header_field(tag, MAX_MSGID).as_bytes());
                t.extend_from_slice(b" - ");
            } else {
                if self.format == SyslogFormat::Rfc3164 {
                    t.extend_from_slice(self.hostname.as_bytes());
                    t.push(b' ');
                }
                t.extend_from_slice(app.as_bytes());
                t.push(b'[');
                t.extend_from_slice(self.procid.as_bytes());
                t.extend_from_slice(b"]: ");
            }
        }
        match self.format {
            SyslogFormat::Rfc5424 | SyslogFormat::Rfc5424Micro => {
                h.extend_from_slice(b"1 ");
                h.extend_from_slice(&self.stamp);
                if self.format == SyslogFormat::Rfc5424Micro {
                    let micros = ev.time_ns.rem_euclid(1_000_000_000) as u32 / 1000;
                    let mut d = [b'.', 0, 0, 0, 0, 0, 0];
                    let mut v = micros;
                    for k in (1..7).rev() {
                        d[k] = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                    h.extend_from_slice(&d);
                }
                h.push(b'Z');
            }
            SyslogFormat::Rfc3164 | SyslogFormat::Unix => h.extend_from_slice(&self.stamp),
        }
        h.extend_from_slice(&self.tag_part);
    }

    /// Go's `time.Stamp`: `Jan _2 15:04:05`.
    fn stamp(&mut self, h: &mut Vec<u8>, ns: i64) {
        let utc = ns.div_euclid(1_000_000_000);
        let secs = utc + self.offsets.offset_at(utc);
        let (_, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        h.extend_from_slice(MONTHS[(m as usize - 1).min(11)]);
        h.push(b' ');
        h.push(if d >= 10 { b'0' + (d / 10) as u8 } else { b' ' });
        h.push(b'0' + (d % 10) as u8);
        h.push(b' ');
        for (i, v) in [sod / 3600, sod / 60 % 60, sod % 60]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                h.push(b':');
            }
            h.push(b'0' + (v / 10) as u8);
            h.push(b'0' + (v % 10) as u8);
        }
    }

    fn message(
        &self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        header: &[u8],
        msg: &[u8],
        stats: &mut EncodeStats,
    ) {
        stats.messages += 1;
        let escape = self.newlines == Newlines::Escape;
        let newlines = if escape {
            memchr::memchr_iter(b'\n', msg).count()
        } else {
            0
        };
        match self.framing {
            None => {
                let start = out.len();
                out.extend_from_slice(header);
                push_body(out, msg, newlines);
                out.push(b'\n');
                if out.len() - start > self.max_datagram {
                    let mut cut = start + self.max_datagram - 1;
                    // Do not leave half a UTF-8 sequence at the end.
                    while cut > start + header.len() && (out[cut] & 0xC0) == 0x80 {
                        cut -= 1;
                    }
                    out.truncate(cut);
                    out.push(b'\n');
                    stats.truncated += 1;
                }
                ends.push(out.len());
            }
            Some(Framing::Newline) => {
                out.extend_from_slice(header);
                push_body(out, msg, newlines);
                out.push(b'\n');
            }
            Some(Framing::OctetCounting) => {
                let len = header.len() + msg.len() + 3 * newlines + 1;
                push_u32(out, len as u32);
                out.push(b' ');
                out.extend_from_slice(header);
                push_body(out, msg, newlines);
                out.push(b'\n');
            }
        }
    }
}

/// RFC 5424's limits for HOSTNAME, APP-NAME, PROCID and MSGID (the rfc3164/unix TAG takes
/// APP-NAME's).
pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
pub const MAX_PROCID: usize = 128;
pub const MAX_MSGID: usize = 32;

/// A header field as RFC 5424's grammar has it: PRINTUSASCII (`%d33-126`; anything else
/// becomes `_`), at most `max` characters, `-` (NILVALUE) when empty. No space, newline or
/// other byte of it can end a field or a frame early.
pub fn header_field(v: &str, max: usize) -> String {
    let mut out = String::with_capacity(v.len().min(max));
    confine_into(v, Charset::PrintUsAscii, &mut out);
    cap_len(&mut out, max);
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// MSG, with each `\n` written as `#012` when `newlines` (their count) is not zero.
fn push_body(out: &mut Vec<u8>, msg: &[u8], newlines: usize) {
    if newlines == 0 {
        out.extend_from_slice(msg);
        return;
    }
    let mut last = 0;
    for i in memchr::memchr_iter(b'\n', msg) {
        out.extend_from_slice(&msg[last..i]);
        out.extend_from_slice(b"#012");
        last = i + 1;
    }
    out.extend_from_slice(&msg[last..]);
}

fn push_u32(out: &mut Vec<u8>, mut v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    // 2026-11-25T13:04:34.665154Z, as in DOCKER_DRIVERS.md.
    const T: i64 = 1_795_611_874_665_154_321;

    fn ev(stream: Stream, msg: &'static [u8]) -> Event {
        Event::new(T, stream, Bytes::from_static(msg))
    }

    fn fmt(format: SyslogFormat, framing: Option<Framing>, newlines: Newlines) -> Formatter {
        Formatter::new(
            format,
            2,
            "vm".into(),
            "3024".into(),
            framing,
            newlines,
            1024,
        )
        .with_zone(Zone::Fixed(0))
    }

    fn one(f: &mut Formatter, e: &Event) -> String {
        let (mut out, mut ends, mut st) = (Vec::new(), Vec::new(), EncodeStats::default());
        f.encode(&mut out, &mut ends, e, "sysl/d2ae8d3a9846", &mut st);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn docker_formats() {
        let nl = Some(Framing::Newline);
        let mut f = fmt(SyslogFormat::Rfc5424Micro, nl, Newlines::Escape);
        assert_eq!(
            one(&mut f, &ev(Stream::Stderr, b"hello-err")),
            "<19>1 2026-11-25T13:04:34.665154Z vm sysl/d2ae8d3a9846 3024 sysl/d2ae8d3a9846 - hello-err\n"
        );
        let mut f = fmt(SyslogFormat::Rfc5424, nl, Newlines::Escape);
        assert_eq!(
            one(&mut f, &ev(Stream::Stdout, b"hello-out")),
            "<22>1 2026-11-25T13:04:34Z vm sysl/d2ae8d3a9846 3024 sysl/d2ae8d3a9846 - hello-out\n"
        );
        let mut f = fmt(SyslogFormat::Rfc3164, nl, Newlines::Escape);
        assert_eq!(
            one(&mut f, &ev(Stream::Stdout, b"x")),
            "<22>Nov 25 13:04:34 vm sysl/d2ae8d3a9846[3024]: x\n"
        );
        let mut f = fmt(SyslogFormat::Unix, nl, Newlines::Escape);
        assert_eq!(
            one(&mut f, &ev(Stream::Stdout, b"x")),
            "<22>Nov 25 13:04:34 sysl/d2ae8d3a9846[3024]: x\n"
        );
    }

    #[test]
    fn cached_stamp_and_tag_parts_follow_each_event() {
        let nl = Some(Framing::Newline);
        for format in [SyslogFormat::Rfc5424Micro, SyslogFormat::Rfc3164] {
            let mut f = fmt(format, nl, Newlines::Escape);
            let (mut out, mut ends, mut st) = (Vec::new(), Vec::new(), EncodeStats::default());
            let mut e = ev(Stream::Stdout, b"x");
            f.encode(&mut out, &mut ends, &e, "a", &mut st);
            e.time_ns += 1_000_000_000;
            f.encode(&mut out, &mut ends, &e, "a", &mut st);
            f.encode(&mut out, &mut ends, &e, "b", &mut st);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if format == SyslogFormat::Rfc3164 {
                assert_eq!(
                    lines,
                    [
                        "<22>Nov 25 13:04:34 vm a[3024]: x",
                        "<22>Nov 25 13:04:35 vm a[3024]: x",
                        "<22>Nov 25 13:04:35 vm b[3024]: x"
                    ]
                );
            } else {
                assert_eq!(
                    lines,
                    [
                        "<22>1 2026-11-25T13:04:34.665154Z vm a 3024 a - x",
                        "<22>1 2026-11-25T13:04:35.665154Z vm a 3024 a - x",
                        "<22>1 2026-11-25T13:04:35.665154Z vm b 3024 b - x"
                    ]
                );
            }
        }
    }

    #[test]
    fn single_digit_days_are_space_padded_and_zones_apply() {
        let mut f = fmt(SyslogFormat::Unix, Some(Framing::Newline), Newlines::Escape)
            .with_zone(Zone::Fixed(3600));
        // 2026-01-05T23:30:00Z is 00:30 on the 6th at +01:00.
        let e = Event::new(
            1_767_655_800_000_000_000,
            Stream::Stdout,
            Bytes::from_static(b"x"),
        );
        assert_eq!(
            one(&mut f, &e),
            "<22>Jan  6 00:30:00 sysl/d2ae8d3a9846[3024]: x\n"
        );
    }

    #[test]
    fn octet_counting_counts_the_newline_like_docker() {
        let mut f = fmt(
            SyslogFormat::Rfc5424,
            Some(Framing::OctetCounting),
            Newlines::Escape,
        );
        let s = one(&mut f, &ev(Stream::Stdout, b"hello-out"));
        let (n, rest) = s.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), rest.len());
        assert!(rest.ends_with("- hello-out\n"));
    }

    #[test]
    fn newlines_escaped_split_or_kept() {
        let e = ev(Stream::Stdout, b"a\nb");
        let nl = Some(Framing::Newline);
        let mut f = fmt(SyslogFormat::Unix, nl, Newlines::Escape);
        assert!(one(&mut f, &e).ends_with(": a#012b\n"));
        let mut f = fmt(SyslogFormat::Unix, nl, Newlines::Split);
        let s = one(&mut f, &e);
        assert_eq!(s.lines().count(), 2);
        assert!(s.ends_with("]: a\n<22>Nov 25 13:04:34 sysl/d2ae8d3a9846[3024]: b\n"));
        let mut f = fmt(
            SyslogFormat::Rfc5424,
            Some(Framing::OctetCounting),
            Newlines::Keep,
        );
        let s = one(&mut f, &e);
        let (n, rest) = s.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), rest.len());
        assert!(rest.ends_with("- a\nb\n"));
        let mut f = fmt(
            SyslogFormat::Rfc5424,
            Some(Framing::OctetCounting),
            Newlines::Escape,
        );
        let s = one(&mut f, &e);
        let (n, rest) = s.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), rest.len());
    }

    #[test]
    fn datagrams_are_cut_at_the_cap_on_a_char_boundary() {
        let mut f = Formatter::new(
            SyslogFormat::Rfc3164,
            2,
            "vm".into(),
            "1".into(),
            None,
            Newlines::Escape,
            64,
        )
        .with_zone(Zone::Fixed(0));
        let long = "é".repeat(100);
        let e = Event::new(T, Stream::Stdout, Bytes::from(long));
        let (mut out, mut ends, mut st) = (Vec::new(), Vec::new(), EncodeStats::default());
        f.encode(&mut out, &mut ends, &e, "t", &mut st);
        f.encode(
            &mut out,
            &mut ends,
            &ev(Stream::Stderr, b"short"),
            "t",
            &mut st,
        );
        assert_eq!(st.truncated, 1);
        assert_eq!(st.messages, 2);
        assert!(ends[0] <= 64);
        let first = std::str::from_utf8(&out[..ends[0]]).unwrap();
        assert!(first.ends_with("é\n"));
        assert_eq!(
            &out[ends[0]..ends[1]],
            b"<19>Nov 25 13:04:34 vm t[1]: short\n"
        );
    }

    /// RFC 5424 §6: `HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP
    /// MSGID`, each field NILVALUE or 1*N PRINTUSASCII.
    fn check_5424_header(frame: &str) {
        let mut it = frame.splitn(8, ' ');
        let (pri, _ts) = (it.next().unwrap(), it.next().unwrap());
        assert!(pri.starts_with('<') && pri.ends_with(">1"), "{frame:?}");
        for (name, max) in [
            ("HOSTNAME", 255),
            ("APP-NAME", 48),
            ("PROCID", 128),
            ("MSGID", 32),
        ] {
            let f = it.next().unwrap();
            assert!(!f.is_empty() && f.len() <= max, "{name} {f:?} in {frame:?}");
            assert!(f.bytes().all(|b| (33..=126).contains(&b)), "{name} {f:?}");
        }
        assert_eq!(it.next(), Some("-"), "{frame:?}");
    }

    #[test]
    fn header_fields_follow_rfc5424_whatever_the_tag_host_or_procid() {
        let long = "x".repeat(60);
        let pieces = [
            "a", " ", "\n", "\r", "\0", "é", "<14>1 ", "-", "\u{85}", &long,
        ];
        let mut n = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let tag = format!("{a}{b}{c}");
                    for format in [
                        SyslogFormat::Rfc5424,
                        SyslogFormat::Rfc3164,
                        SyslogFormat::Unix,
                    ] {
                        for framing in [Some(Framing::Newline), Some(Framing::OctetCounting), None]
                        {
                            let mut f = Formatter::new(
                                format,
                                1,
                                tag.clone(),
                                tag.clone(),
                                framing,
                                Newlines::Escape,
                                2048,
                            )
                            .with_zone(Zone::Fixed(0));
                            let (mut out, mut ends, mut st) =
                                (Vec::new(), Vec::new(), EncodeStats::default());
                            let e = ev(Stream::Stdout, b"line\nwith <13>1 fake\rheader");
                            f.encode(&mut out, &mut ends, &e, &tag, &mut st);
                            let text = String::from_utf8(out).unwrap();
                            let body = match framing {
                                Some(Framing::OctetCounting) => {
                                    let (len, rest) = text.split_once(' ').unwrap();
                                    assert_eq!(len.parse::<usize>().unwrap(), rest.len());
                                    rest
                                }
                                _ => text.as_str(),
                            };
                            assert_eq!(body.matches('\n').count(), 1, "{body:?}");
                            assert!(
                                body.ends_with("line#012with <13>1 fake\rheader\n"),
                                "{body:?}"
                            );
                            if format == SyslogFormat::Rfc5424 {
                                check_5424_header(body);
                            } else {
                                // `<14>Mmm dd hh:mm:ss ` then `[HOSTNAME ]TAG[PID]: `.
                                let head = &body[20..body.find("]: ").unwrap()];
                                let spaces = usize::from(format == SyslogFormat::Rfc3164);
                                assert_eq!(head.matches(' ').count(), spaces, "{body:?}");
                                assert!(head.bytes().all(|b| (32..=126).contains(&b)), "{head:?}");
                            }
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 9000);
        assert_eq!(header_field("", 48), "-");
        assert_eq!(header_field("a b\nc", 48), "a_b_c");
        assert_eq!(header_field(&"é".repeat(40), 48), "_".repeat(40));
        assert_eq!(header_field(&"x".repeat(50), 32).len(), 32);
    }

    #[test]
    fn severity_of_relayed_events() {
        let mut e = ev(Stream::Unknown, b"x");
        assert_eq!(severity(&e), SEVERITY_INFO);
        let mut m = serde_json::Map::new();
        m.insert("severity".into(), "warning".into());
        e.fields = Some(Box::new(m));
        assert_eq!(severity(&e), 4);
    }
}
