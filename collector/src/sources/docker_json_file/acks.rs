//! From batch acknowledgements to a container's checkpoint.
//!
//! Each batch a reader sends carries the [`ResumePoint`] that holds once it is delivered. The
//! checkpoint may only move to the resume point of the longest *delivered prefix* of the
//! batches sent: batch 3 delivered before batch 2 must wait for it, and a batch that was not
//! delivered blocks the checkpoint for the rest of the run (a restart re-reads from there:
//! at-least-once). The callbacks run on sink tasks and may outlive the reader (`--once`
//! returns before the sinks finish), so they write the [`CheckpointStore`] themselves.

use super::position::ResumePoint;
use crate::ack::OnDelivered;
use crate::checkpoint::CheckpointStore;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub struct AckTracker {
    key: String,
    container: String,
    store: Arc<CheckpointStore>,
    lag: metrics::Gauge,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Sequence number of `in_flight[0]`.
    front_seq: u64,
    /// Resume points of the batches sent and not yet part of the delivered prefix, with
    /// whether each one has been delivered.
    in_flight: VecDeque<(ResumePoint, bool)>,
    committed: Option<ResumePoint>,
    /// A batch was not delivered: the checkpoint cannot pass it in this run.
    blocked: bool,
    /// The container is gone; its entry must not come back.
    removed: bool,
    /// The newest file's order number and size, for the lag gauge.
    newest: Option<(u64, u64)>,
}

impl AckTracker {
    /// `committed`: the position the checkpoint already holds (resumed from).
    pub fn new(
        store: Arc<CheckpointStore>,
        key: String,
        container: String,
        lag: metrics::Gauge,
        committed: Option<ResumePoint>,
    ) -> Arc<AckTracker> {
        Arc::new(AckTracker {
            key,
            container,
            store,
            lag,
            inner: Mutex::new(Inner {
                committed,
                ..Inner::default()
            }),
        })
    }

    /// Registers a batch about to be sent whose delivery makes `resume` the checkpoint (once
    /// every batch before it is delivered too); returns the batch's callback.
    pub fn track(self: &Arc<AckTracker>, resume: ResumePoint) -> OnDelivered {
        let mut g = self.inner.lock().unwrap();
        if g.blocked || g.removed {
            return Box::new(|_| {});
        }
        let seq = g.front_seq + g.in_flight.len() as u64;
        g.in_flight.push_back((resume, false));
        let me = self.clone();
        Box::new(move |delivered| me.settle(seq, delivered))
    }

    fn settle(&self, seq: u64, delivered: bool) {
        let mut g = self.inner.lock().unwrap();
        if g.blocked || g.removed || seq < g.front_seq {
            return;
        }
        let i = (seq - g.front_seq) as usize;
        if i >= g.in_flight.len() {
            return;
        }
        if !delivered {
            g.blocked = true;
            g.in_flight.clear();
            tracing::warn!(
                container = %self.container,
                checkpoint = ?g.committed.as_ref().map(|r| (r.file.name.as_str(), r.offset)),
                "a batch of this container's lines was not delivered; its checkpoint stays where it is for the rest of this run, so a restart reads those lines again"
            );
            return;
        }
        g.in_flight[i].1 = true;
        let mut advanced = None;
        while g.in_flight.front().is_some_and(|(_, done)| *done) {
            advanced = g.in_flight.pop_front().map(|(r, _)| r);
            g.front_seq += 1;
        }
        if let Some(r) = advanced {
            self.store.set(&self.key, r.to_saved().to_json());
            g.committed = Some(r);
            self.update_lag(&g);
        }
    }

    /// Makes `resume` the checkpoint at once: a position that needs no delivery (starting
    /// at the end of a file), so that a restart does not skip what is written meanwhile.
    pub fn commit_now(&self, resume: ResumePoint) {
        let mut g = self.inner.lock().unwrap();
        if g.removed {
            return;
        }
        self.store.set(&self.key, resume.to_saved().to_json());
        g.committed = Some(resume);
    }

    /// The newest file's size, for `logwharf_checkpoint_lag_bytes`.
    pub fn note_newest(&self, file_seq: u64, size: u64) {
        let mut g = self.inner.lock().unwrap();
        g.newest = Some((file_seq, size));
        self.update_lag(&g);
    }

    fn update_lag(&self, g: &Inner) {
        if let Some((seq, size)) = g.newest {
            let lag = match &g.committed {
                Some(c) if c.file.seq == seq => size.saturating_sub(c.offset),
                // Acknowledged up to an older file: at least the whole newest file is behind.
                _ => size,
            };
            self.lag.set(lag as f64);
        }
    }

    /// The container is gone: drop its checkpoint for good.
    pub fn remove(&self) {
        let mut g = self.inner.lock().unwrap();
        g.removed = true;
        g.in_flight.clear();
        self.store.remove(&self.key);
        self.lag.set(0.0);
    }

    /// The checkpointed position (what the store holds for this container).
    pub fn committed(&self) -> Option<ResumePoint> {
        self.inner.lock().unwrap().committed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::docker_json_file::fingerprint::Fingerprint;
    use crate::sources::docker_json_file::position::{FileIdentity, SavedPosition};

    fn point(offset: u64) -> ResumePoint {
        ResumePoint {
            file: Arc::new(FileIdentity {
                seq: 0,
                name: "c-json.log".into(),
                dev: 1,
                ino: 2,
                fp: Fingerprint { crc: 3, len: 4 },
            }),
            offset,
        }
    }

    fn stored(store: &CheckpointStore) -> Option<u64> {
        store
            .get("src/c")
            .and_then(|v| SavedPosition::from_json(&v))
            .map(|p| p.offset)
    }

    fn tracker() -> (tempfile::TempDir, Arc<CheckpointStore>, Arc<AckTracker>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let t = AckTracker::new(
            store.clone(),
            "src/c".into(),
            "c".into(),
            metrics::Gauge::noop(),
            None,
        );
        (dir, store, t)
    }

    #[test]
    fn advances_only_over_the_delivered_prefix() {
        let (_d, store, t) = tracker();
        let a = t.track(point(10));
        let b = t.track(point(20));
        let c = t.track(point(30));
        c(true);
        assert_eq!(
            stored(&store),
            None,
            "batches before it are still in flight"
        );
        a(true);
        assert_eq!(stored(&store), Some(10));
        b(true);
        assert_eq!(stored(&store), Some(30));
        assert_eq!(t.committed().unwrap().offset, 30);
    }

    #[test]
    fn an_undelivered_batch_blocks_the_checkpoint() {
        let (_d, store, t) = tracker();
        let a = t.track(point(10));
        let b = t.track(point(20));
        let c = t.track(point(30));
        a(true);
        b(false);
        c(true);
        assert_eq!(stored(&store), Some(10));
        t.track(point(40))(true);
        assert_eq!(stored(&store), Some(10));
    }

    #[test]
    fn removal_drops_the_entry_and_late_acks_do_not_bring_it_back() {
        let (_d, store, t) = tracker();
        let a = t.track(point(10));
        t.commit_now(point(5));
        assert_eq!(stored(&store), Some(5));
        t.remove();
        a(true);
        assert_eq!(stored(&store), None);
    }
}
