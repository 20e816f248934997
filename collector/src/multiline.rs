//! Multiline merging for stack traces: a line that matches the start pattern begins an event,
//! every following line that does not match joins it (joined by `\n`), up to a size cap, until
//! the next start line or until no continuation arrived within the flush timeout. Used by the
//! json-file and Docker API sources, one merger per container stream.
//!
//! Each line carries a caller's tag `T` (a read position); a merged event reports the tags of
//! its first and last line, so a source can checkpoint only past what it has shipped, and
//! [`Multiline::pending_first`] tells what a held event still covers.

use crate::event::{Event, EventFlags};
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

/// A finished event and the tags of the lines it was merged from.
#[derive(Debug)]
pub struct Merged<T> {
    pub event: Event,
    pub first: T,
    pub last: T,
    /// Lines merged into it (1 for a line that stood alone).
    pub lines: usize,
}

struct Pending<T> {
    event: Event,
    /// The joined message once a second line arrived.
    buf: Option<Vec<u8>>,
    first: T,
    last: T,
    lines: usize,
    deadline: Instant,
}

impl<T> Pending<T> {
    fn len(&self) -> usize {
        self.buf.as_ref().map_or(self.event.message.len(), Vec::len)
    }

    fn finish(mut self) -> Merged<T> {
        if let Some(b) = self.buf {
            self.event.message = Bytes::from(b);
        }
        Merged {
            event: self.event,
            first: self.first,
            last: self.last,
            lines: self.lines,
        }
    }
}

/// One stream's merger.
pub struct Multiline<T> {
    start: regex::bytes::Regex,
    max_bytes: usize,
    timeout: Duration,
    pending: Option<Pending<T>>,
}

impl<T: Clone> Multiline<T> {
    /// `start` is a regular expression (validated by the config; the error names it otherwise).
    pub fn new(start: &str, max_bytes: usize, timeout: Duration) -> Result<Self, regex::Error> {
        Ok(Multiline {
            start: regex::bytes::Regex::new(start)?,
            max_bytes: max_bytes.max(1),
            timeout,
            pending: None,
        })
    }

    pub fn pattern(&self) -> &str {
        self.start.as_str()
    }

    /// Feeds one line; finished events are appended to `out`.
    pub fn push(&mut self, line: Event, tag: T, now: Instant, out: &mut Vec<Merged<T>>) {
        let starts = self.start.is_match(&line.message);
        if !starts {
            if let Some(p) = self.pending.as_mut() {
                if p.len() + 1 + line.message.len() <= self.max_bytes {
                    let buf = p.buf.get_or_insert_with(|| {
                        let mut b = Vec::with_capacity(p.event.message.len() * 4);
                        b.extend_from_slice(&p.event.message);
                        b
                    });
                    buf.push(b'\n');
                    buf.extend_from_slice(&line.message);
                    p.event
                        .flags
                        .insert(EventFlags(line.flags.0 & !EventFlags::MALFORMED.0));
                    p.last = tag;
                    p.lines += 1;
                    p.deadline = now + self.timeout;
                    return;
                }
            }
        }
        self.flush(out);
        self.pending = Some(Pending {
            event: line,
            buf: None,
            first: tag.clone(),
            last: tag,
            lines: 1,
            deadline: now + self.timeout,
        });
    }

    /// Ships the held event when its timeout has passed.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Merged<T>>) {
        if self.pending.as_ref().is_some_and(|p| p.deadline <= now) {
            self.flush(out);
        }
    }

    /// Ships the held event now (end of stream, shutdown).
    pub fn flush(&mut self, out: &mut Vec<Merged<T>>) {
        if let Some(p) = self.pending.take() {
            out.push(p.finish());
        }
    }

    /// When the held event times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The tag of the first line of the held event.
    pub fn pending_first(&self) -> Option<&T> {
        self.pending.as_ref().map(|p| &p.first)
    }
}

/// One merger per container stream (stdout, stderr, other) for sources whose batches mix the
/// streams in file order (json-file). Tags are not tracked: the caller checkpoints only at
/// batch ends where [`StreamMergers::holding`] is false.
pub struct StreamMergers {
    mergers: [Multiline<()>; 3],
}

