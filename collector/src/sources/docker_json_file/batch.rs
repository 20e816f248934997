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
///
/// A large batch's events share a copy of the container's record of their own
/// ([`PRIVATE_META_AFTER`]): with the one record of the container, every event's `Arc` clone
/// here and its drop in the sink, on another core, bounced one reference count between the
/// cores (a locked increment and decrement per line: ≈ 9 % of a run into the file sink).
pub(super) struct BatchBuilder {
    pub msgs: BytesMut,
    pub events: Vec<Event>,
    /// Each event's message range in `msgs`; `OWNED` for messages with their own buffer.
    ranges: Vec<(usize, usize)>,
    owned_bytes: usize,
    max_events: usize,
    max_bytes: usize,
    now_ns: Option<i64>,
    /// The container's record this batch copied, and the copy its later events share.
    private_meta: Option<(Arc<ContainerMeta>, Arc<ContainerMeta>)>,
}

/// Events of a batch that share the container's own record; the rest share the batch's copy
/// (a trickle's one-line batches copy nothing).
const PRIVATE_META_AFTER: usize = 64;

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
            private_meta: None,
        }
    }

    /// The record the next event carries: `meta`, or this batch's copy of it.
    fn container(&mut self, meta: &Arc<ContainerMeta>) -> Arc<ContainerMeta> {
        if self.events.len() < PRIVATE_META_AFTER {
            return meta.clone();
        }
        match &self.private_meta {
            Some((of, copy)) if Arc::ptr_eq(of, meta) => copy.clone(),
            _ => {
                let copy = Arc::new(ContainerMeta::clone(meta));
                self.private_meta = Some((meta.clone(), copy.clone()));
                copy
            }
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
        let container = Some(self.container(meta));
        self.events.push(Event {
            time_ns,
            stream,
            flags,
            message: Bytes::new(),
            container,
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
        let container = Some(self.container(meta));
        self.events.push(Event {
            time_ns,
            stream,
            flags,
            message,
            container,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_batchs_later_events_share_a_copy_of_the_record_and_a_new_record_is_copied_again() {
        let settings = TailSettings::default();
        let mut b = BatchBuilder::new(&settings);
        let meta = Arc::new(ContainerMeta::from_id("c".repeat(64)));
        let push = |b: &mut BatchBuilder, m: &Arc<ContainerMeta>| {
            b.reserve_for(8, 8);
            let mark = b.msgs.len();
            b.msgs.extend_from_slice(b"x");
            b.push_from(mark, 0, Stream::Stdout, EventFlags::default(), None, m)
        };
        for _ in 0..PRIVATE_META_AFTER + 2 {
            push(&mut b, &meta);
        }
        // Metadata arrived mid-batch: a new record, copied for the batch too.
        let named = Arc::new(ContainerMeta {
            name: Some("web".into()),
            ..(*meta).clone()
        });
        push(&mut b, &named);
        let events = b.finish();
        let carried: Vec<_> = events
            .iter()
            .map(|e| e.container.clone().unwrap())
            .collect();
        assert!(carried[..PRIVATE_META_AFTER]
            .iter()
            .all(|c| Arc::ptr_eq(c, &meta)));
        let copy = &carried[PRIVATE_META_AFTER];
        assert!(!Arc::ptr_eq(copy, &meta) && **copy == *meta);
        assert!(Arc::ptr_eq(&carried[PRIVATE_META_AFTER + 1], copy));
        let last = carried.last().unwrap();
        assert!(!Arc::ptr_eq(last, &named) && **last == *named);
        assert!(events.iter().all(|e| &e.message[..] == b"x"));
    }
}
