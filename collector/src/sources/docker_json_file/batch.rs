//! A batch under construction: events whose messages share one buffer.

use super::tailer::TailSettings;
use crate::event::{Attrs, ContainerMeta, Event, EventFlags, Stream};
use crate::time::now_nanos;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Events under construction. Messages are appended to one buffer; each event's message
/// becomes a slice of it when the batch is finished (one allocation per batch, not per line).
/// Buffers are sized to what the batch holds — a batch can sit in a sink's buffer for a
/// long time, and a one-line batch must not pin a block-sized allocation.
pub(super) struct BatchBuilder {
    pub msgs: BytesMut,
    pub events: Vec<Event>,
    /// Each event's message range in `msgs`; `OWNED` for messages with their own buffer.
    ranges: Vec<(usize, usize)>,
    owned_bytes: usize,
    max_events: usize,
    max_bytes: usize,
    now_ns: Option<i64>,
}

const OWNED: (usize, usize) = (usize::MAX, 0);

impl BatchBuilder {
    pub fn new(s: &TailSettings) -> BatchBuilder {
        BatchBuilder {
            msgs: BytesMut::new(),
            events: Vec::new(),
            ranges: Vec::new(),
            owned_bytes: 0,
            max_events: s.batch_max_events,
            max_bytes: s.batch_max_bytes,
            now_ns: None,
        }
    }

    /// Makes room before a line of `line_len` raw bytes, with `unread` raw bytes buffered
    /// from its start on. A decoded message is never longer than its raw line, so reserving
    /// the buffered bytes once covers every line of the block without reallocating.
    pub fn reserve_for(&mut self, line_len: usize, unread: usize) {
        if self.msgs.capacity() - self.msgs.len() < line_len {
            let budget = self.max_bytes.saturating_sub(self.msgs.len());
            self.msgs.reserve(unread.min(budget).max(line_len));
        }
        if self.events.capacity() == self.events.len() {
            // Assume lines of ≥128 bytes; shorter ones just grow the Vec.
            let more =
                (unread / 128).clamp(1, self.max_events.saturating_sub(self.events.len()).max(1));
            self.events.reserve(more);
            self.ranges.reserve(more);
        }
    }

    pub fn is_full(&self) -> bool {
        self.events.len() >= self.max_events || self.msgs.len() + self.owned_bytes >= self.max_bytes
    }

    /// The read time, for lines that carry none (taken once per batch).
    pub fn now_ns(&mut self) -> i64 {
        *self.now_ns.get_or_insert_with(now_nanos)
    }

    /// An event whose message is `msgs[mark..]`.
    pub fn push_from(
        &mut self,
        mark: usize,
        time_ns: i64,
        stream: Stream,
        flags: EventFlags,
        attrs: Option<Arc<Attrs>>,
        meta: &Arc<ContainerMeta>,
    ) {
        self.ranges.push((mark, self.msgs.len()));
        self.events.push(Event {
            time_ns,
            stream,
            flags,
            message: Bytes::new(),
            container: Some(meta.clone()),
            attrs,
            fields: None,
        });
    }

    pub fn push_owned(
        &mut self,
        message: Bytes,
        time_ns: i64,
        stream: Stream,
        flags: EventFlags,
        attrs: Option<Arc<Attrs>>,
        meta: &Arc<ContainerMeta>,
    ) {
        self.owned_bytes += message.len();
        self.ranges.push(OWNED);
        self.events.push(Event {
            time_ns,
            stream,
            flags,
            message,
            container: Some(meta.clone()),
            attrs,
            fields: None,
        });
    }

    pub fn finish(self) -> Vec<Event> {
        // A batch cut short (by `batch_max_events`) leaves most of its reservation unused.
        let shared = if self.msgs.capacity() > 2 * self.msgs.len() + (16 << 10) {
            Bytes::copy_from_slice(&self.msgs)
        } else {
            self.msgs.freeze()
        };
        let mut events = self.events;
        if events.capacity() > 2 * events.len() + 16 {
            events.shrink_to_fit();
        }
        for (ev, &(s, e)) in events.iter_mut().zip(&self.ranges) {
            if (s, e) != OWNED {
                ev.message = shared.slice(s..e);
            }
        }
        events
    }
}
