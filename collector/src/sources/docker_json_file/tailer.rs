//! One container's reader, the synchronous part: holds the container's files open, reads
//! them in large blocks, splits lines, parses them and rejoins partial records into a batch
//! of events, and follows Docker's rotation.
//!
//! Files are read in order — rotated siblings oldest first, then the live file — so lines of
//! one container keep their order. Rotation is noticed when the live path names another inode
//! than the newest file held: every newer file is opened at once (so Docker can no longer
//! delete it from under us), the current file is read to its end (Docker closed it before the
//! rename, so that end is final), and only then does reading switch to the next file, from 0.
//! A live file that shrank or whose first line changed was truncated or rewritten in place
//! (copytruncate, or Docker with `max-file=1`) and is read again from 0.
//!
//! [`ContainerTail::next_batch`] does file I/O; the async reader ([`super::reader`]) calls it
//! on its worker with reads that never wait for the disk ([`ContainerTail::set_cached_only`]),
//! or on the blocking pool, and sends what it returns.

use super::batch::BatchBuilder;
use super::config::DockerJsonFileConfig;
use super::hold::{Held, Hold};
use super::lines::{Counts, Lines, SLOT_STREAMS};
use super::listing::{find_saved, listed_inodes, open_siblings, Slot};
use super::loss::{LossCounters, LossReason, LossTotals, StoppedGap};
use super::position::{ResumePoint, SavedPosition};
use super::rotation::RotationLimits;
use crate::event::{ContainerMeta, Event};
use crate::metrics::{self as m, LabelValue, LazyCounter};
use crate::tail::file::OpenFile;
use crate::tail::fingerprint::read_full_at;
use crate::tail::siblings::Sibling;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reading limits, from the source's config.
#[derive(Debug, Clone)]
pub struct TailSettings {
    /// Bytes asked for per read call.
    pub read_buffer_bytes: usize,
    pub batch_max_events: usize,
    /// Message bytes per batch (bounds a batch of long lines).
    pub batch_max_bytes: usize,
    /// Cap on one message, joined partial lines included.
    pub max_line_bytes: usize,
    /// Cap on one raw line waiting for its newline: beyond it the line is cut.
    pub raw_line_cap: usize,
    pub partial_timeout: Duration,
}

impl TailSettings {
    pub fn from_config(c: &DockerJsonFileConfig) -> TailSettings {
        let read = (c.read_buffer_bytes.0 as usize).max(4096);
        let max_line = (c.max_line_bytes.0 as usize).max(1);
        TailSettings {
            read_buffer_bytes: read,
            batch_max_events: c.batch_max_events.max(1),
            batch_max_bytes: (read * 4).max(1 << 20),
            max_line_bytes: max_line,
            // A Docker record holds at most 16 KiB of text, but escaping can grow it six-fold
            // and attrs come on top; never cut a line Docker could have written.
            raw_line_cap: max_line.max(256 << 10) + (64 << 10),
            partial_timeout: c.partial_timeout.0,
        }
    }
}

impl Default for TailSettings {
    fn default() -> Self {
        TailSettings::from_config(&DockerJsonFileConfig::default())
    }
}

/// Where to start in a container that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every rotated sibling oldest first, then the live file.
    Beginning,
    /// The end of the live file (its last complete line).
    End,
}

/// What to ship besides complete lines, once everything readable has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Partial lines whose continuation is overdue (`partial_timeout`).
    Expired,
    /// Every pending partial line (end of `--once`).
    Partials,
    /// Also an unterminated last line: the container is gone, nothing will complete it.
    Final,
}

/// One batch read from a container.
#[derive(Debug)]
pub struct TailBatch {
    pub events: Vec<Event>,
    /// Where a restart must read from once these events (and all before) are delivered.
    pub resume: Option<ResumePoint>,
    /// Everything readable now has been read.
    pub idle: bool,
    /// When a pending partial line times out.
    pub partial_deadline: Option<Instant>,
    /// The newest file's order number and size (for the lag gauge).
    pub newest_size: Option<(u64, u64)>,
    /// The newest file's inode and size (the write rate in `/status`).
    pub live: Option<(u64, u64)>,
    /// An I/O error stopped this batch early; what was read before it is in `events`.
    pub error: Option<io::Error>,
    /// Reading only from the page cache, this batch stopped where the next bytes are not
    /// there (or in a compressed file): the next one must be read where it may wait.
    pub uncached: bool,
    /// Without a checkpoint, once the first file has an identity: its start, to checkpoint
    /// at once — so that a sink that gets nothing before a restart still has a position, and
    /// finds out what Docker deleted meanwhile.
    pub start: Option<ResumePoint>,
}

/// Per-container (and per-sink) metric handles.
pub struct TailMetrics {
    read_bytes: metrics::Counter,
    malformed: LazyCounter,
    truncated: LazyCounter,
    skipped: LazyCounter,
    /// What this reader's sink lost (`logwharf_lost_bytes_total`, `logwharf_lost_gaps_total`).
    pub loss: LossCounters,
    rewritten: LazyCounter,
    pub files: metrics::Gauge,
}

