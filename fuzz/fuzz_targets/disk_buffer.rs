//! The disk buffer's record reader (collector/src/buffer/disk): a segment file through
//! `segment::Scanner`, a record payload through `codec::decode`, an ack file through
//! `acks::load`. What a crash or a bad disk leaves must never kill the sink that reads it back.
//!
//! Input: a mode byte, then the bytes. 0: a segment file, scanned whole. 1: a record payload,
//! sealed into a valid frame (so the checksum does not stop the decoder). 2: an ack file.
//! Invariants: no panic; the scanner's items are contiguous and cover the file from after its
//! header (or from 0 when the header is wrong) to its end; every `Record` verifies and decoding
//! its payload returns; a payload that decodes re-encodes to records that decode to the same
//! events and messages.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use logwharf_collector::buffer::disk::segment::{Item, Scanner, FILE_HEADER};
use logwharf_collector::buffer::disk::{acks, codec, frame};
use logwharf_fuzz::split_control;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One directory per process, on /dev/shm when there is one: the same file is rewritten
/// every run, so the disk sees no traffic.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("logwharf-fuzz-disk-buffer-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Every item of the segment `file`, checked as it comes.
fn scan(file: &[u8]) -> Vec<Item> {
    let path = dir().join("segment");
    std::fs::write(&path, file).unwrap();
    let mut s = Scanner::open(&path, 0, None).unwrap();
    let mut at = if file.starts_with(FILE_HEADER) {
        FILE_HEADER.len() as u64
    } else {
        0
    };
    let mut items = Vec::new();
    while let Some(item) = s.next_item().unwrap() {
        let (offset, len) = match &item {
            Item::Record {
                offset,
                seq,
                events,
                payload,
            } => {
                assert_eq!(frame::payload_head(payload), (*seq, *events));
                let h: &[u8; frame::HEADER] = file[*offset as usize..][..frame::HEADER]
                    .try_into()
                    .unwrap();
                let h = frame::Header::parse(h).expect("a record without a frame header");
                assert!(h.verify(payload), "a record that does not verify");
                assert_eq!(
                    &file[*offset as usize + frame::HEADER..][..h.len],
                    &payload[..]
                );
                let _ = codec::decode(payload, &mut codec::Interner::default());
                (*offset, h.frame_len())
            }
            Item::Corrupt { offset, len } | Item::Torn { offset, len } => (*offset, *len),
        };
        assert_eq!(offset, at, "items are not contiguous");
        assert!(len > 0, "an empty item");
        at += len;
        assert_eq!(s.pos(), at);
        items.push(item);
    }
    assert_eq!(at, file.len() as u64, "the items do not cover the file");
    items
}

fuzz_target!(|data: &[u8]| {
    let ([mode], rest) = split_control::<1>(data);
    match mode % 3 {
        0 => {
            scan(rest);
        }
        1 => {
            // The payload's head (sequence number, event count) comes from the input too.
            let mut f = frame::start(rest.len());
            f.truncate(frame::HEADER);
            f.extend_from_slice(rest);
            if f.len() < frame::HEADER + frame::PAYLOAD_HEAD {
                return;
            }
            let (seq, events) = frame::payload_head(&f[frame::HEADER..]);
            frame::seal(&mut f, seq, events);
            let mut file = FILE_HEADER.to_vec();
            file.extend_from_slice(&f);
            let items = scan(&file);
            let Some(Item::Record { payload, .. }) = items.into_iter().next() else {
                panic!("a sealed frame was not read back as a record");
            };
            let mut interner = codec::Interner::default();
            let Ok(batch) = codec::decode(&payload, &mut interner) else {
                return;
            };
            let mut messages = Vec::new();
            for (mut f, n) in codec::encode(&batch) {
                frame::seal(&mut f, seq, n);
                let p = Bytes::from(f.split_off(frame::HEADER));
                let again = codec::decode(&p, &mut interner).expect("a re-encoded record");
                assert_eq!(again.len(), n as usize);
                assert_eq!(&*again.source, &*batch.source);
                messages.extend(again.events.into_iter().map(|e| e.message));
            }
            assert_eq!(messages.len(), batch.len(), "events lost in a re-encode");
            for (a, b) in messages.iter().zip(&batch.events) {
                assert_eq!(a, &b.message);
            }
        }
        _ => {
            let d = dir();
            std::fs::write(d.join(acks::FILE), rest).unwrap();
            let _ = acks::load(d);
        }
    }
});
