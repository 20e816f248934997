//! Syslog framing and parsing (collector/src/sources/syslog/{framing,parse}.rs): a stream cut
//! into frames (octet-counted or newline-framed, detected per frame) as it arrives in reads of
//! any size, each frame parsed into an event.
//!
//! Input: two control bytes (`max_frame`, the read sizes), then the stream.
//! Invariants: no panic; no frame is longer than `max_frame` and the buffer never holds more
//! than that (plus a pending octet count); the frames do not depend on how the stream was cut
//! into reads; the header fields that reach an event have no control characters; when the
//! RFC 5424 fast path takes a frame, `syslog_loose` reads it the same.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use logwharf_collector::sources::syslog::framing::{Frame, FrameError, Framer};
use logwharf_collector::sources::syslog::parse::{fast_5424, parse_frame};
use logwharf_fuzz::{chunks, split_control};

const NOW: i64 = 1_795_611_862_000_000_000;

fn frames(max: usize, reads: &[&[u8]]) -> Vec<Result<Frame, FrameError>> {
    let mut f = Framer::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for r in reads {
        buf.extend_from_slice(r);
        f.decode(&mut buf, &mut |x| out.push(x));
        assert!(
            buf.len() <= max.max(9),
            "{} bytes buffered, max_frame {max}",
            buf.len()
        );
    }
    f.finish(&mut buf, &mut |x| out.push(x));
    assert!(buf.is_empty());
    out
}

fn check_fast_path(text: &str) {
    let Some(fast) = fast_5424(text) else { return };
    let slow =
        syslog_loose::parse_message_with_year(text, |_| 2026, syslog_loose::Variant::RFC5424);
    if fast.time_ns.is_none() {
        return; // a NILVALUE timestamp, which syslog_loose does not take (see parse.rs)
    }
    if slow.facility.is_none() {
        // syslog_loose refuses some headers the fast path takes (found by this target: APP-NAME
        // ":" with PROCID "bs=====…1"; an APP-NAME over RFC 5424's 48 characters, which the
        // fast path, lenient like rsyslog, keeps): then its fields must still be header
        // tokens, printable ASCII without spaces.
        let token = |f: Option<&str>| {
            f.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b)))
        };
        for f in [fast.hostname, fast.appname, fast.procid, fast.msgid] {
            assert!(token(f), "{f:?} in {text:?}");
        }
        return;
    }
    assert_eq!(Some(fast.facility), slow.facility, "{text:?}");
    assert_eq!(Some(fast.severity), slow.severity, "{text:?}");
    assert_eq!(
        fast.time_ns,
        slow.timestamp.and_then(|t| t.timestamp_nanos_opt()),
        "{text:?}"
    );
    assert_eq!(fast.hostname, slow.hostname, "{text:?}");
    assert_eq!(fast.appname, slow.appname, "{text:?}");
    assert_eq!(
        fast.procid.map(syslog_loose::ProcId::from),
        slow.procid,
        "{text:?}"
    );
    assert_eq!(fast.msgid, slow.msgid, "{text:?}");
    assert_eq!(fast.msg, slow.msg, "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    let ([max_b, size_b], stream) = split_control::<2>(data);
    // From 9, the longest octet count the framer waits for (the config's minimum is 480).
    let max = 9 + max_b as usize * 2;
    let sizes = [size_b, size_b.rotate_left(3), 1];
    let whole = frames(max, &[stream]);
    let cut = frames(max, &chunks(stream, &sizes));
    assert_eq!(whole, cut, "framing depends on how the stream was read");
    let mut total = 0;
    for f in whole.into_iter().flatten() {
        assert!(
            f.data.len() <= max,
            "frame of {} bytes, max_frame {max}",
            f.data.len()
        );
        total += f.data.len();
        let (ev, _) = parse_frame(&f.data, "127.0.0.1:514", NOW);
        for k in ["hostname", "appname", "procid", "msgid"] {
            if let Some(serde_json::Value::String(v)) = ev.fields.as_ref().and_then(|m| m.get(k)) {
                assert!(!v.chars().any(char::is_control), "{k} {v:?}");
            }
        }
        if let Ok(text) = std::str::from_utf8(&f.data) {
            check_fast_path(text);
        }
    }
    assert!(total <= stream.len());
});
