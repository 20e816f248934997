//! One container's live state for `/status`, kept by the json-file source: its log's write
//! rate (from the sizes the container's hold sees, [`ContainerStats::observe_live`]), Docker's
//! rotation limits, and per sink where that sink's reader is ([`PositionStats`]): read and
//! delivered positions, bytes behind the end of the log, deliveries and losses — and from these
//! the time left before Docker's rotation deletes what that sink has not delivered yet
//! ([`time_to_loss`]).

use super::meter::Meter;
use crate::event::ContainerMeta;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct ContainerStats {
    pub(super) source: Arc<str>,
    pub(super) id: String,
    /// Docker's `max-size` and `max-file` for it (`None`: no such limit, or unknown).
    pub(super) max_size: Option<u64>,
    pub(super) max_file: Option<u32>,
    pub(super) meta: Mutex<Names>,
    /// Which metadata record `meta` came from (its address), so a batch with the same record
    /// costs one load and compare.
    meta_ptr: AtomicUsize,
    /// Bytes Docker wrote to its log (as the hold saw them).
    pub(super) written: Meter,
    live: Mutex<Option<Live>>,
    pub(super) sinks: Mutex<Vec<Arc<PositionStats>>>,
}

#[derive(Default, Clone)]
pub(super) struct Names {
    pub name: Option<String>,
    pub image: Option<String>,
}

#[derive(Clone, Copy)]
struct Live {
    ino: u64,
    size: u64,
    /// The live file before the last rotation: a late report of it (a reader that has not
    /// looked again yet) is not a rotation back.
    before: Option<u64>,
}

impl ContainerStats {
    pub(super) fn new(
        source: Arc<str>,
        id: &str,
        max_size: Option<u64>,
        max_file: Option<u32>,
    ) -> ContainerStats {
        ContainerStats {
            source,
            id: id.to_string(),
            max_size,
            max_file,
            meta: Mutex::default(),
            meta_ptr: AtomicUsize::new(0),
            written: Meter::new(),
            live: Mutex::new(None),
            sinks: Mutex::new(Vec::new()),
        }
    }

    /// The entry of `sink`'s reader of this container.
    pub fn sink(&self, sink: &str) -> Arc<PositionStats> {
        let mut g = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.iter().find(|s| &*s.sink == sink) {
            return s.clone();
        }
        let s = Arc::new(PositionStats::new(sink));
        g.push(s.clone());
        s
    }

    /// The container's metadata record as the batch just read carries it.
    pub fn set_meta(&self, m: &Arc<ContainerMeta>) {
        let ptr = Arc::as_ptr(m) as usize;
        if self.meta_ptr.swap(ptr, Ordering::Relaxed) != ptr {
            let mut g = self.meta.lock().unwrap_or_else(|p| p.into_inner());
            g.name = m.name.clone();
            g.image = m.image_name.clone();
        }
    }

    /// The live log file is inode `ino` with `size` bytes now: what was written since the last
    /// look goes into the write rate. After a rotation the previous file is counted as filled
    /// to `max-size` (Docker rotates once a file reaches it).
    pub fn observe_live(&self, ino: u64, size: u64) {
        let mut g = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let (grew, before) = match *g {
            None => (0, None),
            // Several readers and the hold report: an older report is nothing new.
            Some(l) if l.before == Some(ino) || (l.ino == ino && size < l.size) => return,
            Some(l) if l.ino == ino => (size - l.size, l.before),
            Some(l) => (
                self.max_size.unwrap_or(l.size).saturating_sub(l.size) + size,
                Some(l.ino),
            ),
        };
        *g = Some(Live { ino, size, before });
        drop(g);
        self.written.add(grew);
    }

    pub(super) fn live_size(&self) -> Option<u64> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|l| l.size)
    }
}

/// One sink's reader of one container.
pub struct PositionStats {
    pub(super) sink: Arc<str>,
    pub(super) read: Mutex<Option<(String, u64)>>,
    pub(super) delivered: Mutex<Option<Delivered>>,
    pub(super) events: Meter,
    pub(super) bytes: Meter,
    pub(super) lost_bytes: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// Where a sink's checkpoint of a container is, and what lies after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub file: String,
    pub offset: u64,
    /// Bytes written after it (in its file and the newer ones).
    pub behind: u64,
    /// How many of the container's files are newer than the one it is in (0: the live file).
    pub newer_files: u32,
}

