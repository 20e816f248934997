//! The ordered-acknowledgement tracker every checkpointing source uses.
//!
//! A source registers each batch it sends with the value its checkpoint takes once that batch
//! is delivered ([`OrderedAcks::track`]). Sinks settle batches out of order (and several sinks
//! share one batch), but a checkpoint may only move to the value of the longest *delivered
//! prefix*: batch 3 delivered before batch 2 waits for it. A batch that was not delivered
//! blocks the tracker for the rest of the run — nothing after it is committed, so a restart
//! reads it again (at-least-once). The callbacks run on sink tasks and may outlive the
//! source, so the tracker commits through its own `on_advance` callback.

use super::OnDelivered;
use crate::checkpoint::CheckpointStore;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Called with each value that becomes the checkpoint, in order, under the tracker's lock (so
/// commits never overtake each other); it must not call back into the tracker.
pub type OnAdvance<T> = Box<dyn Fn(T) + Send + Sync>;

pub struct OrderedAcks<T> {
    state: Mutex<State<T>>,
    on_advance: OnAdvance<T>,
    /// Told once, when the first undelivered batch blocks the tracker.
    on_blocked: Box<dyn Fn() + Send + Sync>,
}

struct State<T> {
    /// Sequence number of `in_flight[0]`.
    front_seq: u64,
    /// Values of the batches sent and not yet part of the delivered prefix (`None`: a batch
    /// that moves no checkpoint), with whether each has been delivered.
    in_flight: VecDeque<(Option<T>, bool)>,
    blocked: bool,
    stopped: bool,
}

impl<T: Send + 'static> OrderedAcks<T> {
    pub fn new(
        on_advance: impl Fn(T) + Send + Sync + 'static,
        on_blocked: impl Fn() + Send + Sync + 'static,
    ) -> Arc<OrderedAcks<T>> {
        Arc::new(OrderedAcks {
            state: Mutex::new(State {
                front_seq: 0,
                in_flight: VecDeque::new(),
                blocked: false,
                stopped: false,
            }),
            on_advance: Box::new(on_advance),
            on_blocked: Box::new(on_blocked),
        })
    }

    /// Registers a batch about to be sent whose delivery (with every batch before it) makes
    /// `value` the checkpoint; returns the batch's callback.
    pub fn track(self: &Arc<Self>, value: Option<T>) -> OnDelivered {
        let mut s = self.lock();
        if s.blocked || s.stopped {
            return Box::new(|_| {});
        }
        let seq = s.front_seq + s.in_flight.len() as u64;
        s.in_flight.push_back((value, false));
        drop(s);
        let me = self.clone();
        Box::new(move |delivered| me.settle(seq, delivered))
    }

    fn settle(&self, seq: u64, delivered: bool) {
        let mut s = self.lock();
        if s.blocked || s.stopped || seq < s.front_seq {
            return;
        }
        let i = (seq - s.front_seq) as usize;
        if i >= s.in_flight.len() {
            return;
        }
        if !delivered {
            s.blocked = true;
            s.in_flight.clear();
            (self.on_blocked)();
            return;
        }
        s.in_flight[i].1 = true;
        let mut advanced = None;
        while s.in_flight.front().is_some_and(|(_, done)| *done) {
            if let Some((Some(v), _)) = s.in_flight.pop_front() {
                advanced = Some(v);
            }
            s.front_seq += 1;
        }
        if let Some(v) = advanced {
            (self.on_advance)(v);
        }
    }

    /// No more commits, whatever settles later (the container is gone).
    pub fn stop(&self) {
        let mut s = self.lock();
        s.stopped = true;
        s.in_flight.clear();
    }

    /// Runs `f` under the tracker's lock, so that it is ordered with the commits (a commit
    /// made outside the tracker, such as a start position that needs no delivery).
    pub fn with_lock<R>(&self, f: impl FnOnce(bool) -> R) -> R {
        let s = self.lock();
        f(s.stopped)
    }

    /// Batches sent and not yet committed (nor given up on).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OrderedAcks<serde_json::Value> {
    /// A tracker whose values are written to the checkpoint store under `key` as they
    /// become the checkpoint.
    pub fn for_checkpoint(store: Arc<CheckpointStore>, key: String) -> Arc<Self> {
        let what = key.clone();
        OrderedAcks::new(
            move |v| store.set(&key, v),
            move || tracing::warn!(checkpoint = %what, "a batch was not delivered; this checkpoint stays where it is for the rest of this run, so a restart reads those lines again"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Recorded = (
        Arc<OrderedAcks<u32>>,
        Arc<Mutex<Vec<u32>>>,
        Arc<AtomicUsize>,
    );

    fn tracker() -> Recorded {
        let commits = Arc::new(Mutex::new(Vec::new()));
        let blocked = Arc::new(AtomicUsize::new(0));
        let (c, b) = (commits.clone(), blocked.clone());
        let t = OrderedAcks::new(
            move |v| c.lock().unwrap().push(v),
            move || {
                b.fetch_add(1, Ordering::SeqCst);
            },
        );
        (t, commits, blocked)
    }

    #[test]
    fn advances_only_over_the_delivered_prefix() {
        let (t, commits, _) = tracker();
        let a = t.track(Some(10));
        let b = t.track(Some(20));
        let c = t.track(Some(30));
        c(true);
        assert!(
            commits.lock().unwrap().is_empty(),
            "batches before it are in flight"
        );
        a(true);
        assert_eq!(*commits.lock().unwrap(), vec![10]);
        b(true);
        assert_eq!(
            *commits.lock().unwrap(),
            vec![10, 30],
            "one commit for the run 20..30"
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn batches_without_a_value_keep_their_place_in_the_order() {
        let (t, commits, _) = tracker();
        let a = t.track(Some(1));
        let b = t.track(None);
        let c = t.track(None);
        b(true);
        c(true);
        assert!(commits.lock().unwrap().is_empty());
        a(true);
        assert_eq!(*commits.lock().unwrap(), vec![1]);
        t.track(None)(true);
        assert_eq!(*commits.lock().unwrap(), vec![1], "nothing new to commit");
    }

    #[test]
    fn an_undelivered_batch_blocks_the_rest_of_the_run() {
        let (t, commits, blocked) = tracker();
        let a = t.track(Some(10));
        let b = t.track(Some(20));
        let c = t.track(Some(30));
        a(true);
        b(false);
        c(true);
        t.track(Some(40))(true);
        assert_eq!(*commits.lock().unwrap(), vec![10]);
        assert_eq!(blocked.load(Ordering::SeqCst), 1, "told once");
    }

    #[test]
    fn stopped_commits_nothing_more() {
        let (t, commits, _) = tracker();
        let a = t.track(Some(10));
        t.stop();
        a(true);
        t.track(Some(20))(true);
        assert!(commits.lock().unwrap().is_empty());
        assert!(t.with_lock(|stopped| stopped));
    }

    #[test]
    fn settling_from_many_threads_commits_in_order() {
        let (t, commits, _) = tracker();
        let cbs: Vec<_> = (1..=200u32).map(|i| t.track(Some(i))).collect();
        let handles: Vec<_> = cbs
            .into_iter()
            .rev()
            .map(|cb| std::thread::spawn(move || cb(true)))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let c = commits.lock().unwrap();
        assert!(c.windows(2).all(|w| w[0] < w[1]), "commits in order: {c:?}");
        assert_eq!(c.last(), Some(&200));
    }
}
