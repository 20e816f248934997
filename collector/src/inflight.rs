//! A supervised sink's buffer as the supervisor holds it across restarts.
//!
//! [`SupervisedInput`] owns the sink's queue ([`Queue`]: the channel from the router plus the
//! batches handed back after a failure) and a [`Ledger`] of the batches the sink has taken and
//! not settled. The sink gets a [`SinkInput`] whose batches carry a token of the ledger's
//! instead of the router's: settling it settles the router's token (and the source may
//! checkpoint); dropping it unsettled leaves the batch in the ledger. When the sink's task
//! fails, [`SupervisedInput::requeue`] puts every batch still in the ledger back at the front
//! of the queue, oldest first, so the restarted sink sends it again: nothing it took is lost and
//! nothing undelivered is acknowledged, at the price of duplicates for a batch it had partly
//! written (at-least-once). When the sink ends normally, or the supervisor is stopped at the
//! shutdown deadline, the ledger is dropped and what it holds counts as not delivered: the
//! source's checkpoint stays before it and a restart of logwharf reads it again.

use crate::ack::AckToken;
use crate::event::Batch;
use crate::flows::Flows;
use crate::health::ComponentHealth;
use crate::sink::{SinkBatch, SinkInput};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// A sink's queue: batches handed back after a failure first, then the router's channel,
/// whose batches are given out round-robin between their senders ([`Flows`]).
pub(crate) struct Queue {
    rx: mpsc::UnboundedReceiver<SinkBatch>,
    requeued: VecDeque<SinkBatch>,
    /// Batches taken off the channel, not yet given to the sink.
    waiting: Flows,
}

impl Queue {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<SinkBatch>) -> Queue {
        Queue {
            rx,
            requeued: VecDeque::new(),
            waiting: Flows::default(),
        }
    }

    pub(crate) async fn recv(&mut self) -> Option<SinkBatch> {
        if let Some(sb) = self.try_recv() {
            return Some(sb);
        }
        let sb = self.rx.recv().await?;
        self.waiting.push(sb);
        self.try_recv()
    }

    pub(crate) fn try_recv(&mut self) -> Option<SinkBatch> {
        if let Some(sb) = self.requeued.pop_front() {
            return Some(sb);
        }
        while let Ok(sb) = self.rx.try_recv() {
            self.waiting.push(sb);
        }
        self.waiting.pop()
    }

    /// Every source feeding it has stopped and nothing is left to take.
    fn drained(&self) -> bool {
        self.requeued.is_empty()
            && self.waiting.is_empty()
            && self.rx.is_closed()
            && self.rx.is_empty()
    }
}

/// Where a [`SinkInput`] puts its queue back when it is dropped.
#[derive(Default)]
pub(crate) struct Slot(Mutex<Option<Queue>>);

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Queue>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn put(&self, q: Queue) {
        *self.lock() = Some(q);
    }
}

struct Entry {
    batch: Arc<Batch>,
    ack: AckToken,
    flow: u64,
}