impl PositionStats {
    fn new(sink: &str) -> PositionStats {
        PositionStats {
            sink: sink.into(),
            read: Mutex::new(None),
            delivered: Mutex::new(None),
            events: Meter::new(),
            bytes: Meter::new(),
            lost_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The reader has read up to `offset` in `file`.
    pub fn read_at(&self, file: &str, offset: u64) {
        let mut g = self.read.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some((f, o)) if f == file => *o = offset,
            _ => *g = Some((file.to_string(), offset)),
        }
    }

    /// The sink's checkpoint moved (or what lies after it changed).
    pub fn set_delivered(&self, d: Delivered) {
        *self.delivered.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }

    /// A batch of `events` events, `bytes` message bytes, reached the sink.
    pub fn delivered(&self, events: u64, bytes: u64) {
        self.events.add(events);
        self.bytes.add(bytes);
    }

    /// The reader's lost-byte total (it counts them; this keeps the latest figure).
    pub fn set_lost(&self, bytes: u64) {
        self.lost_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn dropped(&self, events: u64) {
        self.dropped.fetch_add(events, Ordering::Relaxed);
    }
}

/// Seconds until Docker deletes the oldest byte `d` says the sink has not delivered, when it
/// rotates at `max_size` bytes keeping `max_file` files, the live file holds `live` bytes and
/// grows by `rate` bytes a second. `None`: nothing is at risk (nothing undelivered, no
/// rotation limits, nothing being written). 0: Docker has deleted that file already (its
/// lines are gone, or only the hold keeps them).
///
/// Docker deletes the oldest file when it rotates with `max_file` files present, so a byte in
/// the file with `newer_files` newer ones goes with the `max_file - newer_files`-th rotation
/// from now; the first comes once the live file is full, every later one `max_size` bytes on.
pub fn time_to_loss(
    d: &Delivered,
    max_size: Option<u64>,
    max_file: Option<u32>,
    live: u64,
    rate: f64,
) -> Option<f64> {
    let (max_size, max_file) = (max_size?, max_file?);
    if d.behind == 0 {
        return None;
    }
    let rotations = max_file.checked_sub(d.newer_files).filter(|&r| r > 0);
    let Some(rotations) = rotations else {
        return Some(0.0);
    };
    if rate <= 0.0 {
        return None;
    }
    let bytes = max_size.saturating_sub(live) + u64::from(rotations - 1) * max_size;
    Some(bytes as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(newer_files: u32, behind: u64) -> Delivered {
        Delivered {
            newer_files,
            behind,
            ..Delivered::default()
        }
    }

    #[test]
    fn time_to_loss_counts_the_rotations_left() {
        let (m, f) = (Some(1_000_000), Some(2));
        // In the live file, 400 kB written: 600 kB to the first rotation, 1 MB to the second.
        assert_eq!(
            time_to_loss(&at(0, 10), m, f, 400_000, 100_000.0),
            Some(16.0)
        );
        // In `.1`: gone with the next rotation.
        assert_eq!(
            time_to_loss(&at(1, 10), m, f, 400_000, 100_000.0),
            Some(6.0)
        );
        // Deleted by Docker already.
        assert_eq!(time_to_loss(&at(2, 10), m, f, 0, 100_000.0), Some(0.0));
        // Nothing undelivered, no limits, nothing written: nothing at risk.
        assert_eq!(time_to_loss(&at(0, 0), m, f, 0, 100_000.0), None);
        assert_eq!(time_to_loss(&at(0, 10), None, f, 0, 100_000.0), None);
        assert_eq!(time_to_loss(&at(0, 10), m, f, 0, 0.0), None);
    }

    #[test]
    fn the_write_rate_spans_rotations() {
        let c = ContainerStats::new("s".into(), "c", Some(1000), Some(2));
        c.observe_live(1, 100);
        c.observe_live(1, 600);
        c.observe_live(2, 50); // rotated at 1000: 400 + 50 more
        assert_eq!(c.written.total(), 950);
    }
}
