//! The json-file line parser: one line of `<id>-json.log` → stream, time, attrs and the
//! decoded `log` text, appended to a buffer that the whole batch shares.
//!
//! Docker always writes the same shape, `{"log":"…","stream":"stdout|stderr",("attrs":{…},)
//! "time":"…"}`, so the fast path matches that shape byte by byte: no DOM, no allocation per
//! line, memchr to find the end of the `log` string, escapes decoded straight into the batch's
//! `BytesMut`. Anything else (other key order, extra keys) falls back to serde_json; what
//! serde_json cannot read either is the caller's malformed line.

use crate::event::{Attrs, Stream};
use crate::time::parse_rfc3339_nanos;
use bytes::{BufMut, BytesMut};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a parsed line says besides its message (which went into the output buffer).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub stream: Stream,
    /// `None` when the line carries no usable time (only via the fallback path); the caller
    /// stamps it with the read time.
    pub time_ns: Option<i64>,
    /// The `log` text ended in `\n` (dropped from the message). `false`: a partial record whose
    /// line continues in the next record of the same stream.
    pub complete: bool,
    pub attrs: Option<Arc<Attrs>>,
}

/// Parses lines; keeps the last `attrs` so that consecutive lines with identical attrs share
/// one `Arc`.
#[derive(Default)]
pub struct LineParser {
    attrs_cache: Option<(Box<[u8]>, Arc<Attrs>)>,
}

const LOG_PREFIX: &[u8] = b"{\"log\":\"";
const STREAM_KEY: &[u8] = b",\"stream\":\"";
const ATTRS_KEY: &[u8] = b",\"attrs\":";
const TIME_KEY: &[u8] = b",\"time\":\"";

impl LineParser {
    pub fn new() -> LineParser {
        LineParser::default()
    }

    /// Parses one line (without its newline), appending the decoded message to `out`. On
    /// `None` (malformed) `out` is left as it was.
    pub fn parse(&mut self, line: &[u8], out: &mut BytesMut) -> Option<Record> {
        let mark = out.len();
        if let Some(r) = self.parse_docker_shape(line, out, mark) {
            return Some(r);
        }
        out.truncate(mark);
        let r = parse_any_order(line, out, mark);
        if r.is_none() {
            out.truncate(mark);
        }
        r
    }

    fn parse_docker_shape(
        &mut self,
        line: &[u8],
        out: &mut BytesMut,
        mark: usize,
    ) -> Option<Record> {
        let rest = line.strip_prefix(LOG_PREFIX)?;
        let used = decode_json_string(rest, out)?;
        let rest = rest[used..].strip_prefix(STREAM_KEY)?;
        let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout\"") {
            (Stream::Stdout, r)
        } else if let Some(r) = rest.strip_prefix(b"stderr\"") {
            (Stream::Stderr, r)
        } else {
            return None;
        };
        let rest = rest.strip_suffix(b"\"}")?;
        let (attrs, time) = if let Some(t) = rest.strip_prefix(TIME_KEY) {
            (None, t)
        } else {
            let a = rest.strip_prefix(ATTRS_KEY)?;
            // `time` is the last key, and `,"time":"` cannot occur inside a JSON string (its
            // quote would be escaped), so the last occurrence ends the attrs object.
            let at = memchr::memmem::rfind(a, TIME_KEY)?;
            (Some(self.attrs(&a[..at])?), &a[at + TIME_KEY.len()..])
        };
        let time_ns = parse_rfc3339_nanos(time)?;
        let complete = out.len() > mark && out[out.len() - 1] == b'\n';
        if complete {
            out.truncate(out.len() - 1);
        }
        Some(Record {
            stream,
            time_ns: Some(time_ns),
            complete,
            attrs,
        })
    }

    fn attrs(&mut self, json: &[u8]) -> Option<Arc<Attrs>> {
        if let Some((bytes, attrs)) = &self.attrs_cache {
            if **bytes == *json {
                return Some(attrs.clone());
            }
        }
        let parsed = Arc::new(serde_json::from_slice::<AttrsInOrder>(json).ok()?.0);
        self.attrs_cache = Some((json.into(), parsed.clone()));
        Some(parsed)
    }
}