/// The batches a sink has taken and not settled, by the order it took them.
pub(crate) struct Ledger {
    next: AtomicU64,
    entries: Mutex<BTreeMap<u64, Entry>>,
    health: ComponentHealth,
    /// The sink's `/status` entry: what it delivered.
    status: Arc<crate::status::SinkStats>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `sb`'s token and gives the sink one of the ledger's in its place.
    pub(crate) fn track(self: &Arc<Self>, sb: SinkBatch) -> SinkBatch {
        let SinkBatch {
            batch,
            ack,
            _permit,
            flow,
        } = sb;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Entry {
                batch: batch.clone(),
                ack,
                flow,
            },
        );
        // Weak: a sink task that outlives its supervisor must not keep the ledger alive.
        let me = Arc::downgrade(self);
        let ack = AckToken::new(Some(Box::new(move |settled| {
            if let (true, Some(l)) = (settled, me.upgrade()) {
                l.settle(id);
            }
        })));
        SinkBatch {
            batch,
            ack,
            _permit,
            flow,
        }
    }

    fn settle(&self, id: u64) {
        let entry = self.lock().remove(&id);
        if let Some(e) = entry {
            // Outside the lock: this may run the source's checkpoint callback.
            e.ack.delivered();
            self.health.delivered();
            let bytes = e
                .batch
                .events
                .iter()
                .map(crate::event::Event::size)
                .sum::<usize>();
            self.status.delivered(e.batch.len() as u64, bytes as u64);
        }
    }

    fn drain(&self) -> Vec<SinkBatch> {
        std::mem::take(&mut *self.lock())
            .into_values()
            .map(|e| SinkBatch {
                batch: e.batch,
                ack: e.ack,
                _permit: None,
                flow: e.flow,
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The supervisor's side of a sink's buffer.
pub(crate) struct SupervisedInput {
    name: Arc<str>,
    slot: Arc<Slot>,
    ledger: Arc<Ledger>,
}

impl SupervisedInput {
    pub(crate) fn new(
        name: Arc<str>,
        rx: mpsc::UnboundedReceiver<SinkBatch>,
        health: ComponentHealth,
    ) -> SupervisedInput {
        let slot = Arc::new(Slot::default());
        slot.put(Queue::new(rx));
        let status = crate::status::global().sink(&name);
        SupervisedInput {
            name,
            slot,
            ledger: Arc::new(Ledger {
                next: AtomicU64::new(0),
                entries: Mutex::new(BTreeMap::new()),
                health,
                status,
            }),
        }
    }

    /// The input for the next run of the sink; `None` while the previous run still holds it
    /// (a task it spawned has not ended yet).
    pub(crate) fn take(&self) -> Option<SinkInput> {
        let q = self.slot.lock().take()?;
        Some(SinkInput::new(
            self.name.clone(),
            q,
            Some(self.slot.clone()),
            Some(self.ledger.clone()),
        ))
    }

    /// After a failed run: every batch the sink took and did not settle goes back to the front
    /// of its queue, oldest first. Returns how many.
    pub(crate) fn requeue(&self) -> usize {
        let back = self.ledger.drain();
        let n = back.len();
        if let Some(q) = self.slot.lock().as_mut() {
            for sb in back.into_iter().rev() {
                q.requeued.push_front(sb);
            }
        }
        n
    }

    /// Nothing is left for the sink: its sources have stopped and it took everything.
    pub(crate) fn drained(&self) -> bool {
        self.slot.lock().as_ref().is_some_and(Queue::drained)
    }

    /// Batches taken and not settled (for logs).
    pub(crate) fn unsettled(&self) -> usize {
        self.ledger.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Stream};
    use crate::health::Health;

    fn batch(tag: &str, tx: &std::sync::mpsc::Sender<(String, bool)>) -> SinkBatch {
        let tx = tx.clone();
        let tag2 = tag.to_string();
        SinkBatch {
            batch: Arc::new(Batch {
                source: tag.into(),
                events: vec![Event::new(0, Stream::Stdout, bytes::Bytes::from("x"))],
            }),
            ack: AckToken::new(Some(Box::new(move |ok| tx.send((tag2, ok)).unwrap()))),
            _permit: None,
            flow: 0,
        }
    }

    #[tokio::test]
    async fn a_failed_run_hands_its_unsettled_batches_to_the_next_in_order() {
        let (acks_tx, acks) = std::sync::mpsc::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Health::new().register("sinks.t");
        let input = SupervisedInput::new("t".into(), rx, health);
        for t in ["a", "b", "c", "d"] {
            tx.send(batch(t, &acks_tx)).unwrap();
        }

        // Run 1 delivers "a", holds "b" and drops "c" unsettled, then dies.
        let mut run = input.take().unwrap();
        assert!(input.take().is_none(), "one run at a time");
        run.recv().await.unwrap().ack.delivered();
        let held = run.recv().await.unwrap();
        drop(run.recv().await.unwrap());
        assert_eq!(acks.try_recv(), Ok(("a".into(), true)));
        drop(run);
        drop(held);
        assert!(acks.try_recv().is_err(), "nothing undelivered is settled");
        assert_eq!(input.unsettled(), 2);
        assert_eq!(input.requeue(), 2);

        // Run 2 gets b, c again, then d.
        let mut run = input.take().unwrap();
        for want in ["b", "c", "d"] {
            let sb = run.recv().await.unwrap();
            assert_eq!(&*sb.batch.source, want);
            sb.ack.delivered();
            assert_eq!(acks.try_recv(), Ok((want.into(), true)));
        }
        drop(tx);
        assert!(run.recv().await.is_none());
        drop(run);
        assert!(input.drained());
    }

    #[tokio::test]
    async fn dropping_the_supervisor_leaves_unsettled_batches_undelivered() {
        let (acks_tx, acks) = std::sync::mpsc::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let input = SupervisedInput::new("t".into(), rx, Health::new().register("sinks.t"));
        tx.send(batch("a", &acks_tx)).unwrap();
        let mut run = input.take().unwrap();
        let sb = run.recv().await.unwrap();
        drop(sb);
        drop(run);
        drop(input);
        assert_eq!(acks.try_recv(), Ok(("a".into(), false)));
    }
}
