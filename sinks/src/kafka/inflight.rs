//! The batches a kafka sink holds until librdkafka has reported on every one of their
//! messages, and what each message's report decides.
//!
//! Each message is named by a [`MsgId`] (its batch's number and its index in that batch),
//! which travels through librdkafka as the delivery opaque. A message is *waiting* (to be sent,
//! or re-sent), *sent* (librdkafka holds it), or *done* (delivered, or refused for good and
//! counted). A batch's [`AckToken`] settles when its last message is done — never earlier, so
//! a message that sits in librdkafka's queue is never counted as delivered (the loss Fluent
//! Bit's kafka output had, fluent/fluent-bit#3766). Messages whose delivery failed in a way
//! that retrying can fix go back to *waiting* and into the retry set, oldest first. Messages
//! the *broker* refused as too large go into the isolation set instead: the broker refuses a
//! whole request, so they are sent again one per request to find the one that really is.
//! A message refused for good goes to the sink's dead-letter file (when set) before its batch
//! settles.

use crate::util::dead_letter::DeadLetters;
use logwharf_collector::metrics as m;
use logwharf_collector::{AckToken, Batch};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// A message's name: `batch number << 32 | index in the batch`. Ordered like the messages
/// were received (batch numbers wrap after 2^32 batches; only retry order notices).
pub(super) type MsgId = usize;

const _: () = assert!(usize::BITS >= 64, "message ids pack two u32s into a usize");

pub(super) fn msg_id(batch: u32, index: u32) -> MsgId {
    ((batch as usize) << 32) | index as usize
}

/// The batch number and index of message `id`.
pub(super) fn split(id: MsgId) -> (u32, u32) {
    ((id >> 32) as u32, id as u32)
}

/// What librdkafka (or the sink itself) decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Written and acknowledged as `acks` asks; `bytes` is the value's size.
    Delivered { bytes: usize },
    /// Refused for good (too large, invalid topic, …); counted under `kind`.
    Rejected { kind: &'static str },
    /// Not delivered, and sending it again can work (timeout, purge, fatal error, …).
    Retry,
    /// The broker refused the request holding it as too large: send it again alone.
    Isolate,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Sent,
    Done,
}

struct Pending {
    batch: Arc<Batch>,
    ack: Option<AckToken>,
    states: Vec<State>,
    /// Messages not done yet.
    remaining: usize,
    rejected: usize,
    bytes: u64,
}

#[derive(Default)]
struct Inner {
    next_batch: u32,
    batches: HashMap<u32, Pending>,
    retry: BTreeSet<MsgId>,
    isolate: BTreeSet<MsgId>,
}

/// A batch whose every message is done, settled outside the lock (its acknowledgement runs
/// the source's callback).
struct Settled {
    ack: Option<AckToken>,
    events: usize,
    rejected: usize,
    bytes: u64,
}

/// Shared by the sink task (which adds batches and sends) and librdkafka's delivery-report
/// thread (which reports).
pub(super) struct InFlight {
    sink: String,
    inner: Mutex<Inner>,
    /// Messages librdkafka holds (sent, not yet reported).
    sent: AtomicUsize,
    /// A message was delivered since the last [`InFlight::take_retries`].
    delivered: AtomicBool,
    /// Messages delivered so far.
    delivered_total: AtomicU64,
    /// Woken on every report and on fatal errors: the sink task waits on it.
    wake: Notify,
    dead_letters: DeadLetters,
    events: metrics::Counter,
    bytes: metrics::Counter,
}

impl InFlight {
    #[cfg(test)]
    pub(super) fn new(sink: &str) -> InFlight {
        InFlight::with_dead_letters(sink, DeadLetters::disabled(sink))
    }

