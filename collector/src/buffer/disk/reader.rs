//! The reading side: a task that streams records from the segment files into the sink's
//! queue, as far as the writer has written, holding at most the read-ahead budget in memory
//! (`max_events`, and `max_bytes` up to [`READ_AHEAD_MAX_BYTES`]). It reads a few records per
//! blocking call ([`CHUNK_RECORDS`], [`CHUNK_BYTES`]); when the next record it needs is in
//! [`super::hot`]'s cache (it keeps up with the writer), it takes the batch from there and
//! moves its file position past it instead. Each batch it hands out
//! carries a token that settles its record in the log's [`super::acks::Acks`]; damage is
//! skipped, counted and logged once. It stops when the pipeline shuts down (what is left stays
//! on disk for the next start) or, once every source has stopped, when it has read everything
//! (`run --once`).

use super::codec::{self, Interner};
use super::hot::HotRecord;
use super::segment::{self, Item, Scanner};
use super::writer::Written;
use super::Shared;
use crate::ack::AckToken;
use crate::event::Batch;
use crate::shutdown::Shutdown;
use crate::sink::{Permits, SinkBatch};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};

/// The most message bytes read ahead into memory, whatever `max_bytes` says.
pub const READ_AHEAD_MAX_BYTES: u64 = 16 << 20;

/// Records read from the files per blocking call, at most; and message bytes.
const CHUNK_RECORDS: usize = 64;
const CHUNK_BYTES: usize = 2 << 20;

/// Where the reader is: a segment and a scanner in it.
pub(super) struct Cursor {
    pub(super) dir: PathBuf,
    pub(super) segment: u64,
    scanner: Option<Scanner>,
    /// The scanner reads the segment to its end (the writer has moved on).
    complete: bool,
    /// Records below this were settled before the restart.
    pub(super) skip_below: u64,
    /// The next record to hand out: every one before it was handed out or skipped.
    expect: u64,
    /// Where in `segment` to open the scanner (past a record taken from the cache).
    resume_at: Option<u64>,
    interner: Interner,
}

/// A record to hand to the sink.
struct Record {
    seq: u64,
    events: u32,
    bytes: usize,
    batch: Arc<Batch>,
}

/// What [`Cursor::next`] found.
enum Next {
    Batch(Record),
    /// Nothing more up to what the writer has written.
    Idle,
}

impl Cursor {
    pub(super) fn new(dir: PathBuf, segment: u64, skip_below: u64) -> Cursor {
        Cursor {
            dir,
            segment,
            scanner: None,
            complete: false,
            skip_below,
            expect: skip_below,
            resume_at: None,
            interner: Interner::default(),
        }
    }

    /// Up to a chunk of records, as far as `w`; none when there is nothing more.
    fn read(&mut self, w: Written, shared: &Shared) -> Vec<Record> {
        let (mut out, mut bytes) = (Vec::new(), 0);
        while out.len() < CHUNK_RECORDS && bytes < CHUNK_BYTES {
            match self.next(w, shared) {
                Next::Batch(r) => {
                    bytes += r.bytes;
                    out.push(r);
                }
                Next::Idle => break,
            }
        }
        out
    }

    /// `r` was taken from the cache: the files are read on after it (the scanner, which
    /// only reads forward, is opened there when it is needed).
    fn passed(&mut self, r: &HotRecord) {
        self.scanner = None;
        self.segment = r.segment;
        self.resume_at = Some(r.end);
        self.expect = r.seq + 1;
    }

