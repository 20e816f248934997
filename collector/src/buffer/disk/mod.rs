//! `buffer = { type = "disk" }`: a sink's buffer as an append-only log of segment files under
//! `<data_dir>/buffers/<sink>/` (0700), so that what the receivers accepted survives the sink's
//! outage, a restart and a crash, and the sources never wait on a dead server while the buffer
//! has room.
//!
//! - [`frame`]: one record on disk (magic, length, CRC32C, payload); [`codec`]: a batch as a
//!   payload, every event field included; [`segment`]: segment files and the [`segment::Scanner`]
//!   that verifies them; [`acks`]: what the sink settled, and the `ack` file;
//!   [`open`](mod@open): scanning and repairing at start; [`writer`]: the writer thread and
//!   [`DiskWriter`]; [`reader`]: the task that feeds the sink, from the files or, while it
//!   keeps up, from [`hot`]'s copy of the newest records; [`check`](mod@check): `logwharf check`.
//! - Semantics: a batch is acknowledged to its source once it is written to the buffer's files
//!   (and flushed, with `fsync = "batch"`); the sink reads it back and its record is deleted
//!   (with its whole segment) once the sink settled it. The sink sees the same [`SinkInput`]
//!   as with a memory buffer. At-least-once: after a crash the records settled since the last
//!   store of the ack file (≤ 200 ms) are sent again.
//! - Memory stays bounded whatever the buffer holds: the writer holds the batches being
//!   written (at most [`writer::IN_FLIGHT_BYTES`]), [`hot`] the newest records (at most
//!   [`hot::HOT_BYTES`]), the reader its read-ahead budget, the open scan one record.
//! - Damage: a torn tail (a crash mid-write) is cut at start; a damaged record in the middle is
//!   skipped up to the next valid frame, counted in `logwharf_buffer_corrupt_records_total`
//!   and logged once; nothing in a buffer's files can stop the daemon.
//!
//! [`SinkInput`]: crate::sink::SinkInput

pub mod acks;
pub mod check;
pub mod codec;
pub mod frame;
pub mod hot;
pub mod open;
pub mod reader;
pub mod segment;
pub mod writer;

pub use check::{check, check_all, Problem};
pub use writer::{DiskWriter, OnWritten, WriteOutcome};

use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::sink::SinkBatch;
use acks::Acks;
use logwharf_config::BufferConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

/// The directory of sink `name`'s disk buffer: `<data_dir>/buffers/<name>`, with every byte
/// of the name that is not `[A-Za-z0-9_-]` written as `%XX` (a name is a TOML key: it may
/// hold `/` or `..`).
pub fn dir_for(data_dir: &Path, name: &str) -> PathBuf {
    let mut s = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    data_dir.join("buffers").join(s)
}

/// What the writer thread, the reader and the sink's tokens share.
pub(crate) struct Shared {
    name: Arc<str>,
    acks: Mutex<Acks>,
    /// Bytes of the segment files, plus those reserved for writes under way.
    used: AtomicU64,
    max_size: u64,
    /// Woken when segments are deleted.
    space: Notify,
    /// KiB of encoded batches on their way to the writer thread.
    in_flight: Arc<Semaphore>,
    /// The newest records, for a reader that keeps up.
    hot: hot::Hot,
    events: AtomicI64,
    events_gauge: metrics::Gauge,
    bytes_gauge: metrics::Gauge,
    corrupt: metrics::Counter,
    damage_logged: AtomicBool,
}

impl Shared {
    fn acks(&self) -> MutexGuard<'_, Acks> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acked(&self) -> u64 {
        self.acks().acked()
    }

    /// The sink settled record `seq`.
    fn settled(&self, seq: u64) {
        let n = self.acks().settle(seq);
        if let Some(n) = n {
            self.add_events(-(n as i64));
        }
    }

    fn add_events(&self, n: i64) {
        let v = self.events.fetch_add(n, Ordering::AcqRel) + n;
        self.events_gauge.set(v.max(0) as f64);
    }

    fn bytes_gauge(&self) {
        // Reservations under way are not on disk yet; close enough for a gauge.
        self.bytes_gauge
            .set(self.used.load(Ordering::Acquire) as f64);
    }

    /// Damage the reader skips: counted every time, logged the first time.
    fn report_damage(&self, file: &str, offset: u64, what: &str) {
        self.corrupt.increment(1);
        if !self.damage_logged.swap(true, Ordering::AcqRel) {
            tracing::error!(sink = %self.name, file, offset, "disk buffer: damaged record skipped: {what} (counted in {}; further ones are only counted; `logwharf check --repair` removes them)", m::BUFFER_CORRUPT_RECORDS);
        }
    }
}

