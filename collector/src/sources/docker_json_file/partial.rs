//! Rejoining Docker's partial records: a line longer than 16 KiB is written as several
//! records, each but the last with a `log` that does not end in `\n`. One
//! [`PartialAssembler`] per (container, stream) joins them into one event.
//!
//! The joined size is capped (`max_line_bytes`): at the cap the head is shipped at once,
//! flagged `TRUNCATED`, and the rest of that line is dropped as it arrives, so an endless line
//! cannot grow memory and the head is never lost. A group that waits longer than
//! `partial_timeout` for its continuation (or is flushed at container removal or at the end
//! of `--once`) is shipped flagged `PARTIAL`. The assembler lives in the container's reader,
//! not in a file, so a line whose chunks straddle a rotation is still joined.

use super::position::ResumePoint;
use crate::event::{Attrs, EventFlags};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A finished line: all its chunks joined (or as much as the cap, or the timeout, allowed).
#[derive(Debug)]
pub struct Joined {
    pub message: Bytes,
    /// The first chunk's time.
    pub time_ns: i64,
    pub attrs: Option<Arc<Attrs>>,
    pub flags: EventFlags,
}

pub struct PartialAssembler {
    cap: usize,
    state: State,
}

enum State {
    Idle,
    Joining(Group),
    /// The line went over the cap and its head was shipped; its further chunks are dropped
    /// until the one that ends it.
    Discarding {
        last_chunk: Instant,
    },
}

struct Group {
    buf: BytesMut,
    time_ns: i64,
    attrs: Option<Arc<Attrs>>,
    /// Where the group's first record starts: a restart must read from there to rebuild it.
    start: ResumePoint,
    last_chunk: Instant,
}

impl PartialAssembler {
    pub fn new(cap: usize) -> PartialAssembler {
        PartialAssembler {
            cap: cap.max(1),
            state: State::Idle,
        }
    }

    /// No line is being joined or discarded: a complete record can bypass the assembler.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Takes one record's text. `last`: the record ended its line (its `\n` already removed).
    /// `start` gives the record's position, asked for only when it opens a group.
    pub fn push(
        &mut self,
        chunk: &[u8],
        last: bool,
        time_ns: i64,
        attrs: Option<Arc<Attrs>>,
        start: impl FnOnce() -> ResumePoint,
        now: Instant,
    ) -> Option<Joined> {
        match &mut self.state {
            State::Discarding { last_chunk } => {
                if last {
                    self.state = State::Idle;
                } else {
                    *last_chunk = now;
                }
                None
            }
            State::Idle => {
                if last || chunk.len() > self.cap {
                    // One record alone: complete, or already over the cap.
                    let over = chunk.len() > self.cap;
                    let joined = Joined {
                        message: Bytes::copy_from_slice(&chunk[..chunk.len().min(self.cap)]),
                        time_ns,
                        attrs,
                        flags: if over {
                            EventFlags::TRUNCATED
                        } else {
                            EventFlags::default()
                        },
                    };
                    if over && !last {
                        self.state = State::Discarding { last_chunk: now };
                    }
                    return Some(joined);
                }
                let mut buf = BytesMut::with_capacity((chunk.len() * 2).min(self.cap));
                buf.extend_from_slice(chunk);
                self.state = State::Joining(Group {
                    buf,
                    time_ns,
                    attrs,
                    start: start(),
                    last_chunk: now,
                });
                None
            }
            State::Joining(g) => {
                let room = self.cap - g.buf.len();
                if chunk.len() > room {
                    g.buf.extend_from_slice(&chunk[..room]);
                    let joined = take(g, EventFlags::TRUNCATED);
                    self.state = if last {
                        State::Idle
                    } else {
                        State::Discarding { last_chunk: now }
                    };
                    return Some(joined);
                }
                g.buf.extend_from_slice(chunk);
                if last {
                    let joined = take(g, EventFlags::default());
                    self.state = State::Idle;
                    return Some(joined);
                }
                g.last_chunk = now;
                None
            }
        }
    }

    /// Ships a group whose continuation has not come within `timeout`.
    pub fn flush_expired(&mut self, now: Instant, timeout: Duration) -> Option<Joined> {
        match &self.state {
            State::Joining(g) if now.saturating_duration_since(g.last_chunk) >= timeout => {
                self.flush()
            }
            State::Discarding { last_chunk }
                if now.saturating_duration_since(*last_chunk) >= timeout =>
            {
                self.state = State::Idle;
                None
            }
            _ => None,
        }
    }