    /// The next record up to `w`. I/O errors are logged and end the segment (never a loop).
    fn next(&mut self, w: Written, shared: &Shared) -> Next {
        loop {
            if self.scanner.is_none() {
                // The next segment that exists (delivered ones and empty ones are gone).
                let ids = segment::list(&self.dir).unwrap_or_default();
                let Some(&id) = ids
                    .iter()
                    .find(|&&id| id >= self.segment && id <= w.segment)
                else {
                    return Next::Idle;
                };
                let start = match self.resume_at.take() {
                    Some(at) if id == self.segment => at,
                    _ => 0,
                };
                self.segment = id;
                self.complete = id < w.segment;
                let end = (!self.complete).then_some(w.offset);
                match Scanner::open(&segment::path(&self.dir, id), start, end) {
                    Ok(s) => self.scanner = Some(s),
                    Err(e) => {
                        shared.report_damage(
                            &segment::file_name(id),
                            0,
                            &format!("cannot open: {e}"),
                        );
                        if id >= w.segment {
                            return Next::Idle;
                        }
                        self.segment = id + 1;
                        continue;
                    }
                }
            }
            let s = self.scanner.as_mut().expect("opened above");
            if self.segment < w.segment && !self.complete {
                // The writer rolled over: this segment is whole now.
                self.complete = true;
                let len = std::fs::metadata(segment::path(&self.dir, self.segment))
                    .map(|m| m.len())
                    .unwrap_or(0);
                s.set_end(len.max(s.pos()));
            } else if self.segment == w.segment {
                s.set_end(w.offset);
            }
            let item = match s.next_item() {
                Ok(i) => i,
                Err(e) => {
                    let at = s.pos();
                    shared.report_damage(
                        &segment::file_name(self.segment),
                        at,
                        &format!("read error: {e}"),
                    );
                    if self.segment >= w.segment {
                        return Next::Idle;
                    }
                    None
                }
            };
            match item {
                Some(Item::Record {
                    seq,
                    events,
                    payload,
                    offset,
                }) => {
                    self.expect = self.expect.max(seq + 1);
                    if seq < self.skip_below {
                        continue;
                    }
                    match codec::decode(&payload, &mut self.interner) {
                        Ok(batch) => {
                            return Next::Batch(Record {
                                seq,
                                events,
                                bytes: batch.byte_size(),
                                batch: Arc::new(batch),
                            });
                        }
                        Err(e) => {
                            shared.acks().skipped(seq);
                            shared.report_damage(
                                &segment::file_name(self.segment),
                                offset,
                                &e.to_string(),
                            );
                        }
                    }
                }
                Some(Item::Corrupt { offset, len }) | Some(Item::Torn { offset, len }) => {
                    shared.report_damage(
                        &segment::file_name(self.segment),
                        offset,
                        &format!("{len} bytes are no whole record; skipped"),
                    );
                }
                None => {
                    if self.segment >= w.segment {
                        return Next::Idle;
                    }
                    self.scanner = None;
                    self.segment += 1;
                }
            }
        }
    }
}

/// The read-ahead budget: events and KiB of message bytes.
struct Budget {
    events: Arc<Semaphore>,
    event_cap: u32,
    kib: Arc<Semaphore>,
    kib_cap: u32,
}

impl Budget {
    fn new(events: usize, bytes: u64) -> Budget {
        let event_cap = events.clamp(1, u32::MAX as usize >> 4) as u32;
        let kib_cap =
            (bytes.min(READ_AHEAD_MAX_BYTES) / 1024).clamp(1, u32::MAX as u64 >> 4) as u32;
        Budget {
            events: Arc::new(Semaphore::new(event_cap as usize)),
            event_cap,
            kib: Arc::new(Semaphore::new(kib_cap as usize)),
            kib_cap,
        }
    }

    async fn take(&self, events: u32, bytes: usize) -> Permits {
        let e = events.clamp(1, self.event_cap);
        let k = (bytes.div_ceil(1024) as u32).clamp(1, self.kib_cap);
        Permits {
            _events: self
                .events
                .clone()
                .acquire_many_owned(e)
                .await
                .expect("never closed"),
            _bytes: self
                .kib
                .clone()
                .acquire_many_owned(k)
                .await
                .expect("never closed"),
            _share: None,
        }
    }
}

/// Feeds `tx` until shutdown, or until the writers are gone and everything is read.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut cursor: Cursor,
    mut written: watch::Receiver<Written>,
    tx: mpsc::UnboundedSender<SinkBatch>,
    shutdown: Shutdown,
    read_ahead: (usize, u64),
) {
    let budget = Budget::new(read_ahead.0, read_ahead.1);
    let mut queue: VecDeque<Record> = VecDeque::new();
    loop {
        if queue.is_empty() {
            let w = *written.borrow_and_update();
            if let Some(h) = shared.hot.take(cursor.expect) {
                cursor.passed(&h);
                queue.push_back(Record {
                    seq: h.seq,
                    events: h.batch.len() as u32,
                    bytes: h.bytes,
                    batch: h.batch,
                });
            } else {
                let sh = shared.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let r = cursor.read(w, &sh);
                    (cursor, r)
                })
                .await;
                let Ok((c, records)) = read else {
                    tracing::error!(sink = %shared.name, "disk buffer: the reader failed");
                    return;
                };
                cursor = c;
                if records.is_empty() {
                    if w.closed {
                        return;
                    }
                    tokio::select! {
                        r = written.changed() => if r.is_err() { return },
                        _ = shutdown.wait() => return,
                    }
                    continue;
                }
                queue.extend(records);
            }
        }
        let Record {
            seq,
            events,
            bytes,
            batch,
        } = queue.pop_front().expect("not empty");
        let permit = tokio::select! {
            p = budget.take(events, bytes) => p,
            _ = shutdown.wait() => return,
        };
        shared.acks().read(seq, events);
        let me = shared.clone();
        let ack = AckToken::new(Some(Box::new(move |ok| {
            if ok {
                me.settled(seq);
            }
        })));
        let sb = SinkBatch {
            batch,
            ack,
            _permit: Some(permit),
            flow: 0,
        };
        if tx.send(sb).is_err() {
            return;
        }
        if shutdown.is_triggered() {
            return;
        }
    }
}
