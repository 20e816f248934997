//! A container's read position in its API log stream: the (timestamp ns, stream, hash) of the
//! last line, since the API has no offsets. Re-attaching asks Docker for `since = timestamp`
//! (inclusive) and [`Replay`] drops what the cursor shows was already read, keeping lines that
//! share the timestamp on the other stream (vectordotdev/vector#19105). When the cursor's own
//! line never comes back, Docker no longer has it (rotated away while no stream read it): the
//! replay says so ([`Seen::AfterGap`]), since lines after it may be gone too. The checkpoint
//! moves only to the end of the longest run of delivered batches ([`crate::ack::ordered`]).
//! Every sink has its own cursor (see the reader).

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

/// What [`Replay::admit`] makes of a line of a re-attached stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Read before: at or before the cursor.
    Old,
    New,
    /// New, and the first line after the cursor's time, which itself never came: Docker no
    /// longer has the cursor's line, so lines between it and this one may be lost (the API
    /// cannot say how many).
    AfterGap,
}

/// Drops the lines of a re-attached stream up to and including the cursor's line.
#[derive(Debug)]
pub struct Replay {
    cursor: Option<Cursor>,
    /// The cursor's own line came by.
    found: bool,
}

impl Replay {
    pub fn new(cursor: Option<Cursor>) -> Replay {
        Replay {
            cursor,
            found: false,
        }
    }

    /// Lines before the cursor's time are old; at the cursor's time, lines are old until the
    /// cursor's own line has gone by.
    pub fn admit(&mut self, line: &Cursor) -> Seen {
        let Some(c) = &self.cursor else {
            return Seen::New;
        };
        if line.time_ns > c.time_ns {
            self.cursor = None;
            return if self.found {
                Seen::New
            } else {
                Seen::AfterGap
            };
        }
        if line.time_ns == c.time_ns && line.stream == c.stream && line.hash == c.hash {
            // Lines sharing its time after it are new; no gap.
            self.found = true;
            self.cursor = None;
        }
        Seen::Old
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
        assert_eq!(r.admit(&c(9, Stream::Stdout, "a")), Seen::Old);
        // Same time, read before the cursor.
        assert_eq!(r.admit(&c(10, Stream::Stderr, "x")), Seen::Old);
        assert_eq!(r.admit(&c(10, Stream::Stdout, "b")), Seen::Old); // the cursor's own line
        assert_eq!(r.admit(&c(10, Stream::Stderr, "y")), Seen::New); // same time, after
        assert_eq!(r.admit(&c(11, Stream::Stdout, "c")), Seen::New);
    }

    #[test]
    fn replay_reports_a_gap_when_the_cursors_line_is_gone() {
        let mut r = Replay::new(Some(c(10, Stream::Stdout, "b")));
        // Docker rotated everything up to time 20 away: its oldest line is newer.
        assert_eq!(r.admit(&c(20, Stream::Stdout, "k")), Seen::AfterGap);
        assert_eq!(r.admit(&c(21, Stream::Stdout, "l")), Seen::New, "told once");
        // Without a cursor (a first start) there is nothing to miss.
        let mut r = Replay::new(None);
        assert_eq!(r.admit(&c(20, Stream::Stdout, "k")), Seen::New);
        // Found, then a later line: no gap.
        let mut r = Replay::new(Some(c(10, Stream::Stdout, "b")));
        assert_eq!(r.admit(&c(10, Stream::Stdout, "b")), Seen::Old);
        assert_eq!(r.admit(&c(12, Stream::Stdout, "c")), Seen::New);
    }

    #[test]
    fn a_cursor_survives_its_checkpoint_form() {
        let cur = c(1_700_000_000_123_456_789, Stream::Stderr, "line");
        let v = cur.to_json();
        // The form every version has written: {time_ns, stream, hash}.
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["time_ns"], 1_700_000_000_123_456_789i64);
        assert_eq!(Cursor::from_json(&v), Some(cur));
    }
}