/// Decodes the JSON string body at the start of `s` (after its opening quote) into `out`;
/// returns the bytes used, closing quote included. `None`: unterminated or a bad escape.
///
/// Lone UTF-16 surrogates (which Go never writes, but a hand-made file might) become U+FFFD
/// rather than failing the line. Raw control bytes are passed through: Docker escapes them,
/// and checking costs more than it protects.
pub fn decode_json_string(s: &[u8], out: &mut BytesMut) -> Option<usize> {
    let mut i = 0;
    loop {
        let k = memchr::memchr2(b'"', b'\\', &s[i..])?;
        out.extend_from_slice(&s[i..i + k]);
        i += k;
        if s[i] == b'"' {
            return Some(i + 1);
        }
        let esc = *s.get(i + 1)?;
        i += 2;
        let byte = match esc {
            b'n' => b'\n',
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b't' => b'\t',
            b'r' => b'\r',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let cp = match hi {
                    0xD800..=0xDBFF => match s.get(i..i + 6) {
                        Some([b'\\', b'u', lo @ ..]) => match hex4(lo) {
                            Some(lo @ 0xDC00..=0xDFFF) => {
                                i += 6;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            }
                            _ => 0xFFFD,
                        },
                        _ => 0xFFFD,
                    },
                    0xDC00..=0xDFFF => 0xFFFD,
                    cp => cp,
                };
                let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.put_u8(byte);
        // Docker's messages end in an escaped newline: the closing quote right after an
        // escape needs no search.
        if s.get(i) == Some(&b'"') {
            return Some(i + 1);
        }
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    if h.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &h[..4] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | d as u32;
    }
    Some(v)
}

/// The fallback for lines that are JSON but not in Docker's key order (hand-made files,
/// other writers of the format). `log` must be a string; a missing `stream` is `Unknown`, a
/// missing or unreadable `time` leaves the time to the caller.
fn parse_any_order(line: &[u8], out: &mut BytesMut, mark: usize) -> Option<Record> {
    #[derive(Deserialize)]
    struct AnyOrder<'a> {
        #[serde(borrow, default)]
        log: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        stream: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        time: Option<Cow<'a, str>>,
        #[serde(default)]
        attrs: Option<AttrsInOrder>,
    }
    let r: AnyOrder<'_> = serde_json::from_slice(line).ok()?;
    out.extend_from_slice(r.log?.as_bytes());
    let complete = out.len() > mark && out[out.len() - 1] == b'\n';
    if complete {
        out.truncate(out.len() - 1);
    }
    Some(Record {
        stream: match r.stream.as_deref() {
            Some("stdout") => Stream::Stdout,
            Some("stderr") => Stream::Stderr,
            _ => Stream::Unknown,
        },
        time_ns: r.time.and_then(|t| parse_rfc3339_nanos(t.as_bytes())),
        complete,
        attrs: r.attrs.map(|a| Arc::new(a.0)),
    })
}

/// `attrs` in file order (serde_json's map would sort the keys). Values are strings in
/// everything Docker writes; anything else is kept as its JSON text.
pub struct AttrsInOrder(pub Attrs);

