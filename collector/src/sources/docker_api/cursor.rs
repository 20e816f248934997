//! A container's read position in its API log stream: the (timestamp ns, stream, hash) of the
//! last line, since the API has no offsets. Re-attaching asks Docker for `since = timestamp`
//! (inclusive) and [`Replay`] drops what the cursor shows was already read, keeping lines that
//! share the timestamp on the other stream (vectordotdev/vector#19105). The checkpoint moves
//! only to the end of the longest run of delivered batches ([`crate::ack::ordered`]).

use crate::event::Stream;
use serde::{Deserialize, Serialize};

/// The position just after one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub time_ns: i64,
    pub stream: String,
    /// FNV-1a 64 of the line's raw message, hex.
    pub hash: String,
}

impl Cursor {
    pub fn of(time_ns: i64, stream: Stream, message: &[u8]) -> Cursor {
        Cursor {
            time_ns,
            stream: stream.as_str().to_string(),
            hash: format!("{:016x}", fnv1a(message)),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Cursor> {
        serde_json::from_value(v.clone()).ok()
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= c as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Drops the lines of a re-attached stream up to and including the cursor's line.
#[derive(Debug)]
pub struct Replay {
    cursor: Option<Cursor>,
}

impl Replay {
    pub fn new(cursor: Option<Cursor>) -> Replay {
        Replay { cursor }
    }

    /// True when the line is new. Lines before the cursor's time are old; at the cursor's time,
    /// lines are old until the cursor's own line has gone by.
    pub fn admit(&mut self, line: &Cursor) -> bool {
        let Some(c) = &self.cursor else {
            return true;
        };
        if line.time_ns > c.time_ns {
            self.cursor = None;
            return true;
        }
        if line.time_ns == c.time_ns && line.stream == c.stream && line.hash == c.hash {
            self.cursor = None;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: i64, s: Stream, m: &str) -> Cursor {
        Cursor::of(t, s, m.as_bytes())
    }

    #[test]
    fn replay_keeps_equal_timestamps_after_the_cursor() {
        let mut r = Replay::new(Some(c(10, Stream::Stdout, "b")));
        assert!(!r.admit(&c(9, Stream::Stdout, "a")));
        assert!(!r.admit(&c(10, Stream::Stderr, "x"))); // same time, read before the cursor
        assert!(!r.admit(&c(10, Stream::Stdout, "b"))); // the cursor's own line
        assert!(r.admit(&c(10, Stream::Stderr, "y"))); // same time, after: new
        assert!(r.admit(&c(11, Stream::Stdout, "c")));
    }
}