impl TailMetrics {
    /// The metrics of the reader of `container` for `sink`. Every sink's reader reads the same
    /// bytes; only the `primary` one counts what describes the input (bytes read, malformed
    /// lines, …), so that those figures do not grow with the number of sinks.
    pub fn for_sink(source: &str, container: &str, sink: &str, primary: bool) -> TailMetrics {
        let loss = LossCounters::new(source, container, sink);
        TailMetrics::with_loss(source, container, primary, loss)
    }

    /// The metrics of the container's reader shared by several sinks (it counts what
    /// describes the input; a loss counts for the sinks attached at the time).
    pub fn shared(
        source: &str,
        container: &str,
        sinks: &[(Arc<str>, Arc<std::sync::atomic::AtomicBool>)],
    ) -> TailMetrics {
        let loss = LossCounters::shared(source, container, sinks);
        TailMetrics::with_loss(source, container, true, loss)
    }

    fn with_loss(source: &str, container: &str, primary: bool, loss: LossCounters) -> TailMetrics {
        let (s, c) = (source.to_string(), container.to_string());
        let (ls, lc) = (
            LabelValue::Shared(source.into()),
            LabelValue::Shared(container.into()),
        );
        // The rare ones join the exported metrics when they first count something.
        let rare = |name: &'static str| {
            if primary {
                LazyCounter::new(
                    name,
                    vec![("source", ls.clone()), ("container", lc.clone())],
                )
            } else {
                LazyCounter::noop()
            }
        };
        TailMetrics {
            read_bytes: if primary {
                metrics::counter!(m::SOURCE_READ_BYTES, "source" => s.clone(), "container" => c)
            } else {
                metrics::Counter::noop()
            },
            malformed: rare(m::MALFORMED_LINES),
            truncated: rare(m::PARTIAL_TRUNCATED),
            skipped: rare(m::SKIPPED_BYTES),
            rewritten: rare(m::FILES_REWRITTEN),
            loss,
            files: metrics::gauge!(m::FILES_WATCHED, "source" => s.clone()),
        }
    }

    pub fn noop() -> TailMetrics {
        TailMetrics {
            read_bytes: metrics::Counter::noop(),
            malformed: LazyCounter::noop(),
            truncated: LazyCounter::noop(),
            skipped: LazyCounter::noop(),
            loss: LossCounters::noop(),
            rewritten: LazyCounter::noop(),
            files: metrics::Gauge::noop(),
        }
    }
}

/// How a reader starts: the container, its checkpoint, and where to begin without one.
pub struct StartParams {
    pub id: String,
    pub dir: PathBuf,
    pub live_name: String,
    pub settings: TailSettings,
    pub metrics: TailMetrics,
    pub saved: Option<SavedPosition>,
    pub start_at: StartAt,
    /// The container's hold (files Docker deleted that some sink still needs), if any.
    pub hold: Option<Arc<Hold>>,
    /// The sink this reader reads for (named in loss warnings).
    pub sink: Arc<str>,
}

pub struct ContainerTail {
    id: String,
    dir: PathBuf,
    live_name: String,
    settings: TailSettings,
    metrics: TailMetrics,
    hold: Option<Arc<Hold>>,
    sink: Arc<str>,
    /// The file being read; `None` only while the container has no file at all.
    current: Option<OpenFile>,
    /// Newer files, opened and waiting their turn (the last one is the live file).
    queue: VecDeque<OpenFile>,
    rb: ReadBuf,
    lines: Lines,
    /// The end of the last file read to its end: the resume point while the current file has
    /// no identity yet (nothing read from it).
    last_end: Option<ResumePoint>,
    next_seq: u64,
    /// Counts since the last batch (tests read them).
    pub counts_total: Counts,
    /// A gap found at startup, counted already, warned about with the first line found after
    /// it (the end of its window).
    pending_gap: Option<StoppedGap>,
    /// Without a checkpoint: the first file's order number, until its start is checkpointed
    /// ([`TailBatch::start`]).
    first_seq: Option<u64>,
    /// The next batch does not look for rotation before it reads ([`Self::skip_rotation_look`]).
    rotation_quiet: bool,
    /// The current file's size as this batch stat'ed it, not yet used by a read.
    fresh_size: Option<u64>,
    /// The current file was stat'ed in this batch (its `seen` is its size now).
    sized: bool,
    /// Reads take only what the page cache has ([`Self::set_cached_only`]).
    cached_only: bool,
    /// This batch stopped where the page cache did not have the next bytes.
    uncached: bool,
}

/// Bytes read and not yet consumed: `buf[start..end]`, where `buf[0..end]` are the file bytes
/// just before the current file's `read_pos`.
#[derive(Default)]
struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Inside a raw line that went over the cap: drop bytes up to its newline.
    discarding: bool,
    /// The last read took all the (plain) file had when it was looked at.
    at_end: bool,
}

