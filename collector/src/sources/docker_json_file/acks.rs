//! From batch acknowledgements to one sink's checkpoint of one container.
//!
//! Each batch a reader sends carries the [`ResumePoint`] that holds once it is delivered; the
//! shared ordered tracker ([`OrderedAcks`]) moves the checkpoint only over the delivered
//! prefix. Every sink has its own reader and so its own tracker, keyed
//! `"<source>/<container id>/<sink>"`: a sink that lags holds back only its own checkpoint.
//! Each commit is also told to the container's [`Hold`], which keeps rotated files open
//! until every sink has delivered past them, and the checkpoint carries what the hold saw of
//! the files from there on (sizes, the files after it): what a restart needs to count what
//! Docker deletes while logwharf is not running ([`super::loss`]). The hold's loop
//! [`AckTracker::restamp`]s it when that changes, so a sink that delivers nothing for a while
//! still leaves it behind.

use super::hold::Hold;
use super::position::{ResumePoint, SavedPosition};
use crate::ack::ordered::OrderedAcks;
use crate::ack::OnDelivered;
use crate::checkpoint::CheckpointStore;
use crate::status::{Delivered, PositionStats};
use std::sync::{Arc, Mutex, OnceLock};

pub struct AckTracker {
    acks: Arc<OrderedAcks<ResumePoint>>,
    shared: Arc<Shared>,
}

struct Shared {
    key: String,
    store: Arc<CheckpointStore>,
    lag: metrics::Gauge,
    /// The container's hold and this sink's index in it.
    hold: Option<(Arc<Hold>, usize)>,
    state: Mutex<State>,
    /// Where `/status` learns this sink's position in the container.
    status: OnceLock<Arc<PositionStats>>,
}

#[derive(Default)]
struct State {
    committed: Option<ResumePoint>,
    /// The newest file's order number and size, for the lag gauge.
    newest: Option<(u64, u64)>,
}

impl Shared {
    fn commit(&self, r: ResumePoint) {
        self.store.set_json(&self.key, &self.saved(&r));
        self.tell_status(&r);
        if let Some((hold, sink)) = &self.hold {
            hold.delivered(*sink, &r);
        }
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.committed = Some(r);
        update_lag(&self.lag, &g);
    }

    /// Tells `/status` where this sink's checkpoint is and how much of the log lies after it.
    /// Runs where the checkpoint is written (per delivered batch, or as the hold restamps).
    fn tell_status(&self, r: &ResumePoint) {
        let (Some(st), Some((hold, _))) = (self.status.get(), &self.hold) else {
            return;
        };
        let (dev, ino, fp) = (r.file.dev, r.file.ino, Some(r.file.fp));
        let (behind, newer) = match hold.facts(dev, ino, fp) {
            Some(f) => (
                f.size.saturating_sub(r.offset) + f.later.iter().map(|l| l.size).sum::<u64>(),
                hold.newer_than(dev, ino, fp).unwrap_or(f.later.len()),
            ),
            None => (0, 0),
        };
        st.set_delivered(Delivered {
            file: r.file.name.clone(),
            offset: r.offset,
            behind,
            newer_files: newer as u32,
        });
    }

