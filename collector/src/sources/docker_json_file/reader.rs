//! One container's reader task, the async part: runs [`ContainerTail`] one batch at a time —
//! on the async worker while the page cache holds what it reads (`cached_only`), else on the
//! blocking pool —, sends each batch into the pipeline (waiting there is the
//! backpressure), registers its resume point with the [`AckTracker`], and waits for more data
//! when caught up — woken by inotify (through discovery), a poll, a partial line's deadline,
//! removal of the container, or shutdown. A container over its `rate_limit` is read more
//! slowly: the reader sleeps before its next read ([`RateLimiter`]).
//!
//! A reader reads either for the sinks in step ([`Output::Group`]: the container's shared
//! reader, see [`super::group`]) or for one sink ([`Output::Sink`]: the only one, or one
//! detached from the group, which joins the group again once it caught up with it).

use super::acks::AckTracker;
use super::group::{LaneItem, ReadGroup};
use super::position::ResumePoint;
use super::rate_limit::RateLimiter;
use super::tailer::{ContainerTail, Flush};
use crate::docker::MetaHandle;
use crate::event::Event;
use crate::multiline::StreamMergers;
use crate::shutdown::Shutdown;
use crate::status::{ContainerStats, PositionStats};
use crate::tail::file::cached_reads;
use crate::topology::{Closed, SourceOutput};
use logwharf_config::docker::MultilineConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// How often an idle reader looks again without being woken: often where inotify does not
/// watch its directory, seldom (a safety net: lost events wake every reader anyway, see the
/// source's `route`) where it does, so that quiet containers cost nothing.
const POLL_UNWATCHED: Duration = Duration::from_millis(250);
const POLL_WATCHED: Duration = Duration::from_secs(60);
/// The most a caught-up reader reads inline, on the async worker, after a wake-up.
const INLINE_BLOCK: usize = 64 * 1024;
/// Pause after an I/O error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// How discovery reaches a running reader.
#[derive(Clone, Default)]
pub struct ReaderControl {
    /// New data (or a rotation) may be there.
    pub wake: Arc<Notify>,
    /// The container's directory is gone: drain, flush, stop, forget the checkpoint.
    pub removed: Arc<AtomicBool>,
    /// inotify watches the container's directory, so `wake` comes with new data.
    pub watched: Arc<AtomicBool>,
    /// A name in the container's directory changed (or inotify lost events) since this
    /// reader last looked for rotation: while it is clear, a caught-up reader's batch after
    /// a write does not look (a watched directory's rotation always sets it first).
    pub names: Arc<AtomicBool>,
}

