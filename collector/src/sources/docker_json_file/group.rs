//! One container read once for the sinks that are in step, and the detour of a sink that
//! falls behind.
//!
//! Sinks in step share one reader of the container ([`super::reader`] with a [`ReadGroup`]
//! as its output): every line is read and parsed once, and each batch goes to every attached
//! sink through that sink's lane ([`run_lane`]), a task with a queue of [`LANE_QUEUE`]
//! batches that forwards them into the sink's buffer. Each sink keeps its own ack tracker
//! and checkpoint, so delivery and restarts are per sink as before.
//!
//! Isolation: a sink whose lane has no room for a batch that another sink takes, while that
//! other sink has nothing more queued, is detached at once — it is a whole lane and its
//! share of the sink's buffer behind a sink that waits for work. The group no longer sends
//! to it, and its lane, once it has forwarded what it holds, reads the
//! container itself from where the group's last batch for it ended (the files Docker deleted
//! meanwhile are in the container's hold). The group never waits for a sink while another
//! has room and nothing more to do: a sink that is down, slow or retrying does not slow the
//! others. When every lane is full, or those with room have more batches queued (all sinks
//! work through a backlog, a little apart), the group waits (that is backpressure), and the
//! lanes still full [`DETACH_AFTER`] after the first had room are detached. A detached
//! reader that catches up with the group — the same file and offset, nothing held back for
//! multiline merging on either side — joins it again and stops reading on its own.

use super::acks::AckTracker;
use super::position::{ResumePoint, SavedPosition};
use super::tailer::StartAt;
use crate::ack::OnDelivered;
use crate::event::{Batch, Event};
use crate::shutdown::Shutdown;
use crate::status::PositionStats;
use crate::topology::{Closed, SourceOutput};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// When every lane was full, how long the others may take to follow the first that has room:
/// long enough that sinks of equal speed, all busy, stay together; short next to the backlog
/// a full lane still holds, so the first sink does not run dry meanwhile.
pub const DETACH_AFTER: Duration = Duration::from_millis(50);
/// Batches a lane holds between the group and the sink's buffer: with the lane's share of the
/// buffer, the jitter between sinks that does not detach one.
pub const LANE_QUEUE: usize = 4;

/// A batch on its way to one sink, and that sink's acknowledgement of it.
pub struct LaneItem {
    batch: Arc<Batch>,
    done: Option<OnDelivered>,
}

/// One sink of the group (attached or not).
pub struct Member {
    pub sink: Arc<str>,
    pub tracker: Arc<AckTracker>,
    /// This sink's `/status` entry of the container.
    pub position: Option<Arc<PositionStats>>,
    /// Whether the group reads for it now (shared with the group reader's loss counters).
    pub attached: Arc<AtomicBool>,
    /// The sink's view of the source (what its share of the sink's buffer holds).
    pub out: SourceOutput,
}

/// The container's shared reader's side: its members and their lanes.
pub struct ReadGroup {
    source: Arc<str>,
    container: String,
    members: Vec<Member>,
    state: Mutex<State>,
}

struct State {
    /// Per member: its lane's sender while attached.
    lanes: Vec<Option<Lane>>,
    /// Per member detached from the group: where its own reader starts.
    handoffs: Vec<Option<Handoff>>,
    /// Where the group's next batch starts, when a reader at that point may join (nothing is
    /// held back for multiline merging).
    join_at: Option<ResumePoint>,
    /// The group's reader runs (joining is possible).
    open: bool,
}

/// Where a member's own reader starts.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub saved: Option<SavedPosition>,
    /// Without a position.
    pub start_at: StartAt,
}

struct Lane {
    tx: mpsc::Sender<LaneItem>,
    /// The position the last batch given to this lane makes its checkpoint.
    last: Option<ResumePoint>,
}

/// The same place in the same file, whichever reader numbered the files (`seq` is per
/// reader).
fn same_place(a: &ResumePoint, b: &ResumePoint) -> bool {
    a.offset == b.offset
        && (a.file.dev, a.file.ino, a.file.fp) == (b.file.dev, b.file.ino, b.file.fp)
}