impl ReadBuf {
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.discarding = false;
        self.at_end = false;
    }
}

impl ContainerTail {
    /// Bytes this reader's sink lost so far, every reason together (for `/status`).
    pub fn lost_bytes(&self) -> u64 {
        self.metrics.loss.totals.bytes.iter().sum()
    }

    /// The metadata record the next batches' events carry (the caller checks it per batch).
    pub fn set_meta(&mut self, meta: &Arc<ContainerMeta>) {
        self.lines.set_meta(meta);
    }

    /// Opens a container's files and positions the reader: at the checkpoint when one
    /// matches a present file (older files are skipped, newer ones read from 0), else per
    /// `start_at`. Returns a position to checkpoint at once, if any (where reading starts
    /// without a checkpoint, or after a gap).
    pub fn start(p: StartParams) -> io::Result<(ContainerTail, Option<ResumePoint>)> {
        let meta = Arc::new(ContainerMeta::from_id(p.id.clone()));
        let mut tail = ContainerTail {
            lines: Lines::new(meta, &p.settings),
            id: p.id,
            dir: p.dir,
            live_name: p.live_name,
            settings: p.settings,
            metrics: p.metrics,
            hold: p.hold,
            sink: p.sink,
            current: None,
            queue: VecDeque::new(),
            rb: ReadBuf::default(),
            last_end: None,
            next_seq: 0,
            counts_total: Counts::default(),
            pending_gap: None,
            first_seq: None,
            rotation_quiet: false,
            fresh_size: None,
            sized: false,
            cached_only: false,
            uncached: false,
        };
        // The files wanted are those after the checkpointed one, or all of them.
        let anchor = p.saved.as_ref().map(SavedPosition::fingerprint);
        let listing = open_siblings(
            &tail.dir,
            &tail.live_name,
            &tail.metrics.files,
            &mut |f| anchor.is_some() && f.fp == anchor,
            p.start_at == StartAt::Beginning || anchor.is_some(),
        )?;
        tail.count_lost(&listing.lost);
        let mut slots = listing.slots;
        let mut commit_now = None;
        match (p.saved, p.start_at) {
            (Some(saved), _) => match find_saved(&slots, &saved) {
                Some(i) => {
                    let mut rest = slots.split_off(i);
                    drop(slots); // older than the checkpoint: already delivered
                    let Slot::Open(mut f) = rest.remove(0) else {
                        unreachable!("find_saved returns open files")
                    };
                    f.seq = tail.take_seq();
                    tail.seek_checkpoint(&mut f, saved.offset)?;
                    tail.lines.last_time_ns = saved.time_ns;
                    tail.current = Some(f);
                    tail.queue = tail.adopt(rest).into();
                }
                None if tail.start_from_hold(&saved, &mut slots)? => {
                    tail.queue = tail.adopt(slots).into();
                    if tail.current.is_none() {
                        // Its file was released: reading goes on with the next, from its start.
                        tail.current = tail.queue.pop_front();
                    }
                }
                None => {
                    // Docker rotated the checkpointed file away and deleted it while logwharf
                    // was not running: count what is known lost, read every file present.
                    let present: Vec<_> = slots
                        .iter()
                        .filter_map(|s| match s {
                            Slot::Open(f) => f.fp,
                            Slot::Vanished(_) => None,
                        })
                        .collect();
                    let gap = StoppedGap::assess(&saved, &present, RotationLimits::read(&tail.dir));
                    tail.metrics
                        .loss
                        .gap(LossReason::DeletedWhileStopped, gap.bytes);
                    tail.pending_gap = Some(gap);
                    tail.queue = tail.adopt(slots).into();
                    tail.current = tail.queue.pop_front();
                    // Counted: checkpoint the start of the oldest file present, so that a
                    // restart before anything is delivered does not count it again.
                    if let Some(f) = tail.current.as_mut().filter(|f| f.fp.is_some()) {
                        commit_now = Some(ResumePoint::at(f.identity(&[]).clone(), 0));
                    }
                }
            },
            (None, StartAt::Beginning) => {
                tail.queue = tail.adopt(slots).into();
                tail.current = tail.queue.pop_front();
                // Checkpointed from the start, before anything is delivered (see `start`).
                tail.first_seq = Some(tail.current.as_ref().map_or(0, |f| f.seq));
            }
            (None, StartAt::End) => {
                let live = match slots.pop() {
                    Some(Slot::Open(f)) if f.rank == 0 => Some(f),
                    _ => None,
                };
                if let Some(mut f) = live {
                    f.seq = tail.take_seq();
                    let end = last_line_end(&f, tail.settings.raw_line_cap)?;
                    f.seek_to(end)?;
                    if end > 0 {
                        commit_now = Some(ResumePoint::at(f.identity(&[]).clone(), end));
                    }
                    tail.current = Some(f);
                }
            }
        }
        Ok((tail, commit_now))
    }

