//! The Docker log-stream decoder (collector/src/docker/logs.rs `Demux`): the API's
//! multiplexed stream (8-byte headers) or a TTY container's raw lines, received in reads of
//! any size.
//!
//! Input: two control bytes (TTY or not, the read sizes), then the stream.
//! Invariants: no panic; no frame is larger than `MAX_FRAME`; up to the first bad header the
//! frames do not depend on how the stream was cut into reads; a bad header empties the buffer;
//! the frames' bytes never exceed the stream's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logwharf_collector::docker::logs::{Demux, Frame, MAX_FRAME};
use logwharf_fuzz::{chunks, split_control};

/// The frames up to the first bad header (and whether there was one).
fn run(tty: bool, reads: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut d = Demux::new(tty);
    let mut out = Vec::new();
    for r in reads {
        d.push(r);
        while let Some(f) = d.next_frame() {
            match f {
                Ok(f) => {
                    assert!(f.message.len() <= MAX_FRAME);
                    out.push(f);
                }
                Err(_) => {
                    assert_eq!(d.buffered(), 0, "a bad header left bytes buffered");
                    return (out, true);
                }
            }
        }
    }
    out.extend(d.finish());
    assert_eq!(d.buffered(), 0);
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let ([mode, size_b], stream) = split_control::<2>(data);
    let tty = mode & 1 == 1;
    let (whole, bad_whole) = run(tty, &[stream]);
    let (cut, bad_cut) = run(tty, &chunks(stream, &[size_b, 1, size_b / 3]));
    assert_eq!(bad_whole, bad_cut, "a bad header depends on the reads");
    assert_eq!(whole, cut, "frames depend on how the stream was read");
    let total: usize = whole.iter().map(|f| f.message.len()).sum();
    assert!(total <= stream.len());
});