impl ReaderControl {
    /// The control of another reader of the same container: its own wake-up, the same
    /// removal and watch state.
    pub fn sibling(&self) -> ReaderControl {
        ReaderControl {
            wake: Arc::new(Notify::new()),
            removed: self.removed.clone(),
            watched: self.watched.clone(),
            names: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Files of the container were created, renamed or deleted (or inotify lost events):
    /// the next batch looks for rotation.
    pub fn names_changed(&self) {
        self.names.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Whom a reader reads for.
pub enum Output {
    /// One sink; `group` is the container's shared reader it may join.
    Sink {
        tracker: Arc<AckTracker>,
        out: SourceOutput,
        /// This sink's `/status` entry of the container.
        position: Option<Arc<PositionStats>>,
        group: Option<(Arc<ReadGroup>, usize)>,
    },
    /// The sinks attached to the container's shared reader.
    Group(Arc<ReadGroup>),
}

impl Output {
    fn trackers(&self) -> Vec<&Arc<AckTracker>> {
        match self {
            Output::Sink { tracker, .. } => vec![tracker],
            Output::Group(g) => g.attached().map(|m| &m.tracker).collect(),
        }
    }

    fn positions(&self) -> Vec<&Arc<PositionStats>> {
        match self {
            Output::Sink { position, .. } => position.iter().collect(),
            Output::Group(g) => g.attached().filter_map(|m| m.position.as_ref()).collect(),
        }
    }

    async fn send(
        &self,
        events: Vec<Event>,
        ack_at: Option<ResumePoint>,
        join_at: Option<ResumePoint>,
    ) -> Result<(), Closed> {
        match self {
            Output::Sink { tracker, out, .. } => {
                let bytes: usize = events.iter().map(Event::size).sum();
                let n = events.len() as u64;
                let on_done = ack_at.map(|r| tracker.track_counted(r, n, bytes as u64));
                out.send(events, on_done).await
            }
            Output::Group(g) => g.send(events, ack_at, join_at).await,
        }
    }

    /// A sink's reader at `at`, holding nothing back, joins the group if it is there too.
    fn join(&self, at: Option<&ResumePoint>) -> Option<mpsc::Receiver<LaneItem>> {
        match (self, at) {
            (
                Output::Sink {
                    group: Some((g, i)),
                    ..
                },
                Some(at),
            ) => g.join(*i, at),
            _ => None,
        }
    }
}

pub struct Reader {
    /// Boxed: it moves to a pool thread and back with every batch, and the task's future
    /// would otherwise hold it twice (1,000 containers, 1,000 futures).
    pub tail: Box<ContainerTail>,
    /// A batch from the pool is read only with one of these permits, held until the batch is
    /// handed on: so that 1,000 containers with a backlog hold a few batches between them, not
    /// one each (`None`: a detached sink's reader, which must not wait for the others).
    pub inflight: Option<Arc<tokio::sync::Semaphore>>,
    pub output: Output,
    pub shutdown: Shutdown,
    /// `run --once`: read to the current end, flush partial lines, return.
    pub once: bool,
    pub control: ReaderControl,
    /// The container's metadata record (enrichment), re-checked once per batch.
    pub meta: MetaHandle,
    /// How long the first batch waits for metadata the service does not have yet.
    pub metadata_wait: Duration,
    /// Multiline merging (the source's option; a container label can turn it on).
    pub multiline: MultilineConfig,
    /// The container's read rate limit (the source's `rate_limit`, or its label).
    pub rate: RateLimiter,
    /// The container's `/status` entry.
    pub status: Option<Arc<ContainerStats>>,
}

impl Reader {
    /// Reads until shutdown, removal of the container, or (with `once`) the end of its files;
    /// or, for a sink detached from the container's shared reader, until it joins it again
    /// (`Some`: its lane).
    pub async fn run(self) -> Option<mpsc::Receiver<LaneItem>> {
        let Reader {
            mut tail,
            inflight,
            output,
            shutdown,
            once,
            control,
            mut meta,
            metadata_wait,
            multiline,
            mut rate,
            status,
        } = self;
        let id = tail.id().to_string();
        // Lines read before the metadata is known: a bounded wait, then the id alone (later
        // batches carry the record as soon as the service has it).
        tokio::select! {
            _ = Box::pin(meta.wait_known(metadata_wait)) => {}
            _ = shutdown.wait() => return None,
        }
        let mut sent = tail.resume_point();
        // With multiline merging, the checkpoint moves only at batch ends where no event is held
        // (`safe`): a crash re-reads a held event's lines instead of losing them.
        let mut merger = StreamMergers::for_container(meta.current(), &multiline);
        let mut safe = sent.clone();
        let mut once_flushing = false;
        let full_block = tail.read_block();
        // A detached sink's reader may be files behind: it does not tell `/status` of the live
        // file (the container's shared reader and its hold do).
        let detached = matches!(output, Output::Sink { group: Some(_), .. });
        // The last batch read everything there was (the next one may run inline).
        let mut caught_up = false;
        // The reader's last wait ended with a wake-up from inotify, not a timer.
        let mut woken = false;
        // The last batch found bytes the page cache did not have: the next is read on the pool.
        let mut pool_next = false;
        loop {
            let removed = control.removed.load(Ordering::Acquire);
            let flush = if removed {
                Flush::Final
            } else if once_flushing {
                Flush::Partials
            } else {
                Flush::Expired
            };
            // One atomic load per batch; a new record (rename, late metadata) after a change.
            let record = meta.current();
            tail.set_meta(record);
            if let Some(c) = &status {
                c.set_meta(record);
            }
            let block = rate
                .update(record, tokio::time::Instant::now())
                .map_or(full_block, |b| b.min(full_block));
            // Caught up and woken: what came since is small and in the page cache (Docker just
            // wrote it), so it is read right here — a few microseconds, less than handing the
            // batch to a pool thread and back. A backlog is read here too while the page cache
            // has it (reads that never wait for the disk: `cached_only`), in full blocks: every
            // hand-off to the pool and back costs two thread wake-ups, and with them the
            // batches of several containers did not spread over the cores. The batch after one
            // that found its bytes not cached goes to the pool.
            let small = caught_up && !once;
            let inline = small || (!pool_next && cached_reads());
            tail.set_read_block(if small {
                block.min(INLINE_BLOCK)
            } else {
                block
            });
            tail.set_cached_only(inline && cached_reads());
            // A write woke a caught-up reader of a watched directory, and no name changed
            // there: the live file is still the one held, so the batch need not stat its path
            // (a poll, a backlog and every name change look, as does a lost inotify event).
            let names = control.names.swap(false, Ordering::AcqRel);
            if small && woken && !names && control.watched.load(Ordering::Relaxed) {
                tail.skip_rotation_look();
            }
            woken = false;
            if let Some(d) = rate.delay(tokio::time::Instant::now()) {
                // Over the limit: the file keeps the lines until the bucket allows reading on.
                tokio::select! {
                    _ = tokio::time::sleep(d) => rate.waited(d),
                    _ = shutdown.wait() => return None,
                }
            }
            // A small read of a caught-up reader takes no permit: a quiet container must not
            // queue behind backlogs (whose readers may hold the permits while their sink's
            // buffer share is full), and its batch is ≤ INLINE_BLOCK anyway.
            let permit = match inflight.as_ref().filter(|_| !small) {
                Some(s) => tokio::select! {
                    p = s.clone().acquire_owned() => p.ok(),
                    _ = shutdown.wait() => return None,
                },
                None => None,
            };
            let read_before = tail.counts_total.read;
            let joined = if inline {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tail.next_batch(flush, Instant::now())
                }))
                .map(|batch| (tail, batch))
                .map_err(|_| "a panic".to_string())
            } else {
                let span = tracing::Span::current();
                // Boxed, as the send below: 1,000 readers' futures would each keep room for
                // these while they wait for data.
                Box::pin(crate::tail::blocking::run(move || {
                    let _in = span.enter();
                    let batch = tail.next_batch(flush, Instant::now());
                    (tail, batch)
                }))
                .await
                .map_err(|e| e.to_string())
            };
            let batch;
            (tail, batch) = match joined {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(container = %id, error = %e, "container reader panicked; this container is no longer read until it is rediscovered");
                    return None;
                }
            };
            caught_up = batch.idle && batch.error.is_none();
            pool_next = batch.uncached;
            if batch.idle {
                // Before waiting for anything (the sinks, more data): a backlog's read buffer
                // is not kept by 1,000 readers that each read their file once.
                tail.release_idle_memory();
            }
            rate.spend(
                tail.counts_total.read - read_before,
                tokio::time::Instant::now(),
            );
            if let (Some(c), Some((ino, size)), false) = (&status, batch.live, detached) {
                c.observe_live(ino, size); // the write rate, for /status
            }
            if let Some((seq, size)) = batch.newest_size {
                output
                    .trackers()
                    .iter()
                    .for_each(|t| t.note_newest(seq, size));
            }
            for p in output.positions() {
                if let Some(r) = &batch.resume {
                    p.read_at(&r.file.name, r.offset);
                }
                p.set_lost(tail.lost_bytes());
            }
            let mut batch = batch;
            if let Some(p) = batch.start.take() {
                output
                    .trackers()
                    .iter()
                    .for_each(|t| t.commit_now(p.clone()));
            }
            if !meta.current().enabled() {
                batch.events.clear(); // label logwharf.enable=false: read and checkpoint, ship nothing
            }
            let mut ack_at = batch.resume.clone();
            if let Some(m) = merger.as_mut() {
                let now = tokio::time::Instant::now();
                let mut events = m.process(std::mem::take(&mut batch.events), now);
                events.extend(m.flush_expired(now));
                if flush != Flush::Expired && batch.idle {
                    events.extend(m.flush_all());
                }
                batch.events = events;
                if m.holding() {
                    ack_at = safe.clone();
                } else {
                    safe = batch.resume.clone();
                }
            }
            // Where another reader of the container may join this one: the next batch starts
            // there and nothing before it is held back.
            let holding = merger.as_ref().is_some_and(StreamMergers::holding);
            let join_at = if holding { None } else { batch.resume.clone() };
            if !batch.events.is_empty() || batch.resume != sent {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return None,
                    r = Box::pin(output.send(batch.events, ack_at, join_at.clone())) => if r.is_err() { return None },
                }
                sent = batch.resume;
            }
            drop(permit); // handed on (or nothing to hand on)
            if let Some(e) = batch.error {
                tracing::warn!(container = %id, error = %e, "reading the container's log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                    _ = shutdown.wait() => return None,
                }
            }
            if !batch.idle {
                if shutdown.is_triggered() {
                    return None;
                }
                if inline {
                    // A backlog read on the worker (a batch is ≈ 0.3 ms of parsing): the
                    // worker's other tasks — sinks, other containers — have their turn after
                    // each batch, not only when tokio's budget runs out.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            // Caught up with what is written.
            if flush == Flush::Final {
                output.trackers().iter().for_each(|t| t.remove());
                tracing::info!(container = %id, "container removed; its log was read to the end");
                return None;
            }
            if once {
                if once_flushing {
                    return None;
                }
                once_flushing = true;
                continue;
            }
            if control.removed.load(Ordering::Acquire) {
                continue; // removed meanwhile: one more pass to drain and flush
            }
            if !holding {
                if let Some(lane) = output.join(join_at.as_ref()) {
                    return Some(lane);
                }
            }
            let poll = if control.watched.load(Ordering::Relaxed) {
                POLL_WATCHED
            } else {
                POLL_UNWATCHED
            };
            let held = merger
                .as_ref()
                .and_then(StreamMergers::deadline)
                .map(|d| d.into_std());
            let wait = batch
                .partial_deadline
                .into_iter()
                .chain(held)
                .min()
                .map_or(poll, |d| {
                    d.saturating_duration_since(Instant::now()).min(poll)
                });
            tokio::select! {
                // The source wakes readers once per batching window (`batch_window`): the
                // writes of that time are one batch.
                _ = control.wake.notified() => woken = true,
                _ = tokio::time::sleep(wait) => woken = false,
                _ = shutdown.wait() => return None,
            }
        }
    }
}
