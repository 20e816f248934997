//! The writing side: [`DiskWriter`] (one handle per source output, cheap to clone) encodes a
//! batch in the caller's task, reserves its bytes against `max_size` (waiting, or refusing for
//! `drop_newest`), and hands the frames to the buffer's writer thread, which appends them to
//! the active segment — every request waiting at that moment in one `writev` — flushes per the
//! `fsync` policy, and calls each request's [`OnWritten`]. The caller does not wait for that:
//! up to [`IN_FLIGHT_BYTES`] may be on their way to the file, so a source encodes its next
//! batch while the last one is written (and, with `fsync = "batch"`, batches that arrive
//! during one fdatasync share the next). On a timer the thread also flushes
//! (`fsync = "<duration>"`), stores the acked position, deletes delivered segments and rolls
//! the active one when it is delivered.

use super::codec;
use super::hot::HotRecord;
use super::open::SegMeta;
use super::segment;
use super::Shared;
use crate::event::Batch;
use logwharf_config::{Fsync, WhenFull};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};

/// How far the writer has written: the reader reads up to here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub segment: u64,
    pub offset: u64,
    /// Every [`DiskWriter`] is gone (every source feeding the sink has stopped).
    pub closed: bool,
}

pub(super) enum Msg {
    Append(Request),
    WritersGone,
    Close,
}

/// One batch to append.
pub(super) struct Request {
    frames: Vec<(Vec<u8>, u32)>,
    /// Of `max_size`; given back if the write fails.
    reserved: u64,
    /// The batch itself, for the reader's in-memory cache when it is one record.
    batch: Option<Arc<Batch>>,
    done: OnWritten,
    _in_flight: OwnedSemaphorePermit,
}

/// Called once per batch, on the writer thread (or in [`DiskWriter::write`] when it never got
/// there): `Ok(Written)` once it is in the buffer (flushed as the `fsync` policy says),
/// `Ok(Full)` when `drop_newest` found no room, or the error that kept it out.
pub type OnWritten = Box<dyn FnOnce(io::Result<WriteOutcome>) + Send>;

/// Encoded bytes on their way to the writer thread, at most (one larger batch passes alone).
pub const IN_FLIGHT_BYTES: usize = 4 << 20;

/// The last [`DiskWriter`] clone going away tells the writer thread.
pub(super) struct WritersGuard(pub(super) Sender<Msg>);

impl Drop for WritersGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::WritersGone);
    }
}

/// A source output's handle on a sink's disk buffer.
#[derive(Clone)]
pub struct DiskWriter {
    pub(super) tx: Sender<Msg>,
    pub(super) shared: Arc<Shared>,
    pub(super) _guard: Arc<WritersGuard>,
}

/// What became of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// In the buffer (flushed as the `fsync` policy says): the source may move on.
    Written,
    /// `when_full = "drop_newest"` and no room: not written.
    Full,
}

/// Room in the buffer is left for a batch larger than `max_size` when the buffer holds less
/// than this (such a batch passes alone, as with the memory buffer).
const EMPTY: u64 = 64 << 10;

impl DiskWriter {
    /// Queues `batch` for the writer thread, which calls `done` once it is written; waits for
    /// room in the buffer with `block` (with `drop_newest`, `done(Ok(Full))` is called here),
    /// and for the batches ahead of it while [`IN_FLIGHT_BYTES`] are on their way.
    pub async fn write(&self, batch: &Arc<Batch>, when_full: WhenFull, done: OnWritten) {
        let frames = codec::encode(batch);
        let total: u64 = frames.iter().map(|(f, _)| f.len() as u64).sum();
        loop {
            let notified = self.shared.space.notified();
            if self.shared.try_reserve(total) {
                break;
            }
            if when_full == WhenFull::DropNewest {
                done(Ok(WriteOutcome::Full));
                return;
            }
            notified.await;
        }
        let kib = (total.div_ceil(1024) as usize).clamp(1, IN_FLIGHT_BYTES / 1024) as u32;
        let in_flight = self
            .shared
            .in_flight
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("never closed");
        let req = Request {
            batch: (frames.len() == 1).then(|| batch.clone()),
            frames,
            reserved: total,
            done,
            _in_flight: in_flight,
        };
        if let Err(std::sync::mpsc::SendError(Msg::Append(req))) = self.tx.send(Msg::Append(req)) {
            self.shared.used.fetch_sub(total, Ordering::AcqRel);
            (req.done)(Err(io::Error::other("the disk buffer is closed")));
        }
    }

    /// [`DiskWriter::write`], waiting until the batch is written.
    pub async fn write_and_wait(
        &self,
        batch: &Arc<Batch>,
        when_full: WhenFull,
    ) -> io::Result<WriteOutcome> {
        let (tx, rx) = oneshot::channel();
        let done: OnWritten = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.write(batch, when_full, done).await;
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the disk buffer's writer stopped")))
    }
}

