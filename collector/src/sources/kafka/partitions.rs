//! The partitions one group member owns, and what may be committed for each.
//!
//! Each assignment of a partition gets a fresh [`OrderedAcks`] tracker and a generation
//! number. A batch registers, for every partition it carries messages of, the offset after
//! its last one; the tracker moves the partition's *settled* offset only over the delivered
//! prefix, so a commit never skips a message that some sink still holds. A revoked partition
//! waits a bounded time for its batches in flight, yields what settled (to commit before the
//! group moves it) and its tracker stops: a batch settling later commits nothing, and batches
//! read but not yet sent are recognised by their old generation and dropped — the partition's
//! next owner reads both again (at-least-once, never a gap).

use crate::ack::ordered::OrderedAcks;
use crate::ack::OnDelivered;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A topic and partition.
pub type Tp = (Arc<str>, i32);

/// No offset settled yet.
const NONE: i64 = -1;

struct Owned {
    generation: u64,
    acks: Arc<OrderedAcks<i64>>,
    /// The offset after the last message every sink delivered (the next one to read).
    settled: Arc<AtomicI64>,
    /// What was last handed out for committing.
    committed: i64,
}

#[derive(Default)]
pub struct Partitions {
    owned: HashMap<Tp, Owned>,
    next_generation: u64,
}

impl Partitions {
    /// Takes `tp` on (keeps it as it is when already owned); returns its generation.
    pub fn assign(&mut self, tp: Tp) -> u64 {
        if let Some(o) = self.owned.get(&tp) {
            return o.generation;
        }
        self.next_generation += 1;
        let settled = Arc::new(AtomicI64::new(NONE));
        let s = settled.clone();
        let what = format!("{}[{}]", tp.0, tp.1);
        let acks = OrderedAcks::new(
            move |offset| s.store(offset, Ordering::Release),
            move || tracing::warn!(partition = %what, "a batch was not delivered; this partition's offset is not committed any further while this member owns it, so its next owner reads those messages again"),
        );
        self.owned.insert(
            tp,
            Owned {
                generation: self.next_generation,
                acks,
                settled,
                committed: NONE,
            },
        );
        self.next_generation
    }

    /// The generation of `tp`'s current assignment (`None`: not owned).
    pub fn generation(&self, tp: &Tp) -> Option<u64> {
        self.owned.get(tp).map(|o| o.generation)
    }

    /// Registers a batch carrying messages of `tp` read under `generation`, up to
    /// `next_offset` (exclusive); `None` when that assignment is over (drop the messages).
    pub fn track(&self, tp: &Tp, generation: u64, next_offset: i64) -> Option<OnDelivered> {
        let o = self.owned.get(tp).filter(|o| o.generation == generation)?;
        Some(o.acks.track(Some(next_offset)))
    }

    /// Offsets settled since they were last handed out, for the periodic commit.
    pub fn due(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, o) in &mut self.owned {
            let s = o.settled.load(Ordering::Acquire);
            if s > o.committed {
                o.committed = s;
                out.push((tp.clone(), s));
            }
        }
        out
    }

    /// A commit of `offsets` failed: hand them out again with the next [`Partitions::due`].
    pub fn retry(&mut self, offsets: &[(Tp, i64)]) {
        for (tp, offset) in offsets {
            if let Some(o) = self.owned.get_mut(tp) {
                if o.committed == *offset {
                    o.committed = NONE;
                }
            }
        }
    }

    /// Gives up `tps`: waits until their batches in flight settled or `timeout` passed, then
    /// stops their trackers. Returns every settled offset (to commit now, while the member
    /// still owns them) and how many batches were left unsettled.
    pub fn revoke(&mut self, tps: &[Tp], timeout: Duration) -> (Vec<(Tp, i64)>, usize) {
        let gone: Vec<(Tp, Owned)> = tps
            .iter()
            .filter_map(|tp| self.owned.remove(tp).map(|o| (tp.clone(), o)))
            .collect();
        let deadline = Instant::now() + timeout;
        while gone.iter().any(|(_, o)| o.acks.in_flight() > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut unsettled = 0;
        let mut offsets = Vec::new();
        for (tp, o) in gone {
            let left = o.acks.in_flight();
            // After `stop` nothing settles any more: this reading is final.
            o.acks.stop();
            let settled = o.settled.load(Ordering::Acquire);
            unsettled += left;
            if settled != NONE {
                offsets.push((tp, settled));
            }
        }
        (offsets, unsettled)
    }

    /// Every owned partition.
    pub fn owned(&self) -> Vec<Tp> {
        self.owned.keys().cloned().collect()
    }

    /// Batches in flight over every owned partition.
    pub fn in_flight(&self) -> usize {
        self.owned.values().map(|o| o.acks.in_flight()).sum()
    }
}
