//! Event encoders shared by every sink: `json` (logwharf's event object), `docker` (Docker's
//! json-file line, byte for byte), `text` (for people) and `raw` (the message only).
//!
//! An [`Encoder`] appends straight into the caller's output buffer — no intermediate
//! `serde_json::Value`, no per-event allocation — so a sink encodes a whole batch into one
//! buffer and writes it with one syscall. [`Encoder::encode`] writes one event without framing
//! (a Kafka value, a syslog MSG); [`Encoder::encode_line`] adds the `\n` that line-oriented
//! sinks (console, file) put after each event.
//!
//! JSON strings go through [`write_json_string`], a table-driven escaper with three styles:
//! standard RFC 8259 escaping for logwharf's own JSON, and the two flavours Docker writes
//! (its json-file `log` writer and Go's `encoding/json` for `attrs`).

use logwharf_collector::time::{write_rfc3339, Fraction};
use logwharf_collector::{Event, EventFlags};
use logwharf_config::Encoding;
use std::collections::BTreeMap;

/// Encodes events in one of the configured [`Encoding`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    encoding: Encoding,
}

impl Encoder {
    pub fn new(encoding: Encoding) -> Encoder {
        Encoder { encoding }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Appends `event` (read by the source named `source`) to `out`, without a trailing newline.
    pub fn encode(&self, source: &str, event: &Event, out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Json => encode_json(source, event, out),
            Encoding::Docker => encode_docker(event, out),
            Encoding::Text => encode_text(event, out),
            Encoding::Raw => out.extend_from_slice(&event.message),
        }
    }

    /// As [`Encoder::encode`], followed by `\n`.
    pub fn encode_line(&self, source: &str, event: &Event, out: &mut Vec<u8>) {
        self.encode(source, event, out);
        out.push(b'\n');
    }
}

/// logwharf's JSON event: fixed public field names, metadata only when known, flags only when
/// set.
fn encode_json(source: &str, event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, event.time_ns, Fraction::Nanos);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(event.stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    write_json_string(out, &event.message, JsonStyle::Standard);
    if let Some(c) = &event.container {
        out.extend_from_slice(b",\"container_id\":");
        write_json_string(out, c.id.as_bytes(), JsonStyle::Standard);
    }
    out.extend_from_slice(b",\"source\":");
    write_json_string(out, source.as_bytes(), JsonStyle::Standard);
    if let Some(c) = &event.container {
        opt_string(out, b"container_name", c.name.as_deref());
        opt_string(out, b"image_name", c.image_name.as_deref());
        opt_string(out, b"image_id", c.image_id.as_deref());
        if !c.labels.is_empty() {
            out.extend_from_slice(b",\"labels\":");
            write_json_map(out, &c.labels);
        }
        opt_string(out, b"compose_project", c.compose_project.as_deref());
        opt_string(out, b"compose_service", c.compose_service.as_deref());
    }
    // The rendered tag: Docker's own (attrs, `--log-opt tag=…`), else the one logwharf
    // rendered for the container once (source `tag` option or `logwharf.tag` label).
    let attr_tag = event.attrs.as_ref().and_then(|attrs| {
        attrs
            .iter()
            .find(|(k, _)| k == "tag")
            .map(|(_, v)| v.as_str())
    });
    let tag = attr_tag.or_else(|| event.container.as_ref().and_then(|c| c.tag.as_deref()));
    opt_string(out, b"tag", tag);
    if let Some(c) = &event.container {
        if !c.env.is_empty() {
            out.extend_from_slice(b",\"env\":");
            write_json_map(out, &c.env);
        }
    }
    if let Some(attrs) = &event.attrs {
        out.extend_from_slice(b",\"attrs\":");
        write_json_pairs(out, attrs, JsonStyle::Standard);
    }
    if let Some(fields) = &event.fields {
        out.extend_from_slice(b",\"fields\":");
        // Rare path (syslog/forward extras): serde_json's writer into a Vec cannot fail.
        serde_json::to_writer(&mut *out, &**fields).expect("writing JSON into a Vec");
    }
    if event.flags.contains(EventFlags::MALFORMED) {
        out.extend_from_slice(b",\"malformed\":true");
    }
    if event.flags.contains(EventFlags::PARTIAL) {
        out.extend_from_slice(b",\"partial\":true");
    }
    if event.flags.contains(EventFlags::TRUNCATED) {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.push(b'}');
}

fn opt_string(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(v) = value {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        write_json_string(out, v.as_bytes(), JsonStyle::Standard);
    }
}

fn write_json_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(out, k.as_bytes(), JsonStyle::Standard);
        out.push(b':');
        write_json_string(out, v.as_bytes(), JsonStyle::Standard);
    }
    out.push(b'}');
}

