//! One container's reader task, the async part: runs [`ContainerTail`] on the blocking pool
//! one batch at a time, sends each batch into the pipeline (waiting there is the
//! backpressure), registers its resume point with the [`AckTracker`], and waits for more data
//! when caught up — woken by inotify (through discovery), a poll, a partial line's deadline,
//! removal of the container, or shutdown. A container over its `rate_limit` is read more
//! slowly: the reader sleeps before its next read ([`RateLimiter`]).

use super::acks::AckTracker;
use super::rate_limit::RateLimiter;
use super::tailer::{ContainerTail, Flush};
use crate::docker::MetaHandle;
use crate::multiline::StreamMergers;
use crate::shutdown::Shutdown;
use crate::status::{ContainerStats, PositionStats};
use crate::topology::SourceOutput;
use logwharf_config::docker::MultilineConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often an idle reader looks again without being woken: often where inotify does not
/// watch its directory, seldom (a safety net for lost events) where it does.
const POLL_UNWATCHED: Duration = Duration::from_millis(250);
const POLL_WATCHED: Duration = Duration::from_secs(2);
/// A watched reader's poll doubles, up to this, while polls find nothing (a lost event wakes
/// every reader anyway: see the source's `route`), so that quiet containers cost nothing.
const POLL_WATCHED_QUIET: Duration = Duration::from_secs(30);
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
}

impl ReaderControl {
    /// The control of another reader of the same container: its own wake-up, the same
    /// removal and watch state.
    pub fn sibling(&self) -> ReaderControl {
        ReaderControl {
            wake: Arc::new(Notify::new()),
            removed: self.removed.clone(),
            watched: self.watched.clone(),
        }
    }

    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

pub struct Reader {
    pub tail: ContainerTail,
    pub tracker: Arc<AckTracker>,
    pub out: SourceOutput,
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
    /// After a wake-up, let the writer add more lines for this long (`batch_window`), so that
    /// a steady trickle becomes a few batches per second rather than one batch per line.
    pub linger: Duration,
    /// The container's `/status` entry and this sink's in it.
    pub status: Option<(Arc<ContainerStats>, Arc<PositionStats>)>,
}

impl Reader {
    /// Reads until shutdown, removal of the container, or (with `once`) the end of its files.
    pub async fn run(self) {
        let Reader {
            mut tail,
            tracker,
            out,
            shutdown,
            once,
            control,
            mut meta,
            metadata_wait,
            multiline,
            mut rate,
            linger,
            status,
        } = self;
        let id = tail.id().to_string();
        // Lines read before the metadata is known: a bounded wait, then the id alone (later
        // batches carry the record as soon as the service has it).
        tokio::select! {
            _ = meta.wait_known(metadata_wait) => {}
            _ = shutdown.wait() => return,
        }
        let mut sent = tail.resume_point();
        // With multiline merging, the checkpoint moves only at batch ends where no event is held
        // (`safe`): a crash re-reads a held event's lines instead of losing them.
        let mut merger = StreamMergers::for_container(meta.current(), &multiline);
        let mut safe = sent.clone();
        let mut once_flushing = false;
        let full_block = tail.read_block();
        // Polls in a row that found nothing (a watched reader's poll slows down).
        let mut quiet_polls = 0u32;
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
            if let Some((c, _)) = &status {
                c.set_meta(record);
            }
            tail.set_read_block(
                rate.update(record, tokio::time::Instant::now())
                    .map_or(full_block, |b| b.min(full_block)),
            );
            if let Some(d) = rate.delay(tokio::time::Instant::now()) {
                // Over the limit: the file keeps the lines until the bucket allows reading on.
                tokio::select! {
                    _ = tokio::time::sleep(d) => rate.waited(d),
                    _ = shutdown.wait() => return,
                }
            }
            let read_before = tail.counts_total.read;
            let span = tracing::Span::current();
            let joined = crate::tail::blocking::run(move || {
                let _in = span.enter();
                let batch = tail.next_batch(flush, Instant::now());
                (tail, batch)
            })
            .await;
            let batch;
            (tail, batch) = match joined {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(container = %id, error = %e, "container reader panicked; this container is no longer read until it is rediscovered");
                    return;
                }
            };
            rate.spend(
                tail.counts_total.read - read_before,
                tokio::time::Instant::now(),
            );
            if let Some((seq, size)) = batch.newest_size {
                tracker.note_newest(seq, size);
            }
            if let Some((_, p)) = &status {
                if let Some(r) = &batch.resume {
                    p.read_at(&r.file.name, r.offset);
                }
                p.set_lost(tail.lost_bytes());
            }
            let mut batch = batch;
            if let Some(p) = batch.start.take() {
                tracker.commit_now(p);
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
            if !batch.events.is_empty() {
                quiet_polls = 0;
            }
            if !batch.events.is_empty() || batch.resume != sent {
                let bytes: usize = batch.events.iter().map(crate::event::Event::size).sum();
                let n = batch.events.len() as u64;
                let on_done = ack_at.map(|r| tracker.track_counted(r, n, bytes as u64));
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
                    r = out.send(batch.events, on_done) => if r.is_err() { return },
                }
                sent = batch.resume;
            }
            if let Some(e) = batch.error {
                tracing::warn!(container = %id, error = %e, "reading the container's log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                    _ = shutdown.wait() => return,
                }
            }
            if !batch.idle {
                if shutdown.is_triggered() {
                    return;
                }
                continue;
            }
            // Caught up with what is written.
            if flush == Flush::Final {
                tracker.remove();
                tracing::info!(container = %id, "container removed; its log was read to the end");
                return;
            }
            if once {
                if once_flushing {
                    return;
                }
                once_flushing = true;
                continue;
            }
            if control.removed.load(Ordering::Acquire) {
                continue; // removed meanwhile: one more pass to drain and flush
            }
            tail.release_idle_memory();
            let poll = if control.watched.load(Ordering::Relaxed) {
                POLL_WATCHED
                    .saturating_mul(1 << quiet_polls.min(5))
                    .min(POLL_WATCHED_QUIET)
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
                _ = control.wake.notified() => {
                    quiet_polls = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(linger) => {}
                        _ = shutdown.wait() => return,
                    }
                }
                _ = tokio::time::sleep(wait) => quiet_polls += 1,
                _ = shutdown.wait() => return,
            }
        }
    }
}