    /// Starting in the middle of a run at `saved` (another reader's position: a sink detached
    /// from the container's shared reader), in a file Docker deleted meanwhile: the hold still
    /// has it. Makes it the current file (none when the hold released it: its unread rest is
    /// counted) and puts the held files after it before `slots`.
    fn start_from_hold(
        &mut self,
        saved: &SavedPosition,
        slots: &mut Vec<Slot>,
    ) -> io::Result<bool> {
        let Some(hold) = self.hold.clone() else {
            return Ok(false);
        };
        let listed = listed_inodes(slots);
        let fp = Some(saved.fingerprint());
        let Some(held) = hold.at_and_after(saved.dev, saved.ino, fp, &listed, &self.metrics.files)
        else {
            return Ok(false);
        };
        let mut held = held.into_iter();
        let mut before = Vec::new();
        match held.next() {
            Some(Held::Open(mut f)) => {
                f.seq = self.take_seq();
                self.seek_checkpoint(&mut f, saved.offset)?;
                self.lines.last_time_ns = saved.time_ns;
                self.current = Some(f);
            }
            Some(Held::Released { name, bytes }) => {
                // Released over the budget: what the sink had not read of it is lost.
                self.count_released(&name, bytes.saturating_sub(saved.offset));
            }
            None => return Ok(false),
        }
        for h in held {
            match h {
                Held::Open(f) => before.push(Slot::Open(f)),
                Held::Released { name, bytes } => self.count_released(&name, bytes),
            }
        }
        before.append(slots);
        *slots = before;
        Ok(true)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The start of the first file, once it has an identity (once: see [`TailBatch::start`]).
    fn start_point(&mut self) -> Option<ResumePoint> {
        let first = self.first_seq?;
        let file = match (&self.last_end, &self.current) {
            (Some(e), _) if e.file.seq == first => Some(e.file.clone()),
            (_, Some(c)) if c.seq == first => c.ident().cloned(),
            // Past the first file without an identity for it (it had no line): nothing before
            // the current file can be skipped, so no start is checkpointed.
            (_, Some(c)) if c.seq > first => {
                self.first_seq = None;
                None
            }
            _ => None,
        }?;
        self.first_seq = None;
        Some(ResumePoint::at(file, 0))
    }

    /// What this reader's sink lost so far, by reason.
    pub fn losses(&self) -> LossTotals {
        self.metrics.loss.totals
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Reads the next batch: up to `batch_max_events` events, following rotation, stopping at
    /// the end of what is written. Partial lines are shipped per `flush` once caught up.
    pub fn next_batch(&mut self, flush: Flush, now: Instant) -> TailBatch {
        let mut b = BatchBuilder::new(&self.settings);
        self.fresh_size = None;
        self.sized = false;
        self.uncached = false;
        // Looked for on every batch, not only at the end of the file: a reader behind a fast
        // writer must take hold of rotated files before Docker deletes them (unless the
        // caller knows no name changed: see `skip_rotation_look`; the end of the file still
        // looks). The same for rewriting in place: new content past our offset must not be
        // read as the continuation of the old.
        let quiet = std::mem::take(&mut self.rotation_quiet);
        let rotation = if quiet {
            Ok(false)
        } else {
            self.refresh_rotation()
        };
        let filled = rotation
            .and_then(|rotated| {
                if rotated {
                    Ok(false)
                } else {
                    self.check_rewritten()
                }
            })
            .and_then(|_| self.fill(&mut b, now));
        let (idle, error) = match filled {
            Ok(idle) => (idle, None),
            Err(e) => (false, Some(e)),
        };
        if idle {
            for (i, stream) in SLOT_STREAMS.into_iter().enumerate() {
                let p = &mut self.lines.partials[i];
                let joined = match flush {
                    Flush::Expired => p.flush_expired(now, self.settings.partial_timeout),
                    Flush::Partials | Flush::Final => p.flush(),
                };
                if let Some(j) = joined {
                    self.lines.push_joined(j, stream, &mut b);
                }
            }
            if flush == Flush::Final {
                self.unterminated_last_line(&mut b, now);
            }
        }
        let partial_deadline = self
            .lines
            .partials
            .iter()
            .filter_map(|p| p.deadline(self.settings.partial_timeout))
            .min();
        let resume = self.resume_point();
        let newest = match (self.queue.back(), self.current.as_ref()) {
            (Some(f), _) | (None, Some(f)) if f.gz => None,
            // The current file was stat'ed in this batch: its size is what it has seen.
            (None, Some(f)) if self.sized => Some((f.seq, f.ino, f.seen)),
            (Some(f), _) | (None, Some(f)) => f.size().ok().map(|s| (f.seq, f.ino, s)),
            (None, None) => None,
        };
        let newest_size = newest.map(|(seq, _, size)| (seq, size));
        let live = newest.map(|(_, ino, size)| (ino, size));
        self.flush_counts();
        let events = b.finish();
        if self.pending_gap.is_some() && (idle || !events.is_empty()) {
            if let Some(g) = self.pending_gap.take() {
                g.warn(&self.id, &self.sink, events.first().map(|e| e.time_ns));
            }
        }
        let start = self.start_point();
        TailBatch {
            start,
            events,
            resume,
            idle,
            partial_deadline,
            newest_size,
            live,
            error,
            uncached: self.uncached,
        }
    }

    /// Bytes asked for per read call; a rate-limited reader sets fewer (`rate_limit`), so
    /// that its batches follow its rate.
    pub fn read_block(&self) -> usize {
        self.settings.read_buffer_bytes
    }

    /// The next batch does not stat the live path for rotation before it reads: the caller
    /// knows no name changed in the directory since the last look (inotify watches it). At
    /// the end of the current file it still looks, so a write to a file this reader does not
    /// hold yet (a rotation inotify could not report) is found by the read that finds
    /// nothing.
    pub fn skip_rotation_look(&mut self) {
        self.rotation_quiet = true;
    }

    /// Whether the next batches read only what the page cache holds (they run on an async
    /// worker, which must not wait for a disk): see [`TailBatch::uncached`].
    pub fn set_cached_only(&mut self, yes: bool) {
        self.cached_only = yes;
    }

    pub fn set_read_block(&mut self, bytes: usize) {
        self.settings.read_buffer_bytes = bytes.max(4096);
    }

    /// Gives back memory held for reading while the reader waits for more: a buffer grown
    /// for a backlog shrinks to what is pending, and with nothing pending it goes (the next
    /// read takes 4 KiB again; 1,000 quiet containers must not keep even that each).
    pub fn release_idle_memory(&mut self) {
        let keep = self.rb.end - self.rb.start;
        if keep == 0 {
            // To the pool the next reader's read takes it from: a buffer of its own per read
            // would cost an allocation (and glibc's consolidation of freed chunks) per line.
            spare::give(std::mem::take(&mut self.rb.buf));
            (self.rb.start, self.rb.end) = (0, 0); // `discarding` holds on
            return;
        }
        if self.rb.buf.capacity() > (2 * keep).max(16 << 10) {
            self.rb.buf.copy_within(self.rb.start..self.rb.end, 0);
            self.rb.buf.truncate(keep);
            self.rb.buf.shrink_to_fit();
            self.rb.end = keep;
            self.rb.start = 0;
        }
    }

    /// Parses lines into `b` until it is full (`Ok(false)`) or nothing more can be read now
    /// (`Ok(true)`).
    fn fill(&mut self, b: &mut BatchBuilder, now: Instant) -> io::Result<bool> {
        loop {
            if b.is_full() {
                return Ok(false);
            }
            let Some(cur) = self.current.as_mut() else {
                if self.advance(b, now)? {
                    continue;
                }
                return Ok(true);
            };
            let rb = &mut self.rb;
            if rb.start < rb.end {
                let base = cur.read_pos - rb.end as u64;
                let newline = memchr::memchr(b'\n', &rb.buf[rb.start..rb.end]);
                match (newline, rb.discarding) {
                    (Some(k), true) => {
                        self.lines.counts.skipped += k as u64 + 1;
                        rb.start += k + 1;
                        rb.discarding = false;
                        continue;
                    }
                    (Some(k), false) => {
                        let (s, e) = (rb.start, rb.start + k);
                        b.reserve_for(k, rb.end - s);
                        rb.start = e + 1;
                        let head = if base == 0 { &rb.buf[..rb.end] } else { &[] };
                        let file = cur.identity(head);
                        self.lines
                            .line(&rb.buf[s..e], file, base + s as u64, b, now);
                        continue;
                    }
                    (None, true) => {
                        self.lines.counts.skipped += (rb.end - rb.start) as u64;
                        rb.start = rb.end;
                    }
                    (None, false) if rb.end - rb.start >= self.settings.raw_line_cap => {
                        // No newline within the cap: ship the head, drop the rest of the line,
                        // so that memory stays bounded whatever the file holds.
                        let head = if base == 0 { &rb.buf[..rb.end] } else { &[] };
                        cur.identity(head);
                        let line = &rb.buf[rb.start..rb.end];
                        self.lines.malformed(line, b);
                        self.lines.counts.skipped +=
                            line.len().saturating_sub(self.settings.max_line_bytes) as u64;
                        rb.start = rb.end;
                        rb.discarding = true;
                    }
                    (None, false) => {} // an incomplete line: wait for the rest of it
                }
            }
            if !b.events.is_empty() {
                // One read block per batch: the batch's buffers were sized for this block.
                // A read that took the whole live file makes this batch the last one for
                // now: the next write wakes the reader again (or its poll does), so a line
                // written now and then costs one batch, not a second one that finds nothing.
                let caught_up = rb.at_end && cur.rank == 0 && !cur.gz && self.queue.is_empty();
                return Ok(caught_up);
            }
            let known = self.fresh_size.take();
            self.sized = true;
            let n = match read_more(
                rb,
                cur,
                self.settings.read_buffer_bytes,
                known,
                self.cached_only,
            ) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.uncached = true;
                    return Ok(false); // more to read, elsewhere
                }
                r => r?,
            };
            if n > 0 {
                self.lines.counts.read += n as u64;
                continue;
            }
            if !self.advance(b, now)? {
                return Ok(true);
            }
        }
    }

