//! One container's task: its hold, and the readers of its files for the sinks.
//!
//! With one sink the container has one reader. With several, the sinks whose checkpoints
//! agree share one reader ([`super::group`]); a sink whose checkpoint is elsewhere (it
//! lagged before a restart) starts with a reader of its own and joins the shared one once it
//! caught up. Every sink keeps its own [`AckTracker`] and checkpoint either way.

use super::acks::AckTracker;
use super::group::{run_lane, Handoff, LaneItem, Member, OwnReader, ReadGroup};
use super::hold::Hold;
use super::hold_loop;
use super::position::{ResumePoint, SavedPosition};
use super::rate_limit::RateLimiter;
use super::reader::{Output, Reader, ReaderControl};
use super::tailer::{ContainerTail, StartAt, StartParams, TailMetrics, TailSettings};
use crate::checkpoint::CheckpointStore;
use crate::docker::{MetaHandle, MetadataService};
use crate::shutdown::Shutdown;
use crate::status::{ContainerStats, PositionStats};
use crate::tail::blocking;
use crate::topology::SourceOutput;
use logwharf_config::docker::MultilineConfig;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

/// After a detached sink's reader failed to open the container's files, wait this long.
const RETRY_OWN_START: Duration = Duration::from_secs(1);

/// What every reader of the container shares.
pub(super) struct Common {
    pub source: Arc<str>,
    pub id: String,
    pub dir: PathBuf,
    pub live_name: String,
    pub settings: TailSettings,
    pub hold: Arc<Hold>,
    pub hold_wake: Arc<Notify>,
    pub service: Option<Arc<MetadataService>>,
    pub store: Arc<CheckpointStore>,
    pub stats: Arc<ContainerStats>,
    pub shutdown: Shutdown,
    pub once: bool,
    pub metadata_wait: Duration,
    pub multiline: MultilineConfig,
    pub rate_limit: Option<u64>,
    pub start_at: StartAt,
    /// inotify watches the container's directory.
    pub watched: Arc<AtomicBool>,
    /// The source's batches read and not yet handed to the sinks (see [`Reader::inflight`]).
    pub inflight: Arc<tokio::sync::Semaphore>,
}

/// One sink's part, before it starts (`sink` is `None` when no sink reads the source: one
/// reader still follows the files, and discards).
pub(super) struct SinkPart {
    pub sink: Option<(usize, Arc<str>)>,
    pub key: String,
    pub saved: Option<SavedPosition>,
    pub lag: metrics::Gauge,
    pub out: SourceOutput,
    pub control: ReaderControl,
    pub position: Option<Arc<PositionStats>>,
}

impl SinkPart {
    fn name(&self) -> Arc<str> {
        self.sink
            .as_ref()
            .map_or_else(|| "".into(), |(_, n)| n.clone())
    }
}

/// Whether two checkpoints put a reader at the same place.
fn same_start(a: &Option<SavedPosition>, b: &Option<SavedPosition>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (a.dev, a.ino, a.fp, a.fp_len, a.offset) == (b.dev, b.ino, b.fp, b.fp_len, b.offset)
        }
        _ => false,
    }
}

/// The sinks that share the reader at the start: the most that agree on where to start.
fn largest_agreeing(parts: &[SinkPart]) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::new();
    for p in parts {
        let agree: Vec<usize> = (0..parts.len())
            .filter(|&j| same_start(&parts[j].saved, &p.saved))
            .collect();
        if agree.len() > best.len() {
            best = agree;
        }
    }
    best
}

/// Opens the container's files for one reader (blocking I/O on the pool).
async fn open_tail(params: StartParams, id: &str) -> Option<(ContainerTail, Option<ResumePoint>)> {
    let span = tracing::Span::current();
    match blocking::run(move || span.in_scope(|| ContainerTail::start(params))).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::warn!(container = %id, error = %e, "cannot open the container's log; will try again later");
            None
        }
        Err(e) => {
            tracing::error!(container = %id, error = %e, "opening the container's log panicked");
            None
        }
    }
}

impl Common {
    fn params(
        &self,
        metrics: TailMetrics,
        saved: Option<SavedPosition>,
        start_at: StartAt,
        hold: bool,
        sink: Arc<str>,
    ) -> StartParams {
        StartParams {
            id: self.id.clone(),
            dir: self.dir.clone(),
            live_name: self.live_name.clone(),
            settings: self.settings.clone(),
            metrics,
            saved,
            start_at,
            hold: hold.then(|| self.hold.clone()),
            sink,
        }
    }

