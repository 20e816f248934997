//! Reassembly of Docker's partial records: lines over 16 KiB reach the fluentd driver in pieces.
//! Docker 19.03+ marks each piece with `partial_id`, `partial_ordinal` (from 1) and
//! `partial_last`; older engines set only `partial_message = "true"` on every piece but the
//! last, so the next unmarked record of the same container and stream completes the line.
//! A joined line is capped at `max_line_bytes` (the rest is cut, flagged and counted); pieces
//! whose continuation does not come within `partial_timeout` (or before the connection ends)
//! are shipped flagged partial, never dropped. A connection holds at most
//! [`MAX_OPEN_LINES`] open lines and [`MAX_OPEN_FACTOR`] × `max_line_bytes` of them: a peer
//! that opens more (distinct `partial_id`s that never end) gets its oldest line shipped
//! flagged partial and counted (`logwharf_source_errors_total{kind="too_many_partials"}`), so
//! memory and the search through open lines stay bounded.

use super::record::PartialMeta;
use crate::event::{Event, EventFlags, Stream};
use crate::metrics as m;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Open lines per connection at most (Docker's fluentd driver has at most one per stream of
/// its container; a forwarder of many containers a few more).
pub const MAX_OPEN_LINES: usize = 256;
/// Bytes of open lines per connection at most, in units of `max_line_bytes`.
pub const MAX_OPEN_FACTOR: usize = 16;

struct Open {
    container: Option<String>,
    /// `None`: the legacy form (no `partial_id`).
    id: Option<String>,
    stream: Stream,
    first: Event,
    buf: Vec<u8>,
    next_ordinal: Option<u64>,
    since: Instant,
    truncated: bool,
}

/// Lines being joined on one connection.
pub struct Partials {
    open: Vec<Open>,
    max_bytes: usize,
    timeout: Duration,
    source: Arc<str>,
}

fn container_id(ev: &Event) -> Option<String> {
    ev.container.as_ref().map(|c| c.id.clone())
}

impl Partials {
    pub fn new(source: Arc<str>, max_bytes: usize, timeout: Duration) -> Partials {
        Partials {
            open: Vec::new(),
            max_bytes,
            timeout,
            source,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn find(&self, ev: &Event, id: Option<&str>) -> Option<usize> {
        let cid = ev.container.as_ref().map(|c| c.id.as_str());
        self.open.iter().position(|o| {
            o.container.as_deref() == cid
                && o.id.as_deref() == id
                && (id.is_some() || o.stream == ev.stream)
        })
    }

    /// Takes one record: complete lines (joined or not) go to `out`.
    pub fn push(&mut self, ev: Event, meta: Option<PartialMeta>, out: &mut Vec<Event>) {
        match meta {
            None => match self.find(&ev, None) {
                // Legacy: the unmarked record after marked pieces ends the line.
                Some(i) => {
                    let mut o = self.open.swap_remove(i);
                    self.append(&mut o, &ev.message);
                    out.push(self.finish(o, false));
                }
                None => out.push(ev),
            },
            Some(pm) => {
                let i = match self.find(&ev, pm.id.as_deref()) {
                    Some(i)
                        if pm.ordinal.is_some()
                            && self.open[i].next_ordinal.is_some()
                            && pm.ordinal != self.open[i].next_ordinal =>
                    {
                        // A gap or a restart: ship what we have, start again.
                        let o = self.open.swap_remove(i);
                        out.push(self.finish(o, true));
                        None
                    }
                    found => found,
                };
                let i = match i {
                    Some(i) => i,
                    None => {
                        self.open.push(Open {
                            container: container_id(&ev),
                            id: pm.id.clone(),
                            stream: ev.stream,
                            buf: Vec::new(),
                            next_ordinal: pm.ordinal,
                            since: Instant::now(),
                            truncated: false,
                            first: Event {
                                message: Bytes::new(),
                                ..ev.clone()
                            },
                        });
                        self.open.len() - 1
                    }
                };
                let mut o = self.open.swap_remove(i);
                self.append(&mut o, &ev.message);
                o.next_ordinal = pm.ordinal.map(|n| n + 1);
                if pm.id.is_some() && pm.last {
                    out.push(self.finish(o, false));
                } else {
                    self.open.push(o);
                    self.shed(out);
                }
            }
        }
    }

    /// Ships the oldest open lines, flagged partial, while the connection holds too many.
    fn shed(&mut self, out: &mut Vec<Event>) {
        let cap = self.max_bytes.saturating_mul(MAX_OPEN_FACTOR);
        let mut bytes: usize = self.open.iter().map(|o| o.buf.len()).sum();
        while self.open.len() > MAX_OPEN_LINES || (bytes > cap && self.open.len() > 1) {
            let Some(oldest) = (0..self.open.len()).min_by_key(|&i| self.open[i].since) else {
                return;
            };
            let o = self.open.swap_remove(oldest);
            bytes -= o.buf.len();
            metrics::counter!(m::SOURCE_ERRORS, "source" => self.source.to_string(), "kind" => "too_many_partials")
                .increment(1);
            out.push(self.finish(o, true));
        }
    }

    fn append(&self, o: &mut Open, piece: &[u8]) {
        let room = self.max_bytes.saturating_sub(o.buf.len());
        if piece.len() > room {
            o.buf.extend_from_slice(&piece[..room]);
            if !o.truncated {
                o.truncated = true;
                metrics::counter!(m::PARTIAL_TRUNCATED, "source" => self.source.to_string(), "container" => o.container.clone().unwrap_or_default())
                    .increment(1);
            }
        } else {
            o.buf.extend_from_slice(piece);
        }
    }

    fn finish(&self, o: Open, incomplete: bool) -> Event {
        let mut ev = o.first;
        ev.message = Bytes::from(o.buf);
        if o.truncated {
            ev.flags.insert(EventFlags::TRUNCATED);
        }
        if incomplete {
            ev.flags.insert(EventFlags::PARTIAL);
            metrics::counter!(m::PARTIAL_TRUNCATED, "source" => self.source.to_string(), "container" => o.container.unwrap_or_default())
                .increment(1);
        }
        ev
    }

    /// Ships, flagged partial, every line that waited longer than `partial_timeout`.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Event>) {
        let mut i = 0;
        while i < self.open.len() {
            if now.duration_since(self.open[i].since) >= self.timeout {
                let o = self.open.swap_remove(i);
                out.push(self.finish(o, true));
            } else {
                i += 1;
            }
        }
    }

    /// Ships everything still open, flagged partial (the connection ended).
    pub fn flush_all(&mut self, out: &mut Vec<Event>) {
        for o in std::mem::take(&mut self.open) {
            out.push(self.finish(o, true));
        }
    }

    /// When the oldest open line expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|o| o.since + self.timeout).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ContainerMeta;

    fn ev(msg: &'static str) -> Event {
        let mut e = Event::new(1, Stream::Stdout, Bytes::from_static(msg.as_bytes()));
        e.container = Some(Arc::new(ContainerMeta::from_id("c1")));
        e
    }

    fn pm(id: &str, ord: u64, last: bool) -> Option<PartialMeta> {
        Some(PartialMeta {
            id: Some(id.into()),
            ordinal: Some(ord),
            last,
        })
    }

    #[test]
    fn lines_that_never_end_are_shipped_oldest_first_past_the_cap() {
        let mut p = Partials::new("s".into(), 1 << 20, Duration::from_secs(5));
        let mut out = Vec::new();
        for i in 0..MAX_OPEN_LINES + 10 {
            p.push(ev("piece"), pm(&format!("id{i}"), 1, false), &mut out);
        }
        assert_eq!(p.open.len(), MAX_OPEN_LINES);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|e| e.flags.contains(EventFlags::PARTIAL)));
        // By bytes: a few huge lines.
        let mut p = Partials::new("s".into(), 8, Duration::from_secs(5));
        let mut out = Vec::new();
        for i in 0..MAX_OPEN_FACTOR + 3 {
            p.push(ev("12345678"), pm(&format!("id{i}"), 1, false), &mut out);
        }
        assert_eq!(p.open.len(), MAX_OPEN_FACTOR);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn joins_by_id_and_ordinal() {
        let mut p = Partials::new("s".into(), 1 << 20, Duration::from_secs(5));
        let mut out = Vec::new();
        p.push(ev("aa"), pm("x", 1, false), &mut out);
        p.push(ev("other"), None, &mut out);
        p.push(ev("bb"), pm("x", 2, false), &mut out);
        p.push(ev("cc"), pm("x", 3, true), &mut out);
        let msgs: Vec<_> = out.iter().map(|e| e.message.clone()).collect();
        assert_eq!(msgs, vec![Bytes::from("other"), Bytes::from("aabbcc")]);
        assert!(out[1].flags.is_empty());
        assert!(p.is_empty());
    }

    #[test]
    fn legacy_pieces_end_at_the_next_unmarked_record() {
        let mut p = Partials::new("s".into(), 1 << 20, Duration::from_secs(5));
        let mut out = Vec::new();
        let legacy = || {
            Some(PartialMeta {
                id: None,
                ordinal: None,
                last: false,
            })
        };
        p.push(ev("aa"), legacy(), &mut out);
        p.push(ev("bb"), legacy(), &mut out);
        assert!(out.is_empty());
        p.push(ev("cc"), None, &mut out);
        assert_eq!(out[0].message, Bytes::from("aabbcc"));
    }

    #[test]
    fn caps_flags_and_times_out() {
        let mut p = Partials::new("s".into(), 3, Duration::from_millis(0));
        let mut out = Vec::new();
        p.push(ev("aa"), pm("x", 1, false), &mut out);
        p.push(ev("bb"), pm("x", 2, true), &mut out);
        assert_eq!(out[0].message, Bytes::from("aab"));
        assert!(out[0].flags.contains(EventFlags::TRUNCATED));
        p.push(ev("dd"), pm("y", 1, false), &mut out);
        p.flush_expired(Instant::now(), &mut out);
        assert_eq!(out[1].message, Bytes::from("dd"));
        assert!(out[1].flags.contains(EventFlags::PARTIAL));
    }
}