    /// The checkpoint of `r`, with what the hold knows of its file and the files after it.
    fn saved(&self, r: &ResumePoint) -> SavedPosition {
        let mut s = r.to_saved();
        let facts = self
            .hold
            .as_ref()
            .and_then(|(h, _)| h.facts(r.file.dev, r.file.ino, Some(r.file.fp)));
        if let Some(f) = facts {
            s.size = Some(f.size.max(r.offset));
            s.complete = f.complete;
            s.later = f.later;
        }
        s
    }
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
        AckTracker::with_hold(store, key, container, lag, committed, None)
    }

    /// As [`AckTracker::new`], telling every commit to `hold` as sink number `sink`.
    pub fn with_hold(
        store: Arc<CheckpointStore>,
        key: String,
        container: String,
        lag: metrics::Gauge,
        committed: Option<ResumePoint>,
        hold: Option<(Arc<Hold>, usize)>,
    ) -> Arc<AckTracker> {
        if let (Some((h, sink)), Some(c)) = (&hold, &committed) {
            h.delivered(*sink, c);
        }
        let shared = Arc::new(Shared {
            key: key.clone(),
            store,
            lag,
            hold,
            status: OnceLock::new(),
            state: Mutex::new(State {
                committed,
                newest: None,
            }),
        });
        let s = shared.clone();
        let acks = OrderedAcks::new(
            move |r| s.commit(r),
            move || {
                tracing::warn!(
                    container = %container,
                    checkpoint = %key,
                    "a batch of this container's lines was not delivered; this sink's checkpoint stays where it is for the rest of this run, so a restart reads those lines again"
                )
            },
        );
        Arc::new(AckTracker { acks, shared })
    }

    /// Registers a batch about to be sent whose delivery makes `resume` the checkpoint (once
    /// every batch before it is delivered too); returns the batch's callback.
    pub fn track(&self, resume: ResumePoint) -> OnDelivered {
        self.acks.track(Some(resume))
    }

    /// Makes `resume` the checkpoint at once: a position that needs no delivery (starting
    /// at the end of a file), so that a restart does not skip what is written meanwhile.
    pub fn commit_now(&self, resume: ResumePoint) {
        self.acks.with_lock(|stopped| {
            if !stopped {
                self.shared.commit(resume);
            }
        });
    }

    /// Writes the checkpoint again with what the hold knows now of the files from it on
    /// (nothing moves: the position stays what was delivered).
    pub fn restamp(&self) {
        self.acks.with_lock(|stopped| {
            let committed = self.committed();
            if let (false, Some(r)) = (stopped, committed) {
                self.shared
                    .store
                    .set_json(&self.shared.key, &self.shared.saved(&r));
                self.shared.tell_status(&r);
            }
        });
    }

    /// Reports this sink's position to `/status` from now on.
    pub fn report_to(&self, status: Arc<PositionStats>) {
        let _ = self.shared.status.set(status);
    }

    /// As [`AckTracker::track`], also counting the batch's `events` and message `bytes` as
    /// delivered to `/status` once it is.
    pub fn track_counted(&self, resume: ResumePoint, events: u64, bytes: u64) -> OnDelivered {
        let done = self.track(resume);
        match self.shared.status.get().cloned() {
            None => done,
            Some(st) => Box::new(move |ok| {
                if ok {
                    st.delivered(events, bytes);
                }
                done(ok)
            }),
        }
    }

    /// The newest file's size, for `logwharf_checkpoint_lag_bytes`.
    pub fn note_newest(&self, file_seq: u64, size: u64) {
        let mut g = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        g.newest = Some((file_seq, size));
        update_lag(&self.shared.lag, &g);
    }

    /// The container is gone: drop this sink's checkpoint for good.
    pub fn remove(&self) {
        self.acks.stop();
        self.acks.with_lock(|_| {
            self.shared.store.remove(&self.shared.key);
            self.shared.lag.set(0.0);
        });
    }

    /// The checkpointed position (what the store holds for this container and sink).
    pub fn committed(&self) -> Option<ResumePoint> {
        let g = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        g.committed.clone()
    }
}

fn update_lag(lag: &metrics::Gauge, g: &State) {
    if let Some((seq, size)) = g.newest {
        let behind = match &g.committed {
            Some(c) if c.file.seq == seq => size.saturating_sub(c.offset),
            // Acknowledged up to an older file: at least the whole newest file is behind.
            _ => size,
        };
        lag.set(behind as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::docker_json_file::position::SavedPosition;

    fn point(offset: u64) -> ResumePoint {
        ResumePoint::for_test(0, offset)
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