    /// The sink's tracker, starting where `tail` does; checkpointed at once at `commit_now`
    /// (where reading starts without a checkpoint, or after a gap), else re-stamped with what
    /// the hold sees now.
    fn tracker(
        &self,
        part: &SinkPart,
        tail: &ContainerTail,
        commit_now: Option<ResumePoint>,
    ) -> Arc<AckTracker> {
        let tracker = AckTracker::with_hold(
            self.store.clone(),
            part.key.clone(),
            self.id.clone(),
            part.lag.clone(),
            tail.resume_point(),
            part.sink.as_ref().map(|(i, _)| (self.hold.clone(), *i)),
        );
        if let Some(p) = &part.position {
            tracker.report_to(p.clone());
        }
        match commit_now {
            Some(p) => tracker.commit_now(p),
            None => tracker.restamp(),
        }
        tracker
    }

    fn reader(
        &self,
        tail: ContainerTail,
        output: Output,
        control: ReaderControl,
        rate: RateLimiter,
    ) -> Reader {
        // A detached sink's reader goes at its sink's pace, whatever the others do.
        let inflight = match &output {
            Output::Sink { group: Some(_), .. } => None,
            _ => Some(self.inflight.clone()),
        };
        Reader {
            tail: Box::new(tail),
            inflight,
            output,
            shutdown: self.shutdown.clone(),
            once: self.once,
            control,
            meta: MetaHandle::new(self.service.clone(), &self.id),
            metadata_wait: self.metadata_wait,
            multiline: self.multiline.clone(),
            rate,
            status: Some(self.stats.clone()),
        }
    }
}

/// Runs the container until its readers are done; returns whether they started.
pub(super) async fn run(
    common: Common,
    parts: Vec<SinkPart>,
    group_control: ReaderControl,
) -> bool {
    let common = Arc::new(common);
    // The hold looks first, so that it has every file the readers start from.
    let h = common.hold.clone();
    if let Ok(Err(e)) = blocking::look(move || h.refresh()).await {
        tracing::warn!(container = %common.id, error = %e, "cannot hold the container's log files open");
    }
    let mut running = JoinSet::new();
    let mut trackers = Vec::new();
    if parts.len() <= 1 {
        for part in parts {
            let sink = part.name();
            let primary = part.sink.as_ref().is_none_or(|(i, _)| *i == 0);
            let metrics = TailMetrics::for_sink(&common.source, &common.id, &sink, primary);
            let params = common.params(
                metrics,
                part.saved.clone(),
                common.start_at,
                part.sink.is_some(),
                sink.clone(),
            );
            let Some((tail, commit_now)) = Box::pin(open_tail(params, &common.id)).await else {
                return false;
            };
            let tracker = common.tracker(&part, &tail, commit_now);
            trackers.push(tracker.clone());
            let rate = RateLimiter::new(
                common.rate_limit,
                &common.source,
                &common.id,
                &sink,
                primary,
            );
            let output = Output::Sink {
                tracker,
                out: part.out,
                position: part.position,
                group: None,
            };
            let r = common.reader(tail, output, part.control, rate);
            running.spawn(async move { drop(r.run().await) }.in_current_span());
        }
    } else if !Box::pin(start_group(
        &common,
        parts,
        group_control,
        &mut running,
        &mut trackers,
    ))
    .await
    {
        return false;
    }
    tracing::debug!(container = %common.id, readers = running.len(), "reading container log");
    let readers_done = async { while running.join_next().await.is_some() {} };
    tokio::select! {
        _ = readers_done => {}
        _ = hold_loop(common.hold.clone(), common.hold_wake.clone(), common.watched.clone(), common.shutdown.clone(), trackers.clone(), common.stats.clone()) => {}
    }
    // The files as they are now, for a restart (a no-op for a removed container): a quiet
    // hold may not have looked since the last rotation, and a restart counts what Docker
    // deletes meanwhile exactly only from what the checkpoint says of them.
    let last_look = common.hold.clone();
    let _ = blocking::look(move || last_look.refresh()).await;
    trackers.iter().for_each(|t| t.restamp());
    true
}