fn write_json_pairs(out: &mut Vec<u8>, pairs: &[(String, String)], style: JsonStyle) {
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(out, k.as_bytes(), style);
        out.push(b':');
        write_json_string(out, v.as_bytes(), style);
    }
    out.push(b'}');
}

/// Docker's json-file line (moby `jsonlog.JSONLogs.MarshalJSONBuf`): keys `log`, `stream`,
/// (`attrs`), `time`; `log` ends in `\n` unless the record is partial.
fn encode_docker(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"log\":");
    let newline = !event.flags.contains(EventFlags::PARTIAL);
    write_json_string_with(out, &event.message, JsonStyle::DockerLog, newline);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(event.stream.as_str().as_bytes());
    out.push(b'"');
    if let Some(attrs) = event.attrs.as_deref().filter(|a| !a.is_empty()) {
        out.extend_from_slice(b",\"attrs\":");
        write_json_pairs(out, attrs, JsonStyle::Go);
    }
    out.extend_from_slice(b",\"time\":\"");
    write_rfc3339(out, event.time_ns, Fraction::NanosTrimmed);
    out.extend_from_slice(b"\"}");
}

/// `TIME CONTAINER STREAM MESSAGE`: the container's name, else its short id, else `-`.
fn encode_text(event: &Event, out: &mut Vec<u8>) {
    write_rfc3339(out, event.time_ns, Fraction::Nanos);
    out.push(b' ');
    let who = match &event.container {
        Some(c) => c.name.as_deref().unwrap_or_else(|| c.short_id()),
        None => "-",
    };
    out.extend_from_slice(if who.is_empty() { "-" } else { who }.as_bytes());
    out.push(b' ');
    out.extend_from_slice(event.stream.as_str().as_bytes());
    out.push(b' ');
    if std::str::from_utf8(&event.message).is_ok() {
        out.extend_from_slice(&event.message);
        return;
    }
    for chunk in event.message.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        for _ in chunk.invalid() {
            out.extend_from_slice(REPLACEMENT_UTF8);
        }
    }
}

/// How [`write_json_string`] escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// RFC 8259 as serde_json writes it: `\"` `\\` `\n` `\r` `\t` `\b` `\f`, other control
    /// characters as `\u00XX`, everything else literal; each invalid UTF-8 byte becomes U+FFFD.
    Standard,
    /// Docker's json-file `log` writer: `\"` `\\` `\n` `\r`, every other control character
    /// and `<` `>` `&` as `\u00XX`, U+2028/U+2029 as `\u2028`/`\u2029`, each invalid UTF-8 byte
    /// as the text `\ufffd`.
    DockerLog,
    /// Go's `encoding/json` as Docker 20.10 was built with it (Docker's `attrs`): as
    /// [`JsonStyle::DockerLog`], plus `\t`.
    Go,
}

/// Appends `bytes` as a quoted JSON string.
pub fn write_json_string(out: &mut Vec<u8>, bytes: &[u8], style: JsonStyle) {
    write_json_string_with(out, bytes, style, false);
}

/// As [`write_json_string`], with an escaped `\n` appended inside the quotes when `newline`.
fn write_json_string_with(out: &mut Vec<u8>, bytes: &[u8], style: JsonStyle, newline: bool) {
    let (table, replacement): (&[u8; 256], &[u8]) = match style {
        JsonStyle::Standard => (&STANDARD, REPLACEMENT_UTF8),
        JsonStyle::DockerLog => (&DOCKER_LOG, b"\\ufffd"),
        JsonStyle::Go => (&GO, b"\\ufffd"),
    };
    out.reserve(bytes.len() + 2 + 2 * newline as usize);
    out.push(b'"');
    let go = style != JsonStyle::Standard;
    // Valid UTF-8 is the rule, and ASCII most of it: the ASCII prefix is escaped in the same
    // pass that checks it; from its first other byte on (a character boundary), std's
    // validator (word-at-a-time) decides.
    let ascii = if go {
        escape_valid::<true, true>(out, bytes, table)
    } else {
        escape_valid::<false, true>(out, bytes, table)
    };
    let rest = &bytes[ascii..];
    if !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) if go => _ = escape_valid::<true, false>(out, s.as_bytes(), table),
            Ok(s) => _ = escape_valid::<false, false>(out, s.as_bytes(), table),
            Err(_) => {
                for chunk in rest.utf8_chunks() {
                    let valid = chunk.valid().as_bytes();
                    if go {
                        escape_valid::<true, false>(out, valid, table);
                    } else {
                        escape_valid::<false, false>(out, valid, table);
                    }
                    for _ in chunk.invalid() {
                        out.extend_from_slice(replacement);
                    }
                }
            }
        }
    }
    if newline {
        out.extend_from_slice(b"\\n");
    }
    out.push(b'"');
}