    /// Messages refused for good are written to `dead_letters` before their batch settles.
    pub(super) fn with_dead_letters(sink: &str, dead_letters: DeadLetters) -> InFlight {
        InFlight {
            sink: sink.to_string(),
            dead_letters,
            inner: Mutex::new(Inner::default()),
            sent: AtomicUsize::new(0),
            delivered: AtomicBool::new(false),
            delivered_total: AtomicU64::new(0),
            wake: Notify::new(),
            events: metrics::counter!(m::SINK_EVENTS, "sink" => sink.to_string()),
            bytes: metrics::counter!(m::SINK_BYTES, "sink" => sink.to_string()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the table half-updated in a way that matters more
        // than stopping every acknowledgement would.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a batch in; returns its number, or `None` when it was empty (and is settled).
    pub(super) fn add(&self, batch: Arc<Batch>, ack: AckToken) -> Option<u32> {
        let n = batch.len();
        if n == 0 {
            ack.delivered();
            return None;
        }
        let mut inner = self.lock();
        let mut id = inner.next_batch;
        while inner.batches.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        inner.next_batch = id.wrapping_add(1);
        inner.batches.insert(
            id,
            Pending {
                batch,
                ack: Some(ack),
                states: vec![State::Waiting; n],
                remaining: n,
                rejected: 0,
                bytes: 0,
            },
        );
        Some(id)
    }

    /// The events of batch `id` (while it is in flight).
    pub(super) fn batch(&self, id: u32) -> Option<Arc<Batch>> {
        self.lock().batches.get(&id).map(|p| p.batch.clone())
    }

    /// Marks the waiting messages `start..end` of batch `b` as handed to librdkafka and
    /// puts their indices in `marked`. Mark *before* sending, so that a report can never
    /// arrive for a message not marked; [`InFlight::unmark`] what was not sent after all.
    pub(super) fn mark_sent(&self, b: u32, start: u32, end: u32, marked: &mut Vec<u32>) {
        marked.clear();
        let mut inner = self.lock();
        let Some(p) = inner.batches.get_mut(&b) else {
            return;
        };
        let end = (end as usize).min(p.states.len());
        for i in start as usize..end {
            if p.states[i] == State::Waiting {
                p.states[i] = State::Sent;
                marked.push(i as u32);
            }
        }
        self.sent.fetch_add(marked.len(), Ordering::AcqRel);
    }

    /// The messages `indices` of batch `b` were not sent after all: waiting again.
    pub(super) fn unmark(&self, b: u32, indices: &[u32]) {
        let mut inner = self.lock();
        let Some(p) = inner.batches.get_mut(&b) else {
            return;
        };
        for &i in indices {
            if let Some(s) = p.states.get_mut(i as usize) {
                if *s == State::Sent {
                    *s = State::Waiting;
                    self.sent.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Applies `outcome` to the sent message `id` (from a delivery report, or from the sink
    /// when librdkafka refused the message outright). Reports for messages not marked sent (a
    /// duplicate, or one from a producer already replaced) are ignored.
    pub(super) fn report(&self, id: MsgId, outcome: Outcome) {
        self.apply(id, outcome, State::Sent);
        self.wake.notify_one();
    }

    fn apply(&self, id: MsgId, outcome: Outcome, expect: State) {
        let (b, i) = split(id);
        let mut refused = None;
        let settled = self.apply_locked(b, i, outcome, expect, &mut refused);
        // Written before the batch settles: its checkpoint moves past the event then.
        if let Some((batch, kind)) = refused {
            self.dead_letters
                .write(&batch.source, [&batch.events[i as usize]], kind);
        }
        if let Some(s) = settled {
            self.settle(s);
        }
    }

    /// [`InFlight::apply`] under the lock: the batch when it is now settled, and in `refused`
    /// the batch of a message refused for good (for the dead-letter file).
    fn apply_locked(
        &self,
        b: u32,
        i: u32,
        outcome: Outcome,
        expect: State,
        refused: &mut Option<(Arc<Batch>, &'static str)>,
    ) -> Option<Settled> {
        let id = msg_id(b, i);
        let mut inner = self.lock();
        let p = inner.batches.get_mut(&b)?;
        let state = p.states.get_mut(i as usize)?;
        if *state != expect {
            return None;
        }
        if expect == State::Sent {
            self.sent.fetch_sub(1, Ordering::AcqRel);
        }
        match outcome {
            Outcome::Delivered { bytes } => {
                self.delivered.store(true, Ordering::Release);
                self.delivered_total.fetch_add(1, Ordering::Relaxed);
                *state = State::Done;
                p.remaining -= 1;
                p.bytes += bytes as u64;
            }
            Outcome::Rejected { kind } => {
                *state = State::Done;
                p.remaining -= 1;
                p.rejected += 1;
                if self.dead_letters.is_enabled() {
                    *refused = Some((p.batch.clone(), kind));
                }
            }
            Outcome::Retry => {
                *state = State::Waiting;
                inner.retry.insert(id);
                return None;
            }
            Outcome::Isolate => {
                *state = State::Waiting;
                inner.isolate.insert(id);
                return None;
            }
        }
        if p.remaining > 0 {
            return None;
        }
        let p = inner.batches.remove(&b).expect("present above");
        Some(Settled {
            ack: p.ack,
            events: p.states.len(),
            rejected: p.rejected,
            bytes: p.bytes,
        })
    }

    fn settle(&self, s: Settled) {
        self.events.increment((s.events - s.rejected) as u64);
        self.bytes.increment(s.bytes);
        if let Some(ack) = s.ack {
            if s.rejected == 0 {
                ack.delivered();
            } else {
                // Every message is done; the refused ones were counted and reported.
                ack.rejected();
            }
        }
    }

    /// After a producer was destroyed: every message it still held is waiting again, in the
    /// retry set. Returns how many.
    pub(super) fn requeue_sent(&self) -> usize {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut n = 0;
        for (b, p) in inner.batches.iter_mut() {
            for (i, s) in p.states.iter_mut().enumerate() {
                if *s == State::Sent {
                    *s = State::Waiting;
                    inner.retry.insert(msg_id(*b, i as u32));
                    n += 1;
                }
            }
        }
        self.sent.store(0, Ordering::Release);
        n
    }

    /// Takes the messages to send again, oldest first, and whether any message was
    /// delivered since the last call (the peer works again: the retry backoff can reset).
    pub(super) fn take_retries(&self) -> (Vec<MsgId>, bool) {
        let mut inner = self.lock();
        let delivered = self.delivered.swap(false, Ordering::AcqRel);
        (
            std::mem::take(&mut inner.retry).into_iter().collect(),
            delivered,
        )
    }

    /// Takes the messages to send again one per request, oldest first.
    pub(super) fn take_isolated(&self) -> Vec<MsgId> {
        std::mem::take(&mut self.lock().isolate)
            .into_iter()
            .collect()
    }

    /// Messages delivered since the start.
    pub(super) fn delivered_total(&self) -> u64 {
        self.delivered_total.load(Ordering::Relaxed)
    }

    /// Messages librdkafka holds.
    pub(super) fn sent(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    /// True when no batch is held.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().batches.is_empty()
    }

    /// Wakes the sink task (a report arrived, or a fatal error was raised).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`InFlight::wake`] or `timeout`.
    pub(super) async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }

    pub(super) fn sink(&self) -> &str {
        &self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{Event, Stream};
    use std::sync::mpsc;

    fn batch(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            source: "s".into(),
            events: (0..n)
                .map(|i| Event::new(0, Stream::Stdout, Bytes::from(format!("{i}"))))
                .collect(),
        })
    }

    fn token() -> (AckToken, mpsc::Receiver<bool>) {
        let (tx, rx) = mpsc::channel();
        (
            AckToken::new(Some(Box::new(move |ok| {
                let _ = tx.send(ok);
            }))),
            rx,
        )
    }

    #[test]
    fn settles_only_when_every_message_is_done() {
        let f = InFlight::new("k");
        let (t, rx) = token();
        let b = f.add(batch(3), t).unwrap();
        let mut marked = Vec::new();
        f.mark_sent(b, 0, 3, &mut marked);
        assert_eq!(marked, vec![0, 1, 2]);
        assert_eq!(f.sent(), 3);
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 });
        f.report(msg_id(b, 2), Outcome::Retry);
        assert!(rx.try_recv().is_err());
        assert_eq!(f.take_retries(), (vec![msg_id(b, 2)], true));
        f.report(msg_id(b, 1), Outcome::Rejected { kind: "too_large" });
        assert!(rx.try_recv().is_err(), "message 2 is still undelivered");
        f.mark_sent(b, 0, 3, &mut marked);
        assert_eq!(marked, vec![2], "only the waiting message");
        f.report(msg_id(b, 2), Outcome::Delivered { bytes: 1 });
        assert_eq!(
            rx.try_recv(),
            Ok(true),
            "a refused message settles its batch"
        );
        assert!(f.is_empty());
        assert_eq!(f.sent(), 0);
    }

    #[test]
    fn stale_and_duplicate_reports_are_ignored() {
        let f = InFlight::new("k");
        let (t, rx) = token();
        let b = f.add(batch(1), t).unwrap();
        let mut marked = Vec::new();
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 }); // never sent
        assert!(rx.try_recv().is_err());
        f.mark_sent(b, 0, 1, &mut marked);
        f.unmark(b, &marked); // queue full
        assert_eq!(f.sent(), 0);
        f.mark_sent(b, 0, 1, &mut marked);
        assert_eq!(f.requeue_sent(), 1, "its producer was destroyed");
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 }); // from the old producer
        assert!(rx.try_recv().is_err());
        assert_eq!(f.take_retries(), (vec![msg_id(b, 0)], false));
        f.mark_sent(b, 0, 1, &mut marked);
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 });
        assert_eq!(rx.try_recv(), Ok(true));
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 });
    }

    #[test]
    fn dropping_the_table_leaves_batches_undelivered() {
        let f = InFlight::new("k");
        let (t, rx) = token();
        let b = f.add(batch(2), t).unwrap();
        f.mark_sent(b, 0, 1, &mut Vec::new());
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 });
        drop(f);
        assert_eq!(rx.try_recv(), Ok(false));
    }

    #[test]
    fn retries_come_back_oldest_first() {
        let f = InFlight::new("k");
        let b1 = f.add(batch(2), AckToken::new(None)).unwrap();
        let b2 = f.add(batch(2), AckToken::new(None)).unwrap();
        f.mark_sent(b1, 0, 2, &mut Vec::new());
        f.mark_sent(b2, 0, 2, &mut Vec::new());
        for id in [msg_id(b2, 1), msg_id(b1, 1), msg_id(b2, 0), msg_id(b1, 0)] {
            f.report(id, Outcome::Retry);
        }
        assert_eq!(
            f.take_retries().0,
            vec![msg_id(b1, 0), msg_id(b1, 1), msg_id(b2, 0), msg_id(b2, 1)]
        );
    }

    #[test]
    fn a_refused_message_goes_to_the_dead_letter_file_before_its_batch_settles() {
        let d = tempfile::tempdir().unwrap();
        let mut cx = logwharf_collector::SinkContext::for_test("k");
        cx.data_dir = d.path().to_path_buf();
        cx.dead_letter = Some(logwharf_config::DeadLetterConfig {
            path: None,
            max_size: logwharf_config::ByteSize(1 << 20),
        });
        let f = InFlight::with_dead_letters("k", DeadLetters::new(&cx));
        let (t, rx) = token();
        let b = f.add(batch(2), t).unwrap();
        f.mark_sent(b, 0, 2, &mut Vec::new());
        f.report(msg_id(b, 0), Outcome::Delivered { bytes: 1 });
        f.report(
            msg_id(b, 1),
            Outcome::Rejected {
                kind: "message_too_large",
            },
        );
        assert_eq!(rx.try_recv(), Ok(true));
        let text = std::fs::read_to_string(d.path().join("dead-letter/k.log")).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["dead_letter_reason"], "message_too_large");
        assert_eq!(v["dead_letter_sink"], "k");
    }
}