/// A sink's open disk buffer: its writer thread, and the reader once started.
pub struct DiskBuffer {
    name: Arc<str>,
    shared: Arc<Shared>,
    tx: std::sync::mpsc::Sender<writer::Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    written: watch::Receiver<writer::Written>,
    /// Where the reader starts (taken when it is started).
    cursor: Option<reader::Cursor>,
    read_ahead: (usize, u64),
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl DiskBuffer {
    /// Opens (creating, scanning and repairing) the buffer in `dir`: blocking I/O, up to one
    /// read of everything it holds. Returns it and the handle the sources write through.
    pub fn open(
        name: &str,
        dir: &Path,
        config: &BufferConfig,
    ) -> std::io::Result<(DiskBuffer, DiskWriter)> {
        let o = open::open(dir)?;
        let name: Arc<str> = name.into();
        for (file, offset, len) in &o.torn {
            tracing::warn!(sink = %name, file, offset, bytes = len, "disk buffer: cut a torn tail (an interrupted write) back to the last whole record");
        }
        if let Some(e) = &o.bad_ack_file {
            tracing::warn!(sink = %name, error = %e, "disk buffer: the ack file is damaged; everything in the buffer is sent again");
        }
        if !o.segments.is_empty() {
            tracing::info!(sink = %name, events = o.events, bytes = o.bytes, segments = o.segments.len(), "disk buffer: resuming with undelivered records");
        }
        let label = name.to_string();
        let shared = Arc::new(Shared {
            name: name.clone(),
            acks: Mutex::new(Acks::new(o.acked)),
            used: AtomicU64::new(o.bytes),
            max_size: config.max_size.0,
            space: Notify::new(),
            in_flight: Arc::new(Semaphore::new(writer::IN_FLIGHT_BYTES / 1024)),
            hot: hot::Hot::default(),
            events: AtomicI64::new(0),
            events_gauge: metrics::gauge!(m::BUFFER_EVENTS, "sink" => label.clone()),
            bytes_gauge: metrics::gauge!(m::BUFFER_BYTES, "sink" => label.clone()),
            corrupt: metrics::counter!(m::BUFFER_CORRUPT_RECORDS, "sink" => label),
            damage_logged: AtomicBool::new(false),
        });
        shared.add_events(o.events as i64);
        let id = o.segments.last().map_or(1, |s| s.id + 1);
        let first = o.segments.first().map_or(id, |s| s.id);
        let active = writer::Log::create_segment(dir, id)?;
        let hdr = segment::FILE_HEADER.len() as u64;
        shared.used.fetch_add(hdr, Ordering::AcqRel);
        shared.bytes_gauge();
        let mut segments: std::collections::VecDeque<_> = o.segments.into();
        segments.push_back(open::SegMeta {
            id,
            end_seq: o.next_seq,
            bytes: hdr,
        });
        let (wtx, written) = watch::channel(writer::Written {
            segment: id,
            offset: hdr,
            closed: false,
        });
        let log = writer::Log {
            dir: dir.to_path_buf(),
            shared: shared.clone(),
            segments,
            active,
            next_seq: o.next_seq,
            segment_size: segment_size(config.max_size.0),
            fsync: config.fsync,
            written: wtx,
            dirty: false,
            stored_acked: o.acked,
            active_start: o.next_seq,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("buffer-{name}"))
            .spawn(move || log.run(rx))?;
        let w = DiskWriter {
            tx: tx.clone(),
            shared: shared.clone(),
            _guard: Arc::new(writer::WritersGuard(tx.clone())),
        };
        Ok((
            DiskBuffer {
                name,
                shared,
                tx,
                thread: Some(thread),
                written,
                cursor: Some(reader::Cursor::new(dir.to_path_buf(), first, o.acked)),
                read_ahead: (config.max_events, config.max_bytes.0),
                reader: None,
            },
            w,
        ))
    }

    /// Starts feeding the sink's queue `tx` (once).
    pub fn start_reader(&mut self, tx: mpsc::UnboundedSender<SinkBatch>, shutdown: Shutdown) {
        let Some(cursor) = self.cursor.take() else {
            return;
        };
        self.reader = Some(tokio::spawn(reader::run(
            self.shared.clone(),
            cursor,
            self.written.clone(),
            tx,
            shutdown,
            self.read_ahead,
        )));
    }

    /// Stops feeding the sink (what is left stays on disk); the sink then drains what it was
    /// given and ends.
    pub fn stop_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }

    /// Stops the reader, flushes and stores the acked position. Call once the sink is done.
    pub async fn close(mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
            let _ = r.await;
        }
        let _ = self.tx.send(writer::Msg::Close);
        if let Some(t) = self.thread.take() {
            let name = self.name.clone();
            if tokio::task::spawn_blocking(move || t.join()).await.is_err() {
                tracing::error!(sink = %name, "disk buffer: the writer thread failed");
            }
        }
    }
}

impl Drop for DiskBuffer {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        let _ = self.tx.send(writer::Msg::Close);
    }
}

/// Segments are an eighth of `max_size`, between 1 MiB and 128 MiB: small enough that a
/// delivered one frees space soon, large enough that files stay few.
fn segment_size(max_size: u64) -> u64 {
    (max_size / 8).clamp(1 << 20, 128 << 20)
}

#[cfg(test)]
mod tests;