    /// At the end of the current file: switch to the next file, or notice rotation or
    /// rewriting. `false` when there is nothing more to read for now.
    fn advance(&mut self, b: &mut BatchBuilder, now: Instant) -> io::Result<bool> {
        if self.current.is_none() {
            self.refresh_rotation()?;
            return Ok(match self.queue.pop_front() {
                Some(f) => {
                    self.switch_to(f);
                    true
                }
                None => false,
            });
        }
        if let Some(next) = self.queue.pop_front() {
            // A newer file existed before this end of file was read, and Docker closes a file
            // before it renames it: this end is final.
            self.finish_current(b, now);
            self.switch_to(next);
            return Ok(true);
        }
        if self.refresh_rotation()? {
            // Read the current file once more to its (now final) end, then switch.
            return Ok(true);
        }
        self.check_rewritten()
    }

    fn switch_to(&mut self, f: OpenFile) {
        self.fresh_size = None;
        self.sized = false;
        tracing::debug!(container = %self.id, file = %f.name, offset = f.read_pos, "reading log file");
        self.rb.clear();
        self.current = Some(f);
    }

    /// The current file is complete: what follows its last newline is a torn write (Docker
    /// ends every record with one); ship it as a line of its own, then let the file go.
    fn finish_current(&mut self, b: &mut BatchBuilder, now: Instant) {
        let Some(mut cur) = self.current.take() else {
            return;
        };
        let rb = &mut self.rb;
        if rb.start < rb.end {
            if rb.discarding {
                self.lines.counts.skipped += (rb.end - rb.start) as u64;
            } else {
                let base = cur.read_pos - rb.end as u64;
                let head = if base == 0 { &rb.buf[..rb.end] } else { &[] };
                let file = cur.identity(head).clone();
                self.lines.line(
                    &rb.buf[rb.start..rb.end],
                    &file,
                    base + rb.start as u64,
                    b,
                    now,
                );
            }
            rb.start = rb.end;
        }
        if cur.ident().is_some() || cur.read_pos > 0 {
            let file = cur.identity(&[]).clone();
            self.last_end = Some(ResumePoint::at(file, cur.read_pos));
        }
        self.rb.clear();
    }