    /// Ships whatever is pending, flagged `PARTIAL` (container gone, end of `--once`).
    pub fn flush(&mut self) -> Option<Joined> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Joining(mut g) => Some(take(&mut g, EventFlags::PARTIAL)),
            _ => None,
        }
    }

    /// Where the pending group's first record starts.
    pub fn pending_start(&self) -> Option<&ResumePoint> {
        match &self.state {
            State::Joining(g) => Some(&g.start),
            _ => None,
        }
    }

    /// When a pending group (or a discarded line) times out.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        match &self.state {
            State::Joining(g) => Some(g.last_chunk + timeout),
            State::Discarding { last_chunk } => Some(*last_chunk + timeout),
            State::Idle => None,
        }
    }
}

fn take(g: &mut Group, flags: EventFlags) -> Joined {
    Joined {
        message: g.buf.split().freeze(),
        time_ns: g.time_ns,
        attrs: g.attrs.take(),
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::file::FileIdentity;
    use crate::tail::fingerprint::Fingerprint;

    fn at(seq: u64, offset: u64) -> ResumePoint {
        ResumePoint {
            file: Arc::new(FileIdentity {
                seq,
                name: format!("f{seq}"),
                dev: 1,
                ino: seq,
                fp: Fingerprint { crc: 0, len: 0 },
            }),
            offset,
            time_ns: None,
        }
    }

    #[test]
    fn joins_chunks_with_the_first_chunks_time() {
        let now = Instant::now();
        let mut a = PartialAssembler::new(1 << 20);
        assert!(a.push(b"aaa", false, 1, None, || at(0, 10), now).is_none());
        assert!(!a.is_idle());
        assert_eq!(a.pending_start().unwrap().offset, 10);
        assert!(a.push(b"bbb", false, 2, None, || at(0, 99), now).is_none());
        let j = a.push(b"cc", true, 3, None, || at(0, 99), now).unwrap();
        assert_eq!(&j.message[..], b"aaabbbcc");
        assert_eq!(j.time_ns, 1);
        assert!(j.flags.is_empty());
        assert!(a.is_idle());
        assert!(a.pending_start().is_none());
    }

    #[test]
    fn cap_ships_the_head_truncated_and_drops_the_rest_of_the_line() {
        let now = Instant::now();
        let mut a = PartialAssembler::new(5);
        assert!(a.push(b"abc", false, 1, None, || at(0, 0), now).is_none());
        let j = a.push(b"defgh", false, 2, None, || at(0, 0), now).unwrap();
        assert_eq!(&j.message[..], b"abcde");
        assert!(j.flags.contains(EventFlags::TRUNCATED));
        // The rest of the same line is dropped, and holds no resume point.
        assert!(a
            .push(b"xxxxxxx", false, 3, None, || at(0, 0), now)
            .is_none());
        assert!(a.pending_start().is_none());
        assert!(a.push(b"end", true, 4, None, || at(0, 0), now).is_none());
        assert!(a.is_idle());
        // The next line is joined normally.
        assert!(a.push(b"ne", false, 5, None, || at(0, 0), now).is_none());
        let j = a.push(b"xt", true, 6, None, || at(0, 0), now).unwrap();
        assert_eq!(&j.message[..], b"next");
        // A single record over the cap.
        let j = a
            .push(b"0123456789", false, 7, None, || at(0, 0), now)
            .unwrap();
        assert_eq!(&j.message[..], b"01234");
        assert!(j.flags.contains(EventFlags::TRUNCATED));
        assert!(a.push(b"z", true, 8, None, || at(0, 0), now).is_none());
        assert!(a.is_idle());
        // Exactly at the cap is not truncated.
        assert!(a.push(b"abc", false, 1, None, || at(0, 0), now).is_none());
        let j = a.push(b"de", true, 2, None, || at(0, 0), now).unwrap();
        assert_eq!(&j.message[..], b"abcde");
        assert!(j.flags.is_empty());
    }

    #[test]
    fn timeout_ships_the_group_flagged_partial() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut a = PartialAssembler::new(100);
        a.push(b"last words", false, 42, None, || at(0, 0), t0);
        assert_eq!(a.deadline(timeout), Some(t0 + timeout));
        assert!(a
            .flush_expired(t0 + Duration::from_secs(4), timeout)
            .is_none());
        let j = a.flush_expired(t0 + timeout, timeout).unwrap();
        assert_eq!(&j.message[..], b"last words");
        assert_eq!(j.time_ns, 42);
        assert!(j.flags.contains(EventFlags::PARTIAL));
        assert!(a.is_idle());
        assert!(a.flush().is_none());
    }

    #[test]
    fn a_new_chunk_restarts_the_wait() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut a = PartialAssembler::new(100);
        a.push(b"a", false, 1, None, || at(0, 0), t0);
        a.push(
            b"b",
            false,
            2,
            None,
            || at(0, 0),
            t0 + Duration::from_secs(4),
        );
        assert!(a
            .flush_expired(t0 + Duration::from_secs(6), timeout)
            .is_none());
        let j = a.flush().unwrap();
        assert_eq!(&j.message[..], b"ab");
        assert!(j.flags.contains(EventFlags::PARTIAL));
    }
}
