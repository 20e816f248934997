//! The json-file line parser and Docker's partial-record reassembly, fed line by line as the
//! tailer does (collector/src/sources/docker_json_file/{parser,partial}.rs).
//!
//! Input: two control bytes (the line cap, the partial timeout in ticks), then the file.
//! Invariants: no panic; a line that does not parse leaves the batch buffer as it was; a
//! decoded message is never longer than its line; every joined line is at most the cap, is
//! exactly the concatenation of its group's chunks unless flagged `TRUNCATED` (then a prefix
//! of it); the bytes shipped never exceed the bytes read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use logwharf_collector::event::{EventFlags, Stream};
use logwharf_collector::sources::docker_json_file::parser::LineParser;
use logwharf_collector::sources::docker_json_file::partial::{Joined, PartialAssembler};
use logwharf_collector::sources::docker_json_file::position::ResumePoint;
use logwharf_collector::tail::file::FileIdentity;
use logwharf_collector::tail::fingerprint::Fingerprint;
use logwharf_fuzz::split_control;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stream's assembler and the fuzz target's model of the group it is joining.
struct Slot {
    asm: PartialAssembler,
    /// Every chunk of the open group, uncut.
    pending: Vec<u8>,
    /// The open line went over the cap: its chunks are being dropped.
    discarding: bool,
}

fn check(j: &Joined, pending: &[u8], cap: usize, shipped: &mut usize) {
    assert!(
        j.message.len() <= cap,
        "joined {} > cap {cap}",
        j.message.len()
    );
    assert!(
        pending.starts_with(&j.message),
        "joined text is not its chunks"
    );
    if !j.flags.contains(EventFlags::TRUNCATED) {
        assert_eq!(&j.message[..], pending, "an uncut line lost bytes");
    }
    *shipped += j.message.len();
}

fuzz_target!(|data: &[u8]| {
    let ([cap_b, timeout_b], file) = split_control::<2>(data);
    let cap = 1 + cap_b as usize * 4;
    let timeout = Duration::from_millis(1 + (timeout_b % 16) as u64);
    let identity = Arc::new(FileIdentity {
        seq: 0,
        name: "fuzz-json.log".into(),
        dev: 0,
        ino: 0,
        fp: Fingerprint { crc: 0, len: 0 },
    });
    let mut parser = LineParser::new();
    let mut slots: Vec<Slot> = (0..3)
        .map(|_| Slot {
            asm: PartialAssembler::new(cap),
            pending: Vec::new(),
            discarding: false,
        })
        .collect();
    let mut out = BytesMut::new();
    let base = Instant::now();
    let mut shipped = 0usize;
    let mut offset = 0u64;
    for (tick, line) in file.split(|&b| b == b'\n').enumerate() {
        let now = base + Duration::from_millis(tick as u64);
        for s in &mut slots {
            if let Some(j) = s.asm.flush_expired(now, timeout) {
                assert!(j.flags.contains(EventFlags::PARTIAL));
                check(&j, &s.pending, cap, &mut shipped);
            }
        }
        let mark = out.len();
        let Some(rec) = parser.parse(line, &mut out) else {
            assert_eq!(out.len(), mark, "a malformed line left bytes in the batch");
            offset += line.len() as u64 + 1;
            continue;
        };
        let msg_len = out.len() - mark;
        assert!(
            msg_len <= line.len(),
            "decoded {msg_len} bytes from a {}-byte line",
            line.len()
        );
        let s = &mut slots[match rec.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
            Stream::Unknown => 2,
        }];
        if rec.complete && s.asm.is_idle() {
            shipped += msg_len.min(cap);
        } else {
            if s.asm.is_idle() {
                s.pending.clear();
                s.discarding = false;
            }
            if !s.discarding {
                s.pending.extend_from_slice(&out[mark..]);
            }
            let at = offset;
            let joined = s.asm.push(
                &out[mark..],
                rec.complete,
                rec.time_ns.unwrap_or(0),
                rec.attrs,
                || ResumePoint::at(identity.clone(), at),
                now,
            );
            if let Some(j) = joined {
                check(&j, &s.pending, cap, &mut shipped);
                s.pending.clear();
                s.discarding = !s.asm.is_idle();
            } else if !s.discarding {
                assert!(!s.asm.is_idle(), "a chunk vanished");
                assert_eq!(s.asm.pending_start().map(|p| p.file.seq), Some(0));
            }
        }
        out.truncate(mark);
        offset += line.len() as u64 + 1;
    }
    for s in &mut slots {
        if let Some(j) = s.asm.flush() {
            assert!(j.flags.contains(EventFlags::PARTIAL));
            check(&j, &s.pending, cap, &mut shipped);
        }
        assert!(s.asm.is_idle());
    }
    assert!(
        shipped <= file.len(),
        "shipped {shipped} bytes of {}",
        file.len()
    );
});
