//! The `kafka` source's message decoder (collector/src/sources/kafka/decode.rs): a message
//! value and its headers, as another agent's `kafka` sink (or anything else that can write
//! the topic) produced them, → one event, for each `decoding`.
//!
//! Input: a mode byte (bits 0–1: `json` | `docker` | `raw`; bit 2: the message has a
//! timestamp, the next 8 bytes), then pieces split at 0xFF: the value first, then header
//! names and values in turn. Three messages are decoded by one decoder when the input holds
//! more than one value (pieces after a 0xFE byte), so the container cache is exercised.
//!
//! Invariants: no panic; a value that does not decode is passed on unchanged and flagged
//! malformed; `raw` never fails and keeps the value; a `docker` message is never longer than
//! its line; what enters an event as a container id is empty or Docker's 64-hex form and a
//! name has no control characters (the trust boundary, collector/src/untrusted.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logwharf_collector::event::EventFlags;
use logwharf_collector::sources::kafka::config::Decoding;
use logwharf_collector::sources::kafka::decode::{MessageDecoder, MessageMeta};
use logwharf_fuzz::assert_trusted_container;

fn message(d: &mut MessageDecoder, decoding: Decoding, data: &[u8], timestamp_ms: Option<i64>) {
    let mut pieces = data.split(|&b| b == 0xff);
    let value = pieces.next();
    let names: Vec<(String, &[u8])> = {
        let mut v = Vec::new();
        while let Some(k) = pieces.next() {
            v.push((
                String::from_utf8_lossy(k).into_owned(),
                pieces.next().unwrap_or(b""),
            ));
        }
        v
    };
    let headers: Vec<(&str, &[u8])> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let decoded = d.decode(
        value,
        MessageMeta {
            timestamp_ms,
            headers: &headers,
        },
    );
    let value = value.unwrap_or_default();
    let ev = &decoded.event;
    if decoded.error.is_some() {
        assert_eq!(&ev.message[..], value, "a bad value is passed on as it is");
        assert!(ev.flags.contains(EventFlags::MALFORMED));
    }
    match decoding {
        Decoding::Raw => {
            assert!(decoded.error.is_none());
            assert_eq!(&ev.message[..], value);
        }
        Decoding::Docker => assert!(ev.message.len() <= value.len()),
        Decoding::Json => {}
    }
    if let Some(c) = &ev.container {
        assert_trusted_container(c);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut data)) = data.split_first() else {
        return;
    };
    let decoding = match mode & 3 {
        0 => Decoding::Json,
        1 => Decoding::Docker,
        _ => Decoding::Raw,
    };
    let mut timestamp_ms = None;
    if mode & 4 != 0 && data.len() >= 8 {
        let (t, rest) = data.split_at(8);
        timestamp_ms = Some(i64::from_le_bytes(t.try_into().unwrap()));
        data = rest;
    }
    let mut d = MessageDecoder::new(decoding);
    for m in data.split(|&b| b == 0xfe).take(3) {
        message(&mut d, decoding, m, timestamp_ms);
    }
});