    /// At container removal: bytes after the last newline of the last file will never be
    /// completed; ship them.
    fn unterminated_last_line(&mut self, b: &mut BatchBuilder, now: Instant) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let rb = &mut self.rb;
        if rb.start < rb.end && !rb.discarding {
            let base = cur.read_pos - rb.end as u64;
            let head = if base == 0 { &rb.buf[..rb.end] } else { &[] };
            let file = cur.identity(head);
            self.lines.line(
                &rb.buf[rb.start..rb.end],
                file,
                base + rb.start as u64,
                b,
                now,
            );
        }
        rb.start = rb.end;
    }

    /// Looks for files newer than the newest one held (Docker renamed the live file away)
    /// and opens them all, in order, behind the current one. `true` when some were found.
    fn refresh_rotation(&mut self) -> io::Result<bool> {
        let live = self.dir.join(&self.live_name);
        if let Some(n) = self.queue.back().or(self.current.as_ref()) {
            match fs::metadata(&live) {
                Ok(md) if !n.gz && (n.dev, n.ino) == (md.dev(), md.ino()) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // mid-rotation, or removed
                Err(e) => return Err(e),
            }
        }
        let mut newest = match self.queue.back_mut() {
            Some(f) => Some(f),
            None => self.current.as_mut(),
        };
        let listing = open_siblings(
            &self.dir,
            &self.live_name,
            &self.metrics.files,
            &mut |f| newest.as_mut().is_some_and(|n| n.same_file(f)),
            true,
        )?;
        let mut slots = listing.slots;
        let mut held = None;
        let newer = match newest {
            None => slots,
            Some(n) => {
                let at = slots
                    .iter()
                    .position(|s| matches!(s, Slot::Open(f) if n.same_file(f)));
                match at {
                    Some(i) => slots.split_off(i + 1),
                    None => {
                        // Docker deleted files after ours: the hold may still have them.
                        let listed = listed_inodes(&slots);
                        let fp = n.fp.or_else(|| n.current_fingerprint().ok().flatten());
                        held = self
                            .hold
                            .as_ref()
                            .and_then(|h| h.after(n.dev, n.ino, fp, &listed, &self.metrics.files));
                        if held.is_none() && !listed.is_empty() {
                            tracing::warn!(
                                container = %self.id,
                                sink = %self.sink,
                                file = %n.name,
                                "log file was rotated away and deleted before logwharf looked again; rotated files in between may have been lost (Docker rotates faster than logwharf reads: raise max-size/max-file)"
                            );
                        }
                        slots
                    }
                }
            }
        };
        let lost: Vec<Sibling> = match &self.hold {
            Some(h) => listing
                .lost
                .into_iter()
                .filter(|v| !h.knows(v.ino))
                .collect(),
            None => listing.lost,
        };
        self.count_lost(&lost);
        let mut files = Vec::new();
        for h in held.into_iter().flatten() {
            match h {
                Held::Open(f) => files.push(Slot::Open(f)),
                Held::Released { name, bytes } => self.count_released(&name, bytes),
            }
        }
        files.extend(newer);
        let newer = self.adopt(files);
        let found = !newer.is_empty();
        if found {
            tracing::debug!(container = %self.id, files = newer.len(), "log rotated");
        }
        self.queue.extend(newer);
        Ok(found)
    }

    /// Takes listed files into this reader's order (files that vanished before they could be
    /// opened were accounted for by the listing).
    fn adopt(&mut self, slots: Vec<Slot>) -> Vec<OpenFile> {
        let mut out: Vec<OpenFile> = slots
            .into_iter()
            .filter_map(|s| match s {
                Slot::Open(f) => Some(f),
                Slot::Vanished(_) => None,
            })
            .collect();
        for f in &mut out {
            f.seq = self.next_seq;
            self.next_seq += 1;
        }
        out
    }

    /// A file the hold released over `hold_max_bytes` before this reader got to it.
    fn count_released(&mut self, name: &str, bytes: u64) {
        self.metrics.loss.gap(LossReason::RotatedAway, bytes);
        tracing::warn!(
            container = %self.id,
            sink = %self.sink,
            file = %name,
            bytes,
            "a rotated log file Docker deleted was released over hold_max_bytes before this sink read it; its lines are lost for this sink (raise hold_max_bytes, or max-size/max-file)"
        );
    }

    fn count_lost(&mut self, lost: &[Sibling]) {
        for v in lost {
            self.metrics.loss.gap(LossReason::RotatedAway, v.size);
            tracing::warn!(
                container = %self.id,
                sink = %self.sink,
                file = %v.name,
                bytes = v.size,
                "a rotated log file was deleted before logwharf could open it; its lines are lost (Docker rotates faster than logwharf reads: raise max-size/max-file)"
            );
        }
    }

    /// The live file shrank below our position, or its first line changed: it was truncated
    /// or rewritten in place. Read it again from 0, as a new file.
    fn check_rewritten(&mut self) -> io::Result<bool> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(false);
        };
        if cur.gz || cur.rank != 0 || !self.queue.is_empty() {
            return Ok(false); // only the live file is rewritten in place
        }
        let size = cur.size()?;
        let rewritten = size < cur.read_pos
            || match cur.fp {
                Some(old) => !cur.starts_with(old)?,
                None => false,
            };
        if !rewritten {
            cur.seen = cur.seen.max(size);
            // The read that follows uses this size rather than asking again.
            self.fresh_size = Some(size);
            self.sized = true;
            return Ok(false);
        }
        // Cut: what this reader had seen past what it consumed (including the head of a line
        // still waiting for its newline, and lines read but not parsed yet).
        let consumed = cur.read_pos - (self.rb.end - self.rb.start) as u64;
        let cut = cur.seen.saturating_sub(consumed);
        if cut > 0 {
            self.metrics.loss.gap(LossReason::Truncated, cut);
            tracing::warn!(
                container = %self.id,
                sink = %self.sink,
                file = %cur.name,
                offset = consumed,
                seen = cur.seen,
                size,
                bytes = cut,
                "log file was truncated or rewritten in place (copytruncate, or Docker with max-file=1) before this sink had read it all: {cut} bytes it had not read are lost for it; reading the file again from the start"
            );
        } else {
            tracing::warn!(
                container = %self.id,
                file = %cur.name,
                offset = cur.read_pos,
                size,
                "log file was truncated or rewritten in place (copytruncate, or Docker with max-file=1); reading it again from the start"
            );
        }
        self.metrics.rewritten.increment(1);
        self.rb.clear();
        let seq = self.next_seq;
        self.next_seq += 1;
        cur.restart_as_new(seq);
        Ok(true)
    }

    /// Positions `f` at a checkpointed offset, unless the offset cannot be right for it.
    fn seek_checkpoint(&mut self, f: &mut OpenFile, offset: u64) -> io::Result<()> {
        if f.gz {
            if !f.seek_to(offset)? {
                tracing::warn!(container = %self.id, file = %f.name, offset, "checkpoint offset is past the end of the decompressed file; reading it from the start");
                f.rewind();
            }
            f.identity(&[]);
            return Ok(());
        }
        let size = f.size()?;
        let trusted = if offset > size {
            tracing::warn!(container = %self.id, file = %f.name, offset, size, "checkpoint offset is past the end of the file (truncated since?); reading it from the start");
            false
        } else if offset > 0 && f.byte_at(offset - 1)? != Some(b'\n') {
            tracing::warn!(container = %self.id, file = %f.name, offset, "checkpoint offset is not at a line start (file rewritten since?); reading it from the start");
            false
        } else {
            true
        };
        f.seek_to(if trusted { offset } else { 0 })?;
        if f.read_pos > 0 {
            f.identity(&[]);
        }
        Ok(())
    }

    /// Where a restart must read from for nothing after the events so far to be lost: the
    /// read position, or the start of a partial line still being joined.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        let here = self
            .current
            .as_ref()
            .and_then(|c| {
                c.ident().map(|file| {
                    ResumePoint::at(
                        file.clone(),
                        c.read_pos - (self.rb.end - self.rb.start) as u64,
                    )
                })
            })
            .or_else(|| self.last_end.clone());
        let pending = self
            .lines
            .partials
            .iter()
            .filter_map(|p| p.pending_start())
            .min_by_key(|r| r.order_key());
        let point = match (here, pending) {
            (Some(h), Some(p)) if h.order_key() <= p.order_key() => Some(h),
            (_, Some(p)) => Some(p.clone()),
            (h, None) => h,
        };
        point.map(|mut p| {
            p.time_ns = self.lines.last_time_ns;
            p
        })
    }

    fn flush_counts(&mut self) {
        let c = std::mem::take(&mut self.lines.counts);
        let t = &mut self.counts_total;
        t.read += c.read;
        t.malformed += c.malformed;
        t.truncated += c.truncated;
        t.skipped += c.skipped;
        if c.read > 0 {
            self.metrics.read_bytes.increment(c.read);
        }
        if c.malformed > 0 {
            self.metrics.malformed.increment(c.malformed);
        }
        if c.truncated > 0 {
            self.metrics.truncated.increment(c.truncated);
        }
        if c.skipped > 0 {
            self.metrics.skipped.increment(c.skipped);
        }
    }
}