impl<'de> Deserialize<'de> for AttrsInOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttrsInOrder;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttrsInOrder, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<String, serde_json::Value>()? {
                    let s = match val {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    v.push((k, s));
                }
                Ok(AttrsInOrder(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<(Record, String)> {
        let mut out = BytesMut::new();
        let mut p = LineParser::new();
        p.parse(line.as_bytes(), &mut out)
            .map(|r| (r, String::from_utf8(out.to_vec()).unwrap()))
    }

    const T: &str = "2026-11-25T13:04:22.901652423Z";
    const T_NS: i64 = 1_795_611_862_901_652_423;

    #[test]
    fn docker_lines() {
        let (r, m) = parse(&format!(
            r#"{{"log":"199998\n","stream":"stdout","time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "199998");
        assert_eq!(r.stream, Stream::Stdout);
        assert_eq!(r.time_ns, Some(T_NS));
        assert!(r.complete);
        assert!(r.attrs.is_none());

        let (r, m) =
            parse(r#"{"log":"nonl","stream":"stderr","time":"2026-11-25T13:05:25Z"}"#).unwrap();
        assert_eq!(m, "nonl");
        assert_eq!(r.stream, Stream::Stderr);
        assert!(!r.complete, "no trailing newline: a partial record");

        let (r, m) =
            parse(r#"{"log":"","stream":"stdout","time":"2026-11-25T13:05:25Z"}"#).unwrap();
        assert_eq!(m, "");
        assert!(!r.complete);
        let (r, m) =
            parse(r#"{"log":"\n","stream":"stdout","time":"2026-11-25T13:05:25Z"}"#).unwrap();
        assert_eq!(m, "");
        assert!(r.complete);
    }

    #[test]
    fn escapes() {
        let (_, m) = parse(&format!(
            r#"{{"log":"a\"b\\c\/d\te\rf\bg\fh\u003ci\u003ej\u0026k\n","stream":"stdout","time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "a\"b\\c/d\te\rf\u{8}g\u{c}h<i>j&k");
        // Only the last newline ends the line; inner ones are part of the message.
        let (r, m) = parse(&format!(
            r#"{{"log":"x\ny\n","stream":"stdout","time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "x\ny");
        assert!(r.complete);
    }

    #[test]
    fn unicode_escapes_and_surrogates() {
        let (_, m) = parse(&format!(
            r#"{{"log":"\u00e9\u4e2d\ud83d\ude00 \u0000end\n","stream":"stdout","time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "é中😀 \u{0}end");
        // Raw UTF-8 passes through untouched.
        let (_, m) = parse(&format!(
            "{{\"log\":\"héllo 😀\\n\",\"stream\":\"stdout\",\"time\":\"{T}\"}}"
        ))
        .unwrap();
        assert_eq!(m, "héllo 😀");
        // Lone surrogates become U+FFFD; the character after a lone high one is kept.
        let (_, m) = parse(&format!(
            r#"{{"log":"a\ud83db\ude00c\ud83d\u0041\n","stream":"stdout","time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "a\u{FFFD}b\u{FFFD}c\u{FFFD}A");
    }

    #[test]
    fn bad_escapes_are_malformed() {
        assert!(parse(&format!(
            r#"{{"log":"a\x","stream":"stdout","time":"{T}"}}"#
        ))
        .is_none());
        assert!(parse(&format!(
            r#"{{"log":"a\u12","stream":"stdout","time":"{T}"}}"#
        ))
        .is_none());
        assert!(parse(&format!(
            r#"{{"log":"a\u12zz","stream":"stdout","time":"{T}"}}"#
        ))
        .is_none());
    }

    #[test]
    fn attrs_in_file_order_and_shared_while_identical() {
        let line = format!(
            r#"{{"log":"x\n","stream":"stdout","attrs":{{"tag":"lab2","FOO":"bar","com.docker.compose.service":"web"}},"time":"{T}"}}"#
        );
        let mut out = BytesMut::new();
        let mut p = LineParser::new();
        let a = p.parse(line.as_bytes(), &mut out).unwrap();
        let b = p.parse(line.as_bytes(), &mut out).unwrap();
        let attrs = a.attrs.clone().unwrap();
        assert_eq!(
            *attrs,
            vec![
                ("tag".to_string(), "lab2".to_string()),
                ("FOO".to_string(), "bar".to_string()),
                ("com.docker.compose.service".to_string(), "web".to_string()),
            ]
        );
        assert!(Arc::ptr_eq(&attrs, b.attrs.as_ref().unwrap()));
        assert_eq!(&out[..], b"xx");
        assert_eq!(a.time_ns, Some(T_NS));

        // A value containing `,"time":"` (escaped in JSON) does not confuse the scan.
        let (r, m) = parse(&format!(
            r#"{{"log":"y\n","stream":"stdout","attrs":{{"k":"v\",\"time\":\"}}"}},"time":"{T}"}}"#
        ))
        .unwrap();
        assert_eq!(m, "y");
        assert_eq!(r.attrs.unwrap()[0].1, r#"v","time":"}"#);
    }

    #[test]
    fn other_key_order_and_missing_fields() {
        let (r, m) = parse(&format!(
            r#"{{"time":"{T}","stream":"stderr","log":"reordered\n"}}"#
        ))
        .unwrap();
        assert_eq!(
            (m.as_str(), r.stream, r.time_ns),
            ("reordered", Stream::Stderr, Some(T_NS))
        );
        let (r, m) = parse(r#"{"log":"no stream, no time\n"}"#).unwrap();
        assert_eq!(m, "no stream, no time");
        assert_eq!((r.stream, r.time_ns), (Stream::Unknown, None));
        let (r, _) = parse(r#"{"log":"bad time\n","stream":"stdout","time":"yesterday"}"#).unwrap();
        assert_eq!(r.time_ns, None);
        let (r, _) = parse(&format!(
            r#"{{"log":"extra\n","stream":"stdout","time":"{T}","extra":1}}"#
        ))
        .unwrap();
        assert_eq!(r.time_ns, Some(T_NS));
        // Without `log` there is no message: malformed.
        assert!(parse(&format!(r#"{{"stream":"stdout","time":"{T}"}}"#)).is_none());
        assert!(parse(&format!(r#"{{"log":5,"stream":"stdout","time":"{T}"}}"#)).is_none());
    }

    #[test]
    fn garbage_is_malformed_and_leaves_the_buffer_alone() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let mut p = LineParser::new();
        for bad in [
            &b""[..],
            b"plain text",
            b"{",
            b"{\"log\":\"unterminated",
            b"{\"log\":\"x\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22Z\"",
            b"{\"log\":\"half{\"log\":\"x\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22Z\"}",
            b"\0\0\0\0",
            b"[1,2,3]",
        ] {
            assert!(p.parse(bad, &mut out).is_none(), "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(&out[..], b"keep");
        }
    }

    #[test]
    fn messages_append_to_one_shared_buffer() {
        let mut out = BytesMut::new();
        let mut p = LineParser::new();
        for i in 0..3 {
            let line = format!(r#"{{"log":"line {i}\n","stream":"stdout","time":"{T}"}}"#);
            p.parse(line.as_bytes(), &mut out).unwrap();
        }
        assert_eq!(&out[..], b"line 0line 1line 2");
    }
}