impl ReadGroup {
    pub fn new(source: Arc<str>, container: String, members: Vec<Member>) -> Arc<ReadGroup> {
        let n = members.len();
        Arc::new(ReadGroup {
            source,
            container,
            members,
            state: Mutex::new(State {
                lanes: (0..n).map(|_| None).collect(),
                handoffs: vec![None; n],
                join_at: None,
                open: true,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i` starts on its own (its checkpoint is not the group's): its lane starts
    /// with its own reader.
    pub fn start_detached(
        &self,
        i: usize,
        saved: Option<SavedPosition>,
        start_at: StartAt,
    ) -> mpsc::Receiver<LaneItem> {
        let (_, rx) = mpsc::channel(1);
        self.lock().handoffs[i] = Some(Handoff { saved, start_at });
        rx
    }

    /// Attaches member `i` with its position `at`; returns the receiving end of its lane.
    pub fn attach(&self, i: usize, at: Option<ResumePoint>) -> mpsc::Receiver<LaneItem> {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        let mut g = self.lock();
        g.lanes[i] = Some(Lane { tx, last: at });
        g.handoffs[i] = None;
        self.members[i].attached.store(true, Ordering::Release);
        rx
    }

    /// Member `i`'s reader, at `at` and holding nothing back, joins the group if the group's
    /// next batch starts there.
    pub fn join(&self, i: usize, at: &ResumePoint) -> Option<mpsc::Receiver<LaneItem>> {
        let mut g = self.lock();
        let meets = g.open && g.join_at.as_ref().is_some_and(|j| same_place(j, at));
        if !meets || g.lanes[i].is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        g.lanes[i] = Some(Lane {
            tx,
            last: Some(at.clone()),
        });
        self.members[i].attached.store(true, Ordering::Release);
        drop(g);
        tracing::info!(container = %self.container, sink = %self.members[i].sink, "sink caught up with the container's shared reader; reading for it there again");
        Some(rx)
    }

    /// Where member `i`'s own reader starts, once its lane closed because it was detached
    /// (`None`: the group ended, and so does the lane).
    pub fn take_handoff(&self, i: usize) -> Option<Handoff> {
        self.lock().handoffs[i].take()
    }

    /// The members the group reads for now.
    pub fn attached(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.attached.load(Ordering::Acquire))
    }

    /// The group's reader stopped: every lane forwards what it holds and ends.
    pub fn close(&self) {
        let mut g = self.lock();
        g.open = false;
        g.join_at = None;
        for (i, l) in g.lanes.iter_mut().enumerate() {
            if l.take().is_some() {
                self.members[i].attached.store(false, Ordering::Release);
            }
        }
    }

    fn detach(&self, i: usize, waited: bool) {
        let mut g = self.lock();
        if let Some(lane) = g.lanes[i].take() {
            g.handoffs[i] = Some(Handoff {
                saved: lane.last.as_ref().map(ResumePoint::to_saved),
                start_at: StartAt::Beginning,
            });
            self.members[i].attached.store(false, Ordering::Release);
            drop(g);
            let backlog = self.members[i].out.backlog();
            tracing::info!(container = %self.container, sink = %self.members[i].sink, waited, backlog, "sink is not keeping up with the others; reading the container for it on its own until it catches up");
        }
    }

    /// Sends one batch to every attached sink: its delivery makes `ack_at` each one's
    /// checkpoint. `join_at` is where the next batch starts, if a reader may join there.
    /// A lane that is full while another with nothing else queued takes the batch is detached
    /// at once; otherwise this waits for room, and detaches the lanes still full
    /// [`DETACH_AFTER`] after the first had room. `Err` once no sink is left (the pipeline
    /// shuts down).
    pub async fn send(
        &self,
        events: Vec<Event>,
        ack_at: Option<ResumePoint>,
        join_at: Option<ResumePoint>,
    ) -> Result<(), Closed> {
        let lanes: Vec<(usize, mpsc::Sender<LaneItem>)> = {
            let mut g = self.lock();
            g.join_at = join_at;
            g.lanes
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.as_ref().map(|l| (i, l.tx.clone())))
                .collect()
        };
        if lanes.is_empty() {
            return Err(Closed);
        }
        if events.is_empty() {
            // Only the position moves: settled at once, in order behind what is in flight.
            if let Some(r) = ack_at {
                for (i, _) in &lanes {
                    self.members[*i].tracker.track(r.clone())(true);
                    self.set_last(*i, &r);
                }
            }
            return Ok(());
        }
        let n = events.len() as u64;
        let bytes: u64 = events.iter().map(Event::size).sum::<usize>() as u64;
        let batch = Arc::new(Batch {
            source: self.source.clone(),
            events,
        });
        let mut taken = 0;
        // Whether every lane that took the batch has more to do — batches queued, or a batch's
        // worth in its sink's buffer —, so that a short wait for the others leaves no sink
        // idle.
        let mut busy = true;
        let mut full = Vec::new();
        for (i, tx) in lanes {
            match tx.try_reserve_owned() {
                Ok(permit) => {
                    let tx = self.give(i, permit, &batch, &ack_at, n, bytes);
                    let queued = tx.max_capacity() - tx.capacity() >= 2;
                    busy &= queued || self.members[i].out.backlog() >= n;
                    taken += 1;
                }
                Err(mpsc::error::TrySendError::Full(tx)) => full.push((i, tx)),
                Err(mpsc::error::TrySendError::Closed(_)) => self.detach_closed(i),
            }
        }
        let mut behind: Vec<usize> = full.iter().map(|(i, _)| *i).collect();
        let waited = !full.is_empty() && (taken == 0 || busy);
        if waited {
            // Every lane is full, or those with room are busy too (the sinks are all working
            // through a backlog, a little apart): wait for room (backpressure), and give the
            // lanes still full DETACH_AFTER from the first with room to follow.
            let mut pending: FuturesUnordered<_> = full
                .drain(..)
                .map(|(i, tx)| async move { (i, tx.reserve_owned().await) })
                .collect();
            let mut deadline = (taken > 0).then(|| tokio::time::Instant::now() + DETACH_AFTER);
            loop {
                let next = match deadline {
                    None => pending.next().await,
                    Some(d) => tokio::select! {
                        r = pending.next() => r,
                        _ = tokio::time::sleep_until(d) => break,
                    },
                };
                let Some((i, reserved)) = next else { break };
                behind.retain(|w| *w != i);
                match reserved {
                    Ok(permit) => {
                        self.give(i, permit, &batch, &ack_at, n, bytes);
                        taken += 1;
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + DETACH_AFTER);
                    }
                    Err(_) => self.detach_closed(i), // the lane ended: its sink is gone
                }
            }
        }
        if taken == 0 {
            return Err(Closed);
        }
        for i in behind {
            self.detach(i, waited);
        }
        Ok(())
    }

    /// Hands the batch to lane `i`, tracked by its sink's checkpoint.
    fn give(
        &self,
        i: usize,
        permit: mpsc::OwnedPermit<LaneItem>,
        batch: &Arc<Batch>,
        ack_at: &Option<ResumePoint>,
        n: u64,
        bytes: u64,
    ) -> mpsc::Sender<LaneItem> {
        let m = &self.members[i];
        let done = ack_at.clone().map(|r| m.tracker.track_counted(r, n, bytes));
        let tx = permit.send(LaneItem {
            batch: batch.clone(),
            done,
        });
        if let Some(r) = ack_at {
            self.set_last(i, r);
        }
        tx
    }

    fn set_last(&self, i: usize, r: &ResumePoint) {
        if let Some(l) = self.lock().lanes[i].as_mut() {
            l.last = Some(r.clone());
        }
    }

    fn detach_closed(&self, i: usize) {
        let mut g = self.lock();
        g.lanes[i] = None;
        self.members[i].attached.store(false, Ordering::Release);
    }
}

/// What a lane needs to read the container on its own once detached.
#[async_trait::async_trait]
pub trait OwnReader: Send {
    /// Reads for the member from `from` until the container's end, shutdown, or until it
    /// joins the group again (`Some`: its new lane).
    async fn read_from(&mut self, from: Handoff) -> Option<mpsc::Receiver<LaneItem>>;
}

/// One sink's lane: forwards the group's batches into the sink's buffer (waiting there is
/// the sink's backpressure, and only the lane's), and when detached reads on its own.
pub async fn run_lane(
    group: Arc<ReadGroup>,
    i: usize,
    mut rx: mpsc::Receiver<LaneItem>,
    out: SourceOutput,
    shutdown: Shutdown,
    mut own: impl OwnReader,
) {
    loop {
        loop {
            // As a reader's send: shutdown does not wait for a sink that has no room.
            let item = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                item = rx.recv() => item,
            };
            let Some(item) = item else { break };
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = out.send_batch(item.batch, item.done) => if r.is_err() { return },
            }
        }
        let Some(from) = group.take_handoff(i) else {
            return; // the group ended
        };
        match own.read_from(from).await {
            Some(joined) => rx = joined,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests;