/// Offset just after the last newline of `f` (looking back at most `cap` bytes).
fn last_line_end(f: &OpenFile, cap: usize) -> io::Result<u64> {
    let size = f.size()?;
    let mut buf = vec![0u8; 64 << 10];
    let mut end = size;
    while end > 0 && size - end < cap as u64 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = read_full_at(f.file(), &mut buf[..(end - start) as usize], start)?;
        if let Some(k) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + k as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Moves the unconsumed bytes to the front and reads the next block after them. The buffer
/// grows to what the file has to offer (up to `block`): a container writing a line now and
/// then keeps a small buffer, a backlog gets large reads.
/// `known`: the file's size, stat'ed just before (else it is asked for here); `cached`: read
/// only from the page cache (`WouldBlock` otherwise).
fn read_more(
    rb: &mut ReadBuf,
    cur: &mut OpenFile,
    block: usize,
    known: Option<u64>,
    cached: bool,
) -> io::Result<usize> {
    if rb.start == rb.end {
        rb.start = 0;
        rb.end = 0;
    } else if rb.start > 0 {
        rb.buf.copy_within(rb.start..rb.end, 0);
        rb.end -= rb.start;
        rb.start = 0;
    }
    let want = if cur.gz {
        block
    } else {
        let size = match known {
            Some(s) => s,
            None => cur.size()?,
        };
        cur.seen = cur.seen.max(size);
        let available = size.saturating_sub(cur.read_pos);
        (available.min(block as u64) as usize).max(4096)
    };
    if rb.buf.capacity() == 0 {
        rb.buf = spare::take();
    }
    if rb.buf.len() - rb.end < want {
        rb.buf.resize(rb.end + want, 0);
    }
    let n = if cached {
        cur.read_cached(&mut rb.buf[rb.end..])?
    } else {
        cur.read(&mut rb.buf[rb.end..])?
    };
    rb.end += n;
    rb.at_end = !cur.gz && cur.read_pos >= cur.seen;
    Ok(n)
}

/// Read buffers of readers that wait with nothing pending, for the next reader to read into
/// (a few, so that 1,000 quiet containers keep none each and a burst does not keep many).
mod spare {
    use std::sync::Mutex;

    const KEEP: usize = 8;
    /// Larger buffers (a backlog's) are freed, not kept.
    const MAX_BYTES: usize = 64 << 10;
    static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    pub fn take() -> Vec<u8> {
        POOL.lock()
            .map(|mut p| p.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn give(buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_BYTES {
            return;
        }
        if let Ok(mut p) = POOL.lock() {
            if p.len() < KEEP {
                p.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests;
