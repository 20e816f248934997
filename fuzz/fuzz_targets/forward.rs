//! The Forward protocol decoder (collector/src/sources/fluent/{msgpack,decode,partial,
//! record,handshake}.rs): a connection's byte stream cut into messages by `value_len` and
//! decoded as the connection does, Docker's partial records joined.
//!
//! Input: a mode byte, then data.
//! - mode 0: the data is the stream, as received;
//! - mode 1: the data is the entries of a CompressedPackedForward message, gzipped here (the
//!   fuzzer rarely writes valid gzip itself), so the decompressed entries are fuzzed too;
//! - mode 2: the data is a handshake message (HELO, PING, PONG), parsed by all three readers.
//!
//! Invariants: no panic; a message never reads past its frame; what enters an event as a
//! container id is empty or Docker's 64-hex form and a container name has no control
//! characters (the trust boundary, collector/src/untrusted.rs); a line joined from partial
//! records is at most `max_line_bytes`.
#![no_main]

use bytes::Bytes;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use logwharf_collector::event::{Event, EventFlags};
use logwharf_collector::sources::fluent::decode::{ForwardDecoder, Limits};
use logwharf_collector::sources::fluent::handshake;
use logwharf_collector::sources::fluent::msgpack::{value_len, MpError};
use logwharf_collector::sources::fluent::partial::Partials;
use logwharf_fuzz::assert_trusted_container;
use std::io::Write;
use std::time::Duration;

const MAX_MESSAGE: usize = 64 << 10;
const MAX_DECOMPRESSED: usize = 256 << 10;
const MAX_LINE: usize = 1024;

fn check(events: &[Event]) {
    for ev in events {
        if let Some(c) = &ev.container {
            assert_trusted_container(c);
        }
        if ev.flags.contains(EventFlags::TRUNCATED) {
            assert!(
                ev.message.len() <= MAX_LINE,
                "joined {} bytes",
                ev.message.len()
            );
        }
    }
}

fn decoder() -> ForwardDecoder {
    ForwardDecoder::new(
        Limits {
            max_message: MAX_MESSAGE,
            max_decompressed: MAX_DECOMPRESSED,
        },
        Partials::new("fuzz".into(), MAX_LINE, Duration::from_secs(60)),
    )
}

/// Decodes a stream as `conn.rs` does: message after message until one is bad or incomplete.
fn stream(data: &[u8]) {
    let mut d = decoder();
    let mut out = Vec::new();
    let mut rest = Bytes::copy_from_slice(data);
    while !rest.is_empty() {
        match value_len(&rest, MAX_MESSAGE) {
            Ok(n) => {
                assert!(
                    n > 0 && n <= rest.len() && n <= MAX_MESSAGE,
                    "value_len {n}"
                );
                let frame = rest.split_to(n);
                if d.decode(&frame, &mut out).is_err() {
                    break;
                }
            }
            Err(MpError::Incomplete { need }) => {
                if let Some(need) = need {
                    assert!(need > rest.len() && need <= MAX_MESSAGE, "need {need}");
                }
                break;
            }
            Err(_) => break,
        }
    }
    d.partials.flush_all(&mut out);
    check(&out);
}

/// `["t", bin(gzip(entries)), {"compressed": "gzip"}]`.
fn compressed_message(entries: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(entries).unwrap();
    let z = gz.finish().unwrap();
    let mut m = vec![0x93, 0xa1, b't', 0xc6];
    m.extend_from_slice(&(z.len() as u32).to_be_bytes());
    m.extend_from_slice(&z);
    m.push(0x81);
    m.push(0xa0 | 10);
    m.extend_from_slice(b"compressed");
    m.push(0xa0 | 4);
    m.extend_from_slice(b"gzip");
    m
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stream(data),
        1 => {
            let m = Bytes::from(compressed_message(data));
            let mut out = Vec::new();
            let mut d = decoder();
            let _ = d.decode(&m, &mut out);
            d.partials.flush_all(&mut out);
            check(&out);
        }
        _ => {
            let _ = handshake::parse_helo(data);
            if let Ok(Some(p)) = handshake::parse_ping(data) {
                let _ = handshake::ping_is_valid(&p, b"nonce", "key");
            }
            let _ = handshake::check_pong(data, b"salt", b"nonce", "key");
        }
    }
});