impl Shared {
    /// Takes `n` bytes of `max_size`, if they are free.
    pub(super) fn try_reserve(&self, n: u64) -> bool {
        let max = self.max_size;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= max || u < EMPTY).then_some(u + n)
            })
            .is_ok()
    }
}

/// The writer thread's state: the segments on disk and the active one.
pub(super) struct Log {
    pub(super) dir: PathBuf,
    pub(super) shared: Arc<Shared>,
    /// Oldest first; the last is the active one.
    pub(super) segments: VecDeque<SegMeta>,
    pub(super) active: File,
    pub(super) next_seq: u64,
    pub(super) segment_size: u64,
    pub(super) fsync: Fsync,
    pub(super) written: watch::Sender<Written>,
    /// Written since the last fdatasync.
    pub(super) dirty: bool,
    pub(super) stored_acked: u64,
    /// The first sequence number of the active segment (it holds records once `end_seq` is
    /// past it).
    pub(super) active_start: u64,
}

/// How often the writer thread looks after the log when nothing is written.
const TICK: Duration = Duration::from_millis(200);

impl Log {
    /// Creates segment `id` as the active one.
    pub(super) fn create_segment(dir: &std::path::Path, id: u64) -> io::Result<File> {
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment::path(dir, id))?;
        f.write_all(segment::FILE_HEADER)?;
        Ok(f)
    }

    fn active_meta(&mut self) -> &mut SegMeta {
        self.segments
            .back_mut()
            .expect("there is an active segment")
    }

    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let interval = match self.fsync {
            Fsync::Batch => TICK,
            Fsync::Every(d) => d.min(TICK),
        };
        let mut next_tick = Instant::now() + interval;
        let mut gone = false;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Append(req)) => {
                    let mut group = vec![req];
                    let mut end = false;
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Append(req) => group.push(req),
                            Msg::WritersGone => gone = true,
                            Msg::Close => end = true,
                        }
                        if group.len() >= 256 || end {
                            break;
                        }
                    }
                    self.append_group(group);
                    if end {
                        break;
                    }
                }
                Ok(Msg::WritersGone) => {
                    gone = true;
                    self.publish(gone);
                }
                Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + interval;
            }
            if gone {
                self.publish(true);
            }
        }
        self.sync();
        self.tick();
        // Everything delivered: nothing needs to stay (the next start creates a new segment).
        if self.segments.len() == 1 && self.shared.acked() >= self.next_seq {
            let id = self.segments[0].id;
            if std::fs::remove_file(segment::path(&self.dir, id)).is_ok() {
                self.shared
                    .used
                    .fetch_sub(self.segments[0].bytes, Ordering::AcqRel);
                self.shared.bytes_gauge();
            }
        }
        self.publish(true);
    }

    fn publish(&self, closed: bool) {
        let seg = self.segments.back().expect("there is an active segment");
        self.written.send_replace(Written {
            segment: seg.id,
            offset: seg.bytes,
            closed,
        });
    }

    fn append_group(&mut self, mut group: Vec<Request>) {
        let mark = (
            self.active_meta().id,
            self.active_meta().bytes,
            self.next_seq,
        );
        let mut seq = self.next_seq;
        for req in &mut group {
            for (f, n) in &mut req.frames {
                super::frame::seal(f, seq, *n);
                seq += 1;
            }
        }
        let mut placed = Vec::with_capacity(group.len());
        let mut result = match self.append(&group, &mut placed) {
            Ok(events) => {
                self.shared.add_events(events as i64);
                Ok(())
            }
            Err(e) => {
                let reserved: u64 = group.iter().map(|r| r.reserved).sum();
                self.shared.used.fetch_sub(reserved, Ordering::AcqRel);
                self.undo(mark);
                placed.clear();
                Err(e)
            }
        };
        if result.is_ok() {
            if self.fsync == Fsync::Batch {
                if let Err(e) = self.active.sync_data() {
                    result = Err(io::Error::new(e.kind(), format!("fdatasync: {e}")));
                }
            } else {
                self.dirty = true;
            }
        }
        // Into the reader's cache before the new end is published, so that a reader woken by
        // it finds them there.
        for (req, &(seq, segment, end)) in group.iter().zip(&placed) {
            if let Some(batch) = &req.batch {
                self.shared.hot.push(HotRecord {
                    seq,
                    batch: batch.clone(),
                    segment,
                    end,
                    bytes: batch.byte_size(),
                });
            }
        }
        self.publish(false);
        for req in group {
            let r = match &result {
                Ok(()) => Ok(WriteOutcome::Written),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            (req.done)(r);
        }
        self.shared.bytes_gauge();
    }

    /// Appends the (sealed) frames of `group`, rolling over to new segments as they fill, in
    /// as few `writev`s as the rolls allow; their events. `placed` gets each request's last
    /// record: its sequence number, segment, and the offset after it.
    fn append(&mut self, group: &[Request], placed: &mut Vec<(u64, u64, u64)>) -> io::Result<u64> {
        let mut run: Vec<IoSlice<'_>> = Vec::new();
        let mut events = 0;
        for req in group {
            for (f, n) in &req.frames {
                let len = f.len() as u64;
                let seg = self.segments.back().expect("there is an active segment");
                if seg.bytes + len > self.segment_size && seg.end_seq > self.active_start {
                    write_all_vectored(&mut self.active, &mut run)?;
                    run.clear();
                    self.roll()?;
                }
                run.push(IoSlice::new(f));
                self.next_seq += 1;
                let next = self.next_seq;
                let seg = self.active_meta();
                seg.end_seq = next;
                seg.bytes += len;
                events += *n as u64;
            }
            let seg = self.segments.back().expect("there is an active segment");
            placed.push((self.next_seq - 1, seg.id, seg.bytes));
        }
        write_all_vectored(&mut self.active, &mut run)?;
        Ok(events)
    }

    /// After a failed write: cuts what part of the group reached the active segment, so that
    /// it stays whole (when the group had rolled over into a new segment, that one is cut
    /// back to empty; what reached the older one stays, and is sent again, at-least-once).
    fn undo(&mut self, (id, bytes, next_seq): (u64, u64, u64)) {
        let (bytes, next_seq) = if self.active_meta().id == id {
            (bytes, next_seq)
        } else {
            (segment::FILE_HEADER.len() as u64, self.active_start)
        };
        if let Err(e) = self.active.set_len(bytes) {
            tracing::warn!(sink = %self.shared.name, error = %e, "disk buffer: cutting a failed write failed");
            return;
        }
        self.next_seq = next_seq;
        let seg = self.active_meta();
        seg.bytes = bytes;
        seg.end_seq = next_seq;
    }

    /// Closes the active segment (flushed: it is only read from now on) and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        self.active.sync_data()?;
        let id = self.active_meta().id + 1;
        self.active = Log::create_segment(&self.dir, id)?;
        let hdr = segment::FILE_HEADER.len() as u64;
        self.shared.used.fetch_add(hdr, Ordering::AcqRel);
        self.active_start = self.next_seq;
        self.segments.push_back(SegMeta {
            id,
            end_seq: self.next_seq,
            bytes: hdr,
        });
        Ok(())
    }

    fn sync(&mut self) {
        if self.dirty {
            if let Err(e) = self.active.sync_data() {
                tracing::warn!(sink = %self.shared.name, error = %e, "disk buffer: fdatasync failed");
            }
            self.dirty = false;
        }
    }

    /// Flush, store the acked position, delete what is delivered.
    fn tick(&mut self) {
        self.sync();
        let acked = self.shared.acked();
        if acked != self.stored_acked {
            match super::acks::store(&self.dir, acked) {
                Ok(()) => self.stored_acked = acked,
                Err(e) => {
                    tracing::warn!(sink = %self.shared.name, error = %e, "disk buffer: writing the ack file failed")
                }
            }
        }
        // The active segment, once delivered and of some size, is rolled so it can go too.
        let active = self.segments.back().expect("there is an active segment");
        if active.end_seq <= acked
            && active.end_seq > self.active_start
            && active.bytes >= self.segment_size / 4
        {
            if let Err(e) = self.roll() {
                tracing::warn!(sink = %self.shared.name, error = %e, "disk buffer: starting a new segment failed");
            } else {
                self.publish(false);
            }
        }
        let mut freed = 0;
        while self.segments.len() > 1 && self.segments[0].end_seq <= acked {
            let s = self.segments.pop_front().unwrap();
            match std::fs::remove_file(segment::path(&self.dir, s.id)) {
                Ok(()) => freed += s.bytes,
                Err(e) => {
                    tracing::warn!(sink = %self.shared.name, error = %e, segment = s.id, "disk buffer: deleting a delivered segment failed");
                    self.segments.push_front(s);
                    break;
                }
            }
        }
        if freed > 0 {
            self.shared.used.fetch_sub(freed, Ordering::AcqRel);
            self.shared.space.notify_waiters();
        }
        self.shared.bytes_gauge();
    }
}

/// Writes every byte of `bufs` (at most 1024 slices per call: the kernel's IOV_MAX).
fn write_all_vectored(f: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        let n = bufs.len().min(1024);
        match f.write_vectored(&bufs[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => IoSlice::advance_slices(&mut bufs, k),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