const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();

/// Table entry: copy the byte as it is.
const LIT: u8 = 0;
/// Table entry: write `\u00XX`.
const HEX: u8 = b'u';
/// Table entry: the lead byte of U+2028/U+2029 (Go styles only); the next two bytes decide.
const E2: u8 = 1;

const fn table(short_tab_bf: bool, go: bool) -> [u8; 256] {
    let mut t = [LIT; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = HEX;
        i += 1;
    }
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    if short_tab_bf {
        t[b'\t' as usize] = b't';
        t[0x08] = b'b';
        t[0x0c] = b'f';
    }
    if go {
        t[b'<' as usize] = HEX;
        t[b'>' as usize] = HEX;
        t[b'&' as usize] = HEX;
        t[0xE2] = E2;
    }
    t
}

static STANDARD: [u8; 256] = table(true, false);
static DOCKER_LOG: [u8; 256] = table(false, true);
static GO: [u8; 256] = {
    let mut t = table(false, true);
    t[b'\t' as usize] = b't';
    t
};

/// True when one of the 8 bytes in `w` may need escaping: a control character, `"` or `\`,
/// and with `GO` also `<` `>` `&` and 0xE2 (the lead byte of U+2028/U+2029). Never false when
/// such a byte is there (SWAR "has byte less than / equal to"; the bytes are then looked up
/// one by one, so a rare false positive costs only time).
#[inline(always)]
fn any_special<const GO: bool>(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn has_byte(w: u64, b: u8) -> u64 {
        let x = w ^ (ONES * b as u64);
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let mut m = control | has_byte(w, b'"') | has_byte(w, b'\\');
    if GO {
        m |= has_byte(w, b'<') | has_byte(w, b'>') | has_byte(w, b'&') | has_byte(w, 0xE2);
    }
    m != 0
}

/// Escapes valid UTF-8 `s` by `table`, copying unescaped runs in one piece; skips 8 bytes at a
/// time while none of them needs escaping. With `ASCII`, `s` may be any bytes: it stops before
/// the first byte that is not ASCII. The bytes it took.
fn escape_valid<const GO: bool, const ASCII: bool>(
    out: &mut Vec<u8>,
    s: &[u8],
    table: &[u8; 256],
) -> usize {
    const HEXDIGITS: &[u8; 16] = b"0123456789abcdef";
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        while let Some(w) = s.get(i..i + 8) {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            if any_special::<GO>(w) || (ASCII && w & HIGH != 0) {
                break;
            }
            i += 8;
        }
        let stop = (i + 8).min(s.len());
        while i < stop {
            let b = s[i];
            if ASCII && !b.is_ascii() {
                out.extend_from_slice(&s[start..i]);
                return i;
            }
            let e = table[b as usize];
            if e == LIT {
                i += 1;
                continue;
            }
            if e == E2 {
                // U+2028 is E2 80 A8, U+2029 is E2 80 A9 (s is valid UTF-8: both bytes exist).
                if s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9) {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\u202");
                    out.push(if s[i + 2] == 0xA8 { b'8' } else { b'9' });
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            if e == HEX {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEXDIGITS[(b >> 4) as usize],
                    HEXDIGITS[(b & 0xF) as usize],
                ]);
            } else {
                out.extend_from_slice(&[b'\\', e]);
            }
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&s[start..]);
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{ContainerMeta, Stream};
    use std::sync::Arc;

    const T: i64 = 1_795_611_862_901_652_423; // 2026-11-25T13:04:22.901652423Z
    const ID: &str = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5";

    fn ev(msg: &[u8]) -> Event {
        Event::new(T, Stream::Stdout, Bytes::copy_from_slice(msg))
    }

    fn enc(e: Encoding, event: &Event) -> String {
        let mut out = Vec::new();
        Encoder::new(e).encode("containers", event, &mut out);
        String::from_utf8(out).expect("encoders write UTF-8")
    }

    fn full_meta() -> Arc<ContainerMeta> {
        Arc::new(ContainerMeta {
            id: ID.to_string(),
            name: Some("web".into()),
            image_name: Some("nginx:1.25".into()),
            image_id: Some("sha256:0123456789abcdef".into()),
            labels: [("com.docker.compose.service".to_string(), "web".to_string())].into(),
            env: [("FOO".to_string(), "bar".to_string())].into(),
            compose_project: Some("shop".into()),
            compose_service: Some("web".into()),
            log_driver: Some("json-file".into()),
            ..Default::default()
        })
    }

    #[test]
    fn json_minimal() {
        assert_eq!(
            enc(Encoding::Json, &ev(b"hello")),
            r#"{"time":"2026-11-25T13:04:22.901652423Z","stream":"stdout","message":"hello","source":"containers"}"#
        );
    }

    #[test]
    fn json_full() {
        let mut e = ev(b"GET / 200");
        e.stream = Stream::Stderr;
        e.container = Some(full_meta());
        e.attrs = Some(Arc::new(vec![
            ("FOO".to_string(), "bar".to_string()),
            ("tag".to_string(), "lab2".to_string()),
        ]));
        let mut fields = serde_json::Map::new();
        fields.insert("facility".into(), serde_json::json!("daemon"));
        fields.insert("n".into(), serde_json::json!(3));
        e.fields = Some(Box::new(fields));
        e.flags.insert(EventFlags::MALFORMED);
        e.flags.insert(EventFlags::PARTIAL);
        e.flags.insert(EventFlags::TRUNCATED);
        let expected = concat!(
            r#"{"time":"2026-11-25T13:04:22.901652423Z","stream":"stderr","message":"GET / 200","#,
            r#""container_id":"d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5","#,
            r#""source":"containers","container_name":"web","image_name":"nginx:1.25","#,
            r#""image_id":"sha256:0123456789abcdef","labels":{"com.docker.compose.service":"web"},"#,
            r#""compose_project":"shop","compose_service":"web","tag":"lab2","env":{"FOO":"bar"},"#,
            r#""attrs":{"FOO":"bar","tag":"lab2"},"fields":{"facility":"daemon","n":3},"#,
            r#""malformed":true,"partial":true,"truncated":true}"#
        );
        let got = enc(Encoding::Json, &e);
        assert_eq!(got, expected);
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["labels"]["com.docker.compose.service"], "web");
    }

    #[test]
    fn json_escapes_and_invalid_utf8() {
        let e = ev(b"q\"b\\s/\n\r\t\x08\x0c\x00\x1f<&>\xe2\x80\xa8 \xff\xe2\x82 \xc3\xa9");
        let got = enc(Encoding::Json, &e);
        assert_eq!(
            got,
            "{\"time\":\"2026-11-25T13:04:22.901652423Z\",\"stream\":\"stdout\",\"message\":\
             \"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0000\\u001f<&>\u{2028} \u{FFFD}\u{FFFD}\u{FFFD} é\",\
             \"source\":\"containers\"}"
        );
        // What serde_json makes of it is the lossy message.
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            v["message"],
            "q\"b\\s/\n\r\t\u{8}\u{c}\u{0}\u{1f}<&>\u{2028} \u{FFFD}\u{FFFD}\u{FFFD} é"
        );
    }

    #[test]
    fn json_string_matches_serde_json_for_valid_text() {
        let mut all = String::new();
        for c in (0u32..0x300).chain([0x2028, 0x2029, 0xFFFD, 0x1F600]) {
            all.push(char::from_u32(c).unwrap());
        }
        let mut out = Vec::new();
        write_json_string(&mut out, all.as_bytes(), JsonStyle::Standard);
        assert_eq!(out, serde_json::to_vec(&all).unwrap());
    }

    /// A plain char-by-char escaper to check the table/SWAR one against.
    fn reference(bytes: &[u8], style: JsonStyle) -> Vec<u8> {
        let go = style != JsonStyle::Standard;
        let mut out = String::from("\"");
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' if style != JsonStyle::DockerLog => out.push_str("\\t"),
                    '\u{8}' if !go => out.push_str("\\b"),
                    '\u{c}' if !go => out.push_str("\\f"),
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if go => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            for _ in chunk.invalid() {
                out.push_str(if go { "\\ufffd" } else { "\u{FFFD}" });
            }
        }
        out.push('"');
        out.into_bytes()
    }

    #[test]
    fn escaper_matches_reference_on_random_input() {
        let alphabet: &[&[u8]] = &[
            b"a",
            b"Z",
            b"0",
            b" ",
            b"\"",
            b"\\",
            b"\n",
            b"\r",
            b"\t",
            b"\x00",
            b"\x1f",
            b"\x7f",
            b"<",
            b">",
            b"&",
            "é".as_bytes(),
            "€".as_bytes(),
            "\u{2028}".as_bytes(),
            "\u{2029}".as_bytes(),
            "\u{2027}".as_bytes(),
            "\u{1F600}".as_bytes(),
            b"\xff",
            b"\xe2",
            b"\xe2\x80",
            b"\xc3",
            b"abcdefgh",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let len = (next() % 40) as usize;
            let mut input = Vec::new();
            for _ in 0..len {
                // Mostly plain text, so the 8-byte skip gets exercised.
                let r = next();
                let piece = if r % 4 == 0 {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                } else {
                    &b"plain txt"[..1 + (r >> 8) as usize % 9]
                };
                input.extend_from_slice(piece);
            }
            for style in [JsonStyle::Standard, JsonStyle::DockerLog, JsonStyle::Go] {
                let mut out = Vec::new();
                write_json_string(&mut out, &input, style);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&reference(&input, style)),
                    "{style:?} {input:?}"
                );
            }
        }
    }

    #[test]
    fn docker_line() {
        assert_eq!(
            enc(Encoding::Docker, &ev(b"199998")),
            r#"{"log":"199998\n","stream":"stdout","time":"2026-11-25T13:04:22.901652423Z"}"#
        );
    }

    #[test]
    fn docker_line_with_attrs_partial_and_trimmed_time() {
        let mut e = ev(b"nonl");
        e.time_ns = 1_795_611_925_793_805_100;
        e.flags.insert(EventFlags::PARTIAL);
        e.attrs = Some(Arc::new(vec![
            ("FOO".to_string(), "bar".to_string()),
            ("com.docker.compose.service".to_string(), "web".to_string()),
            ("tag".to_string(), "lab2".to_string()),
        ]));
        assert_eq!(
            enc(Encoding::Docker, &e),
            r#"{"log":"nonl","stream":"stdout","attrs":{"FOO":"bar","com.docker.compose.service":"web","tag":"lab2"},"time":"2026-11-25T13:05:25.7938051Z"}"#
        );
        e.time_ns = 1_795_611_925_000_000_000;
        e.attrs = Some(Arc::new(Vec::new()));
        assert_eq!(
            enc(Encoding::Docker, &e),
            r#"{"log":"nonl","stream":"stdout","time":"2026-11-25T13:05:25Z"}"#
        );
    }

    #[test]
    fn docker_escapes_like_moby() {
        let mut e = ev(b"<a href=\"x\">&amp;</a>\t\\\r\x01\x7f\xe2\x80\xa9\xe2\x82\xac\xff\xfe");
        e.stream = Stream::Stderr;
        e.attrs = Some(Arc::new(vec![("k<\t".to_string(), "v&\n".to_string())]));
        assert_eq!(
            enc(Encoding::Docker, &e),
            concat!(
                r#"{"log":"\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e\u0009\\\r\u0001"#,
                "\x7f",
                r#"\u2029€\ufffd\ufffd\n","stream":"stderr","attrs":{"k\u003c\t":"v\u0026\n"},"#,
                r#""time":"2026-11-25T13:04:22.901652423Z"}"#
            )
        );
    }

    #[test]
    fn docker_line_is_read_back_by_serde_json() {
        let e = ev("päth <x> \u{2028} \u{1F600}".as_bytes());
        let got = enc(Encoding::Docker, &e);
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["log"], "päth <x> \u{2028} \u{1F600}\n");
    }

    #[test]
    fn text_lines() {
        let mut e = ev(b"hello \xffworld");
        assert_eq!(
            enc(Encoding::Text, &e),
            "2026-11-25T13:04:22.901652423Z - stdout hello \u{FFFD}world"
        );
        e.container = Some(Arc::new(ContainerMeta::from_id(ID)));
        e.stream = Stream::Stderr;
        assert_eq!(
            enc(Encoding::Text, &e),
            "2026-11-25T13:04:22.901652423Z d2ae8d3a9846 stderr hello \u{FFFD}world"
        );
        e.container = Some(full_meta());
        assert_eq!(
            enc(Encoding::Text, &e),
            "2026-11-25T13:04:22.901652423Z web stderr hello \u{FFFD}world"
        );
    }

    #[test]
    fn raw_and_lines() {
        let e = ev(b"a\xffb\"");
        let mut out = Vec::new();
        Encoder::new(Encoding::Raw).encode_line("s", &e, &mut out);
        Encoder::new(Encoding::Raw).encode("s", &e, &mut out);
        assert_eq!(out, b"a\xffb\"\na\xffb\"");
    }
}