/// Several sinks: the shared reader for those that agree, a reader of its own for each other.
async fn start_group(
    common: &Arc<Common>,
    parts: Vec<SinkPart>,
    group_control: ReaderControl,
    running: &mut JoinSet<()>,
    trackers: &mut Vec<Arc<AckTracker>>,
) -> bool {
    let agreeing = largest_agreeing(&parts);
    let attached: Vec<Arc<AtomicBool>> = parts
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let names: Vec<(Arc<str>, Arc<AtomicBool>)> = agreeing
        .iter()
        .map(|&i| (parts[i].name(), attached[i].clone()))
        .collect();
    let label: Arc<str> = names
        .iter()
        .map(|(n, _)| &**n)
        .collect::<Vec<_>>()
        .join(",")
        .into();
    let lead = &parts[agreeing[0]];
    let metrics = TailMetrics::shared(&common.source, &common.id, &names);
    let params = common.params(
        metrics,
        lead.saved.clone(),
        common.start_at,
        true,
        label.clone(),
    );
    let Some((shared_tail, shared_commit)) = Box::pin(open_tail(params, &common.id)).await else {
        return false;
    };
    // The others, each at its own checkpoint.
    let mut own_tails = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if agreeing.contains(&i) {
            own_tails.push(None);
            continue;
        }
        let metrics = TailMetrics::for_sink(&common.source, &common.id, &part.name(), false);
        let params = common.params(
            metrics,
            part.saved.clone(),
            common.start_at,
            true,
            part.name(),
        );
        let Some(t) = Box::pin(open_tail(params, &common.id)).await else {
            return false;
        };
        own_tails.push(Some(t));
    }
    let mut members = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let tracker = match &own_tails[i] {
            Some((tail, c)) => common.tracker(part, tail, c.clone()),
            None => common.tracker(part, &shared_tail, shared_commit.clone()),
        };
        trackers.push(tracker.clone());
        members.push(Member {
            sink: part.name(),
            tracker,
            position: part.position.clone(),
            attached: attached[i].clone(),
            out: part.out.clone(),
        });
    }
    let group = ReadGroup::new(common.source.clone(), common.id.clone(), members);
    let resume = shared_tail.resume_point();
    for (i, (part, own)) in parts.into_iter().zip(own_tails).enumerate() {
        let rx = match &own {
            None => group.attach(i, resume.clone()),
            Some(_) => group.start_detached(i, part.saved.clone(), common.start_at),
        };
        let own_reader = SinkOwnReader {
            common: common.clone(),
            group: group.clone(),
            index: i,
            sink: part.name(),
            tracker: group.members()[i].tracker.clone(),
            out: part.out.clone(),
            control: part.control,
            position: part.position,
            first: own.map(|(t, _)| t),
        };
        let lane = run_lane(
            group.clone(),
            i,
            rx,
            part.out,
            common.shutdown.clone(),
            own_reader,
        );
        running.spawn(lane.in_current_span());
    }
    let rate = RateLimiter::shared(common.rate_limit, &common.source, &common.id, &names);
    let reader = common.reader(
        shared_tail,
        Output::Group(group.clone()),
        group_control,
        rate,
    );
    running.spawn(
        async move {
            let _close = CloseOnDrop(group);
            drop(reader.run().await);
        }
        .in_current_span(),
    );
    true
}

/// Closes the group when its reader ends, however it ends (a panic too), so that its lanes
/// end after forwarding what they hold.
struct CloseOnDrop(Arc<ReadGroup>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A sink's own reader of the container, while it is detached from the shared one.
struct SinkOwnReader {
    common: Arc<Common>,
    group: Arc<ReadGroup>,
    index: usize,
    sink: Arc<str>,
    tracker: Arc<AckTracker>,
    out: SourceOutput,
    control: ReaderControl,
    position: Option<Arc<PositionStats>>,
    /// Opened at the start (the sink's checkpoint was not the group's).
    first: Option<ContainerTail>,
}

#[async_trait::async_trait]
impl OwnReader for SinkOwnReader {
    async fn read_from(&mut self, from: Handoff) -> Option<mpsc::Receiver<LaneItem>> {
        let c = &self.common;
        let tail = match self.first.take() {
            Some(t) => t,
            None => loop {
                let metrics = TailMetrics::for_sink(&c.source, &c.id, &self.sink, false);
                let params = c.params(
                    metrics,
                    from.saved.clone(),
                    from.start_at,
                    true,
                    self.sink.clone(),
                );
                if let Some((t, commit_now)) = open_tail(params, &c.id).await {
                    if let Some(p) = commit_now {
                        self.tracker.commit_now(p);
                    }
                    break t;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_OWN_START) => {}
                    _ = c.shutdown.wait() => return None,
                }
            },
        };
        let rate = RateLimiter::new(c.rate_limit, &c.source, &c.id, &self.sink, false);
        let output = Output::Sink {
            tracker: self.tracker.clone(),
            out: self.out.clone(),
            position: self.position.clone(),
            group: Some((self.group.clone(), self.index)),
        };
        let mut reader = c.reader(tail, output, self.control.clone(), rate);
        reader.metadata_wait = Duration::ZERO;
        reader.run().await
    }
}
