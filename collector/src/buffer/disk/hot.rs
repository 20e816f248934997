//! The newest records, kept in memory as well as on disk, so that a reader that keeps up with
//! the writer hands the sink the batch the source wrote instead of reading its bytes back
//! and decoding them. The writer thread adds each record once it is in the segment file
//! (before it publishes the new end); the oldest go when the cache holds more than
//! [`HOT_BYTES`]. The reader takes a record from here only when it is the very next one it
//! needs, and then moves its file position past it; anything else it reads from disk. So
//! what is delivered, in which order, and what is acknowledged, is the same either way; only
//! the cost differs.

use crate::event::Batch;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// The most message bytes the cache holds (besides the reader's read-ahead).
pub const HOT_BYTES: usize = 2 << 20;

/// A record that is in a segment file, as the source gave it.
pub(super) struct HotRecord {
    pub seq: u64,
    pub batch: Arc<Batch>,
    /// Its segment, and the offset just after it there.
    pub segment: u64,
    pub end: u64,
    pub bytes: usize,
}

#[derive(Default)]
pub(super) struct Hot {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: VecDeque<HotRecord>,
    bytes: usize,
}

impl Hot {
    /// Adds the newest record (sequence numbers only grow), dropping the oldest beyond the cap.
    pub fn push(&self, r: HotRecord) {
        let mut i = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        i.bytes += r.bytes;
        i.records.push_back(r);
        while i.bytes > HOT_BYTES && i.records.len() > 1 {
            let old = i.records.pop_front().expect("more than one");
            i.bytes -= old.bytes;
        }
    }

    /// Record `seq`, if it is here; every older one is dropped (it was read from disk).
    pub fn take(&self, seq: u64) -> Option<HotRecord> {
        let mut i = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(front) = i.records.front() {
            if front.seq > seq {
                return None;
            }
            let r = i.records.pop_front().expect("a front");
            i.bytes -= r.bytes;
            if r.seq == seq {
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, bytes: usize) -> HotRecord {
        HotRecord {
            seq,
            batch: Arc::new(Batch {
                source: "s".into(),
                events: Vec::new(),
            }),
            segment: 1,
            end: seq * 10,
            bytes,
        }
    }

    #[test]
    fn only_the_next_record_is_taken_and_the_oldest_go_beyond_the_cap() {
        let h = Hot::default();
        for s in 0..4 {
            h.push(rec(s, 10));
        }
        assert!(h.take(5).is_none(), "not here: everything older is dropped");
        assert!(h.take(0).is_none());
        h.push(rec(5, 10));
        assert_eq!(h.take(5).unwrap().seq, 5);
        h.push(rec(6, HOT_BYTES));
        h.push(rec(7, 10));
        assert!(h.take(6).is_none(), "6 went to make room for 7");
        assert_eq!(h.take(7).unwrap().end, 70);
    }
}