impl StreamMergers {
    /// The pattern is the container's `logwharf.multiline.start` label, else the source's
    /// `multiline.start`; `None` when neither is set (or the label does not compile: logged).
    pub fn for_container(
        meta: &crate::event::ContainerMeta,
        config: &logwharf_config::docker::MultilineConfig,
    ) -> Option<StreamMergers> {
        let pattern = meta
            .multiline_start()
            .map(str::to_string)
            .or_else(|| config.start.as_ref().map(|p| p.as_str().to_string()))?;
        let make = || Multiline::new(&pattern, config.max_bytes.0 as usize, config.timeout.0);
        match (make(), make(), make()) {
            (Ok(a), Ok(b), Ok(c)) => Some(StreamMergers { mergers: [a, b, c] }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(container = %meta.id, pattern = %pattern, error = %e, "label logwharf.multiline.start is not a valid regular expression; multiline merging is off for this container");
                None
            }
        }
    }

    fn index(s: crate::event::Stream) -> usize {
        match s {
            crate::event::Stream::Stdout => 0,
            crate::event::Stream::Stderr => 1,
            crate::event::Stream::Unknown => 2,
        }
    }

    /// Merges a batch's lines; returns the finished events (a held event stays inside).
    pub fn process(&mut self, lines: Vec<Event>, now: Instant) -> Vec<Event> {
        let mut out = Vec::with_capacity(lines.len());
        let mut merged = Vec::new();
        for line in lines {
            let i = Self::index(line.stream);
            self.mergers[i].push(line, (), now, &mut merged);
            out.extend(merged.drain(..).map(|m| m.event));
        }
        out
    }

    /// Held events whose timeout passed.
    pub fn flush_expired(&mut self, now: Instant) -> Vec<Event> {
        let mut merged = Vec::new();
        for m in &mut self.mergers {
            m.flush_expired(now, &mut merged);
        }
        merged.into_iter().map(|m| m.event).collect()
    }

    /// Every held event (end of input, removal, shutdown).
    pub fn flush_all(&mut self) -> Vec<Event> {
        let mut merged = Vec::new();
        for m in &mut self.mergers {
            m.flush(&mut merged);
        }
        merged.into_iter().map(|m| m.event).collect()
    }

    /// An event is held (a checkpoint must not move past its first line).
    pub fn holding(&self) -> bool {
        self.mergers.iter().any(|m| m.deadline().is_some())
    }

    /// When the earliest held event times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.mergers.iter().filter_map(Multiline::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;

    fn ev(s: &str) -> Event {
        Event::new(1, Stream::Stdout, Bytes::copy_from_slice(s.as_bytes()))
    }

    fn msgs(v: &[Merged<u32>]) -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8_lossy(&m.event.message).into_owned())
            .collect()
    }

    #[test]
    fn java_stack_trace_is_one_event() {
        let mut m = Multiline::new(r"^\d{4}-\d\d-\d\d ", 1 << 20, Duration::from_secs(1)).unwrap();
        let now = Instant::now();
        let mut out = Vec::new();
        let lines = [
            "2026-11-25 13:04:22 INFO start",
            "2026-11-25 13:04:23 ERROR boom",
            "java.lang.IllegalStateException: bad",
            "\tat com.example.Foo.bar(Foo.java:42)",
            "\tat com.example.Main.main(Main.java:7)",
            "2026-11-25 13:04:24 INFO after",
        ];
        for (i, l) in lines.iter().enumerate() {
            m.push(ev(l), i as u32, now, &mut out);
        }
        assert_eq!(msgs(&out).len(), 2);
        assert_eq!(out[1].first, 1);
        assert_eq!(out[1].last, 4);
        assert_eq!(out[1].lines, 4);
        assert!(msgs(&out)[1].ends_with("\tat com.example.Main.main(Main.java:7)"));
        assert_eq!(m.pending_first(), Some(&5));
        m.flush_expired(now + Duration::from_millis(500), &mut out);
        assert_eq!(out.len(), 2);
        m.flush_expired(now + Duration::from_secs(1), &mut out);
        assert_eq!(msgs(&out)[2], "2026-11-25 13:04:24 INFO after");
    }

    #[test]
    fn max_bytes_cuts_into_a_new_event() {
        let mut m = Multiline::new("^S", 10, Duration::from_secs(1)).unwrap();
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, l) in ["S123", "abcd", "efgh", "ij"].iter().enumerate() {
            m.push(ev(l), i as u32, now, &mut out);
        }
        m.flush(&mut out);
        assert_eq!(msgs(&out), ["S123\nabcd", "efgh\nij"]);
    }
}
