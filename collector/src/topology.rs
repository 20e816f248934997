//! The pipeline runtime: the bounded buffers between sources and sinks and the router that
//! fills them ([`SourceOutput::send`]). [`running`] starts every sink and source of a config
//! under its supervisor ([`crate::supervisor`]: restarts after errors and panics, reported in
//! [`crate::Health`]), applies reloads ([`reload`]) and shuts down in order: stop sources,
//! drain sinks, write the final checkpoints — all within one `shutdown_timeout`.
//!
//! A sink's buffer is bounded in events (`buffer.max_events`) and in message bytes
//! (`buffer.max_bytes`, counted in KiB permits). A source that can read its input again (the
//! json-file source) gives each sink its own stream with [`SourceOutput::only`], so that a
//! full buffer stops only the reader of that sink; other sources send one batch to every sink
//! and wait for the fullest. Such a view may fill at most half of a `block` buffer, and the
//! sink takes the views' batches in turn ([`crate::flows`]): a container with a backlog does
//! not make the others' lines wait behind all of it.

use crate::ack::{AckToken, OnDelivered};
use crate::buffer::disk::{self, DiskBuffer, DiskWriter, OnWritten, WriteOutcome};
use crate::event::{Batch, Event};
use crate::filter::{self, SinkFilter};
use crate::inflight::Queue;
use crate::metrics as m;
use crate::sink::{Permits, SinkBatch, SinkInput};
use crate::status;
use anyhow::Context;
use logwharf_config::{FilterConfig, WhenFull};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// The sinks' buffers were closed: the pipeline is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is shutting down")]
pub struct Closed;

/// Message bytes per byte-budget permit.
const BYTES_PER_PERMIT: usize = 1024;

/// Buffer space in events and in KiB of message bytes.
#[derive(Clone)]
struct Budget {
    permits: Arc<Semaphore>,
    capacity: u32,
    /// The byte budget, in KiB permits.
    byte_permits: Arc<Semaphore>,
    byte_capacity: u32,
}

impl Budget {
    fn new(capacity: u32, byte_capacity: u32) -> Budget {
        Budget {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            byte_permits: Arc::new(Semaphore::new(byte_capacity as usize)),
            byte_capacity,
        }
    }

    /// What `/status` reads of it: the events and bytes it holds now, and its capacity.
    fn probe(&self) -> crate::status::BufferProbe {
        let b = self.clone();
        Box::new(move || crate::status::BufferFill {
            events: u64::from(b.capacity).saturating_sub(b.permits.available_permits() as u64),
            bytes: u64::from(b.byte_capacity)
                .saturating_sub(b.byte_permits.available_permits() as u64)
                * BYTES_PER_PERMIT as u64,
            max_events: b.capacity.into(),
            max_bytes: u64::from(b.byte_capacity) * BYTES_PER_PERMIT as u64,
        })
    }

    /// Room for `n` events of `bytes`: waited for (`block`), or `None` when it is not free now
    /// (`drop_newest`). A batch larger than the whole budget takes all of it.
    async fn reserve(
        &self,
        n: usize,
        bytes: usize,
        when_full: WhenFull,
    ) -> Result<Option<Permits>, Closed> {
        let want = (n as u32).clamp(1, self.capacity);
        let want_bytes = (bytes.div_ceil(BYTES_PER_PERMIT) as u32).clamp(1, self.byte_capacity);
        Ok(match when_full {
            WhenFull::Block => {
                let events = self
                    .permits
                    .clone()
                    .acquire_many_owned(want)
                    .await
                    .map_err(|_| Closed)?;
                let bytes = self
                    .byte_permits
                    .clone()
                    .acquire_many_owned(want_bytes)
                    .await
                    .map_err(|_| Closed)?;
                Some(Permits {
                    _events: events,
                    _bytes: bytes,
                    _share: None,
                })
            }
            WhenFull::DropNewest => {
                let events = self.permits.clone().try_acquire_many_owned(want).ok();
                let bytes = self
                    .byte_permits
                    .clone()
                    .try_acquire_many_owned(want_bytes)
                    .ok();
                match (events, bytes) {
                    (Some(events), Some(bytes)) => Some(Permits {
                        _events: events,
                        _bytes: bytes,
                        _share: None,
                    }),
                    _ => None,
                }
            }
        })
    }
}

#[derive(Clone)]
struct SinkTarget {
    name: Arc<str>,
    tx: mpsc::UnboundedSender<SinkBatch>,
    /// The sink's whole buffer.
    buffer: Budget,
    /// A [`SourceOutput::only`] view's share of it: half, so that one reader with a backlog
    /// never holds the whole buffer and another reader's batch finds room at once (and is then
    /// next in line: [`crate::flows`]). Taken before the buffer's own permits.
    share: Option<Budget>,
    when_full: WhenFull,
    /// Which events this sink takes; `filtered` counts the others.
    filter: Arc<SinkFilter>,
    filtered: metrics::Counter,
    /// A `disk` buffer: batches are written there (and settled for this sink once written)
    /// instead of waiting in memory; the buffer's reader feeds the sink.
    disk: Option<DiskWriter>,
}

impl SinkTarget {
    fn new(
        name: Arc<str>,
        tx: mpsc::UnboundedSender<SinkBatch>,
        buffer: &logwharf_config::sink::BufferConfig,
    ) -> SinkTarget {
        let capacity = buffer.max_events.clamp(1, u32::MAX as usize >> 4) as u32;
        let byte_capacity = (buffer.max_bytes.0 as usize / BYTES_PER_PERMIT)
            .clamp(1, u32::MAX as usize >> 4) as u32;
        let filter = SinkFilter::new(name.clone(), &FilterConfig::default())
            .expect("the empty filter compiles");
        SinkTarget {
            filtered: metrics::counter!(m::SINK_FILTERED_EVENTS, "sink" => name.to_string()),
            filter: Arc::new(filter),
            name,
            tx,
            buffer: Budget::new(capacity, byte_capacity),
            share: None,
            when_full: buffer.when_full,
            disk: None,
        }
    }

    /// The sink's batches go to its disk buffer.
    fn with_disk(mut self, w: DiskWriter) -> SinkTarget {
        self.disk = Some(w);
        self
    }

    /// The sink takes only what `filter` admits.
    fn with_filter(mut self, filter: SinkFilter) -> SinkTarget {
        self.filter = Arc::new(filter);
        self
    }

    /// The same sink, for one reader: with a share of its own (`block` buffers; a
    /// `drop_newest` buffer drops only when it is full, as it says).
    fn shared(&self) -> SinkTarget {
        let b = &self.buffer;
        SinkTarget {
            // A disk buffer holds a backlog on disk, not in the shared memory budget.
            share: (self.when_full == WhenFull::Block && self.disk.is_none())
                .then(|| Budget::new((b.capacity / 2).max(1), (b.byte_capacity / 2).max(1))),
            ..self.clone()
        }
    }

    /// Buffer space for a batch of `n` events and `bytes` message bytes: waits for it
    /// (`block`), or `None` when it is not free now (`drop_newest`). A batch larger than the
    /// whole buffer takes all of it.
    async fn reserve(&self, n: usize, bytes: usize) -> Result<Option<Permits>, Closed> {
        let share = match &self.share {
            Some(s) => match s.reserve(n, bytes, self.when_full).await? {
                Some(p) => Some(Box::new(p)),
                None => return Ok(None),
            },
            None => None,
        };
        let permits = self.buffer.reserve(n, bytes, self.when_full).await?;
        Ok(permits.map(|p| Permits { _share: share, ..p }))
    }
}

/// A source's connection to the sinks that read it. Cheap to clone (one per reader task).
#[derive(Clone)]
pub struct SourceOutput {
    source: Arc<str>,
    targets: Arc<[SinkTarget]>,
    /// The source's event metrics, where sends count them (of one reader's views per sink,
    /// only the first counts, so they do not grow with the number of sinks).
    counts: Option<SourceCounts>,
    /// The flow its batches belong to in the sinks' buffers: every [`SourceOutput::only`]
    /// view is a flow of its own, served round-robin with the others ([`crate::flows`]).
    flow: u64,
    /// Batches sent and not yet settled by every sink, so that a reload can wait for them
    /// before the source's next instance reads from its checkpoints.
    outstanding: Option<Arc<Outstanding>>,
}

/// A source's event counters, resolved once (not per batch: a trickle's batches are one line).
#[derive(Clone)]
pub(crate) struct SourceCounts {
    events: metrics::Counter,
    bytes: metrics::Counter,
}

impl SourceCounts {
    pub(crate) fn new(source: &str) -> SourceCounts {
        SourceCounts {
            events: metrics::counter!(m::SOURCE_EVENTS, "source" => source.to_string()),
            bytes: metrics::counter!(m::SOURCE_BYTES, "source" => source.to_string()),
        }
    }
}

/// Flow ids of [`SourceOutput::only`] views (0: a source's own output).
static NEXT_FLOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl SourceOutput {
    /// The source's name.
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// The names of the sinks that read this source, in order.
    pub fn sinks(&self) -> Vec<Arc<str>> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// Events sent through this output that its sinks hold in memory now (a view: what its
    /// share of the sink's buffer holds), for a source that wants to know whether a sink has
    /// work to do.
    pub fn backlog(&self) -> u64 {
        self.targets
            .iter()
            .map(|t| {
                let b = t.share.as_ref().unwrap_or(&t.buffer);
                u64::from(b.capacity).saturating_sub(b.permits.available_permits() as u64)
            })
            .max()
            .unwrap_or(0)
    }

    /// This output narrowed to sink number `i` (of [`SourceOutput::sinks`]): a source that
    /// reads its input once per sink sends through these, so that a sink that is down or slow
    /// holds back only its own reader. Only the view of the first sink counts the source's
    /// event metrics, so they do not grow with the number of sinks. Each view is a flow of its
    /// own: the sink takes the views' batches in turn, so a reader with a backlog does not
    /// make the others wait behind all of it.
    pub fn only(&self, i: usize) -> SourceOutput {
        SourceOutput {
            source: self.source.clone(),
            targets: self
                .targets
                .get(i)
                .map(SinkTarget::shared)
                .into_iter()
                .collect(),
            counts: self.counts.clone().filter(|_| i == 0),
            flow: NEXT_FLOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            outstanding: self.outstanding.clone(),
        }
    }

    /// Sends a batch to every sink that reads this source; `on_done` runs once every sink has
    /// settled it (`true`: delivered or deliberately dropped and counted). Waits while a
    /// `block` buffer is full — that wait is the backpressure that stops the source.
    pub async fn send(
        &self,
        events: Vec<Event>,
        on_done: Option<OnDelivered>,
    ) -> Result<(), Closed> {
        let batch = Arc::new(Batch {
            source: self.source.clone(),
            events,
        });
        self.send_batch(batch, on_done).await
    }

    /// As [`SourceOutput::send`], for a batch that several outputs share (a reader that reads
    /// a container once for several sinks sends one batch through each sink's view).
    pub async fn send_batch(
        &self,
        batch: Arc<Batch>,
        on_done: Option<OnDelivered>,
    ) -> Result<(), Closed> {
        if batch.events.is_empty() {
            if let Some(f) = on_done {
                f(true);
            }
            return Ok(());
        }
        let bytes: usize = batch.events.iter().map(Event::size).sum();
        if let Some(c) = &self.counts {
            c.events.increment(batch.events.len() as u64);
            c.bytes.increment(bytes as u64);
            status::global()
                .source(&self.source)
                .sent(batch.events.len() as u64, bytes as u64);
        }
        let n = batch.events.len();
        let on_done = match &self.outstanding {
            Some(o) => Some(o.track(on_done)),
            None => on_done,
        };
        let taps = status::global().taps();
        if self.counts.is_some() && taps.active() {
            taps.offer(&self.source, None, &batch, bytes);
        }
        let token = AckToken::new(on_done);
        for t in self.targets.iter() {
            // What this sink's filter keeps out is settled for it (not shared in the token).
            let (mine, n, bytes) = match filter::select(&t.filter, &batch.events) {
                None => (batch.clone(), n, bytes),
                Some(kept) => {
                    t.filtered.increment((n - kept.len()) as u64);
                    if kept.is_empty() {
                        continue;
                    }
                    let size = kept.iter().map(Event::size).sum();
                    let len = kept.len();
                    let b = Batch {
                        source: self.source.clone(),
                        events: kept,
                    };
                    (Arc::new(b), len, size)
                }
            };
            if let Some(disk) = &t.disk {
                write_to_disk(t, disk, &mine, &token).await;
                continue;
            }
            let Some(permit) = t.reserve(n, bytes).await? else {
                count_dropped(&t.name, &mine);
                continue;
            };
            if taps.active() {
                taps.offer(&self.source, Some(&t.name), &mine, bytes);
            }
            let sb = SinkBatch {
                batch: mine,
                ack: token.share(),
                _permit: Some(permit),
                flow: self.flow,
            };
            if let Err(mpsc::error::SendError(lost)) = t.tx.send(sb) {
                // The sink task has stopped (it logged why). Its copy stays unsettled, so the
                // source's position does not move past this batch; other sinks carry on.
                tracing::debug!(sink = %t.name, "sink has stopped; batch not delivered to it");
                drop(lost);
            }
        }
        token.delivered();
        Ok(())
    }

    /// An output to nowhere but the returned receiver, for source unit tests.
    pub fn for_test(source: &str, capacity: u32) -> (SourceOutput, SinkInput) {
        let (out, mut inputs) = SourceOutput::for_test_sinks(source, &[("test", capacity)]);
        (out, inputs.remove(0))
    }

    /// An output to several test sinks (name, buffer capacity in events), for source unit
    /// tests.
    pub fn for_test_sinks(source: &str, sinks: &[(&str, u32)]) -> (SourceOutput, Vec<SinkInput>) {
        let mut targets = Vec::new();
        let mut inputs = Vec::new();
        for (name, capacity) in sinks {
            let (tx, rx) = mpsc::unbounded_channel();
            let buffer = logwharf_config::sink::BufferConfig {
                max_events: *capacity as usize,
                ..Default::default()
            };
            targets.push(SinkTarget::new((*name).into(), tx, &buffer));
            inputs.push(SinkInput::new((*name).into(), Queue::new(rx), None, None));
        }
        (
            SourceOutput {
                source: source.into(),
                targets: targets.into(),
                counts: Some(SourceCounts::new(source)),
                flow: 0,
                outstanding: None,
            },
            inputs,
        )
    }
}

/// Writes a batch to a sink's disk buffer: settled for that sink once written (the writer
/// thread settles this sink's share of `token`), counted as dropped when a `drop_newest`
/// buffer is full, and left unsettled (the source learns it was not delivered) when the write
/// fails. Returns once the batch is on its way to the file, not when it is there.
async fn write_to_disk(t: &SinkTarget, disk: &DiskWriter, batch: &Arc<Batch>, token: &AckToken) {
    let share = token.share();
    let (name, b) = (t.name.clone(), batch.clone());
    let done: OnWritten = Box::new(move |r| match r {
        Ok(WriteOutcome::Written) => share.delivered(),
        Ok(WriteOutcome::Full) => {
            count_dropped(&name, &b);
            share.delivered();
        }
        Err(e) => {
            metrics::counter!(m::BUFFER_WRITE_ERRORS, "sink" => name.to_string()).increment(1);
            tracing::warn!(sink = %name, error = %e, events = b.len(), source = %b.source, "disk buffer: write failed; the batch is not acknowledged to its source");
            drop(share);
        }
    });
    disk.write(batch, t.when_full, done).await;
}

fn count_dropped(sink: &str, batch: &Batch) {
    // Per container, since a drop that cannot be traced to its container cannot be acted on.
    let mut i = 0;
    while i < batch.events.len() {
        let id = batch.events[i].container.as_ref().map(|c| c.id.clone());
        let mut j = i + 1;
        while j < batch.events.len()
            && batch.events[j].container.as_ref().map(|c| &c.id) == id.as_ref()
        {
            j += 1;
        }
        let dropped = (j - i) as u64;
        if let Some(c) = id
            .as_deref()
            .and_then(|id| status::global().find_container(&batch.source, id))
        {
            c.sink(sink).dropped(dropped);
        }
        metrics::counter!(m::BUFFER_DROPPED, "sink" => sink.to_string(), "container" => id.unwrap_or_default())
            .increment(dropped);
        i = j;
    }
    status::global()
        .sink(sink)
        .dropped(batch.events.len() as u64);
    tracing::warn!(sink, events = batch.events.len(), source = %batch.source, "buffer full: dropped the newest batch (when_full = \"drop_newest\")");
}

mod reload;
mod running;

use reload::Outstanding;
pub use running::Topology;

/// Opens sink `name`'s disk buffer under `data_dir` (a scan of what it holds: blocking I/O).
pub(crate) async fn open_disk_buffer(
    data_dir: &std::path::Path,
    name: &str,
    buffer: &logwharf_config::BufferConfig,
) -> anyhow::Result<(DiskBuffer, DiskWriter)> {
    let dir = disk::dir_for(data_dir, name);
    let (n, b, d) = (name.to_string(), buffer.clone(), dir.clone());
    tokio::task::spawn_blocking(move || DiskBuffer::open(&n, &d, &b))
        .await
        .context("opening a disk buffer")?
        .with_context(|| format!("opening sink {name:?}'s disk buffer in {}", dir.display()))
}

/// A factory that returns `first` once, then what `build` makes.
fn first_then<T>(
    first: T,
    mut build: impl FnMut() -> anyhow::Result<T>,
) -> impl FnMut() -> anyhow::Result<T> {
    let mut first = Some(first);
    move || match first.take() {
        Some(t) => Ok(t),
        None => build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;
    use bytes::Bytes;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    fn output(specs: &[(u32, WhenFull)]) -> (SourceOutput, Vec<SinkInput>) {
        let mut targets = Vec::new();
        let mut inputs = Vec::new();
        for (i, (capacity, when_full)) in specs.iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let name: Arc<str> = format!("sink{i}").into();
            let buffer = logwharf_config::sink::BufferConfig {
                max_events: *capacity as usize,
                when_full: *when_full,
                ..Default::default()
            };
            targets.push(SinkTarget::new(name.clone(), tx, &buffer));
            inputs.push(SinkInput::new(name, Queue::new(rx), None, None));
        }
        (
            SourceOutput {
                source: "src".into(),
                targets: targets.into(),
                counts: Some(SourceCounts::new("src")),
                flow: 0,
                outstanding: None,
            },
            inputs,
        )
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::new(i as i64, Stream::Stdout, Bytes::from(format!("line {i}"))))
            .collect()
    }

    fn callback() -> (OnDelivered, std_mpsc::Receiver<bool>) {
        let (tx, rx) = std_mpsc::channel();
        (Box::new(move |ok| tx.send(ok).unwrap()), rx)
    }

    #[tokio::test]
    async fn fans_out_and_acks_only_when_every_sink_settled() {
        let (out, mut inputs) = output(&[(10, WhenFull::Block), (10, WhenFull::Block)]);
        let (cb, rx) = callback();
        out.send(events(3), Some(cb)).await.unwrap();
        let a = inputs[0].recv().await.unwrap();
        let b = inputs[1].recv().await.unwrap();
        assert!(
            Arc::ptr_eq(&a.batch, &b.batch),
            "one shared batch, not a copy per sink"
        );
        a.ack.delivered();
        assert!(rx.try_recv().is_err());
        b.ack.delivered();
        assert_eq!(rx.try_recv(), Ok(true));

        let (cb, rx) = callback();
        out.send(events(1), Some(cb)).await.unwrap();
        inputs[0].recv().await.unwrap().ack.delivered();
        drop(inputs[1].recv().await.unwrap()); // a sink that failed
        assert_eq!(rx.try_recv(), Ok(false));
    }

    #[tokio::test]
    async fn a_full_block_buffer_stops_the_source_until_space_frees() {
        let (out, mut inputs) = output(&[(4, WhenFull::Block)]);
        out.send(events(4), None).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(100), out.send(events(2), None));
        assert!(
            blocked.await.is_err(),
            "send should wait while the buffer is full"
        );
        let first = inputs[0].recv().await.unwrap();
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), out.send(events(2), None))
            .await
            .expect("space freed")
            .unwrap();
    }

    #[tokio::test]
    async fn what_a_filter_keeps_from_a_sink_is_settled_for_it() {
        let (tx, rx) = mpsc::unbounded_channel();
        let web: FilterConfig = serde_json::from_str(r#"{"containers": ["web"]}"#).unwrap();
        let target = SinkTarget::new("s".into(), tx, &Default::default())
            .with_filter(SinkFilter::new("s".into(), &web).unwrap());
        let out = SourceOutput {
            source: "src".into(),
            targets: Arc::new([target]),
            counts: Some(SourceCounts::new("src")),
            flow: 0,
            outstanding: None,
        };
        let mut input = SinkInput::new("s".into(), Queue::new(rx), None, None);
        let mut meta = crate::event::ContainerMeta::from_id("id");
        meta.name = Some("web".into());
        let meta = Arc::new(meta);
        let event = |c: Option<&Arc<crate::event::ContainerMeta>>| {
            let mut e = Event::new(0, Stream::Stdout, Bytes::from_static(b"x"));
            e.container = c.cloned();
            e
        };
        // Nothing for this sink: settled at once, nothing queued.
        let (done_tx, done_rx) = std_mpsc::channel();
        let on_done: OnDelivered = Box::new(move |ok| done_tx.send(ok).unwrap());
        out.send(vec![event(None), event(None)], Some(on_done))
            .await
            .unwrap();
        assert_eq!(done_rx.try_recv(), Ok(true));
        // Part of it: only that part is queued, and settles with it.
        let (done_tx, done_rx) = std_mpsc::channel();
        let on_done: OnDelivered = Box::new(move |ok| done_tx.send(ok).unwrap());
        out.send(vec![event(None), event(Some(&meta))], Some(on_done))
            .await
            .unwrap();
        let sb = input.recv().await.unwrap();
        assert_eq!(sb.batch.events.len(), 1);
        assert!(done_rx.try_recv().is_err());
        sb.ack.delivered();
        assert_eq!(done_rx.try_recv(), Ok(true));
    }

    #[tokio::test]
    async fn the_byte_budget_stops_the_source_too() {
        let (tx, rx) = mpsc::unbounded_channel();
        let buffer = logwharf_config::sink::BufferConfig {
            max_bytes: logwharf_config::ByteSize(8 << 10),
            ..Default::default()
        };
        let out = SourceOutput {
            source: "src".into(),
            targets: Arc::new([SinkTarget::new("s".into(), tx, &buffer)]),
            counts: Some(SourceCounts::new("src")),
            flow: 0,
            outstanding: None,
        };
        let mut input = SinkInput::new("s".into(), Queue::new(rx), None, None);
        let big = |n: usize| -> Vec<Event> {
            (0..n)
                .map(|i| Event::new(i as i64, Stream::Stdout, Bytes::from(vec![b'x'; 1024])))
                .collect()
        };
        // Far below max_events, but 6 KiB of the 8 KiB budget.
        out.send(big(6), None).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(100), out.send(big(4), None));
        assert!(
            blocked.await.is_err(),
            "send waits while the bytes do not fit"
        );
        drop(input.recv().await.unwrap());
        tokio::time::timeout(Duration::from_secs(1), out.send(big(4), None))
            .await
            .expect("space freed")
            .unwrap();
        // A batch larger than the whole budget still passes, alone.
        drop(input.recv().await.unwrap());
        tokio::time::timeout(Duration::from_secs(1), out.send(big(20), None))
            .await
            .expect("an oversized batch takes the whole buffer")
            .unwrap();
    }

    #[tokio::test]
    async fn drop_newest_drops_when_full_and_lets_the_source_move_on() {
        let (out, mut inputs) = output(&[(4, WhenFull::DropNewest), (100, WhenFull::Block)]);
        out.send(events(4), None).await.unwrap();
        let (cb, rx) = callback();
        out.send(events(2), Some(cb)).await.unwrap();
        // sink0 dropped it (counted); sink1 got it.
        assert_eq!(inputs[0].recv().await.unwrap().batch.len(), 4);
        assert!(inputs[0].try_recv().is_none());
        let _ = inputs[1].recv().await.unwrap();
        let b = inputs[1].recv().await.unwrap();
        assert_eq!(b.batch.len(), 2);
        b.ack.delivered();
        assert_eq!(rx.try_recv(), Ok(true));
    }

    #[tokio::test]
    async fn a_disk_buffered_sink_settles_a_batch_for_its_source_once_written() {
        let d = tempfile::tempdir().unwrap();
        let cfg = logwharf_config::sink::BufferConfig {
            kind: logwharf_config::BufferType::Disk,
            max_events: 100,
            ..Default::default()
        };
        let (mut buf, w) = DiskBuffer::open("s", d.path(), &cfg).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        buf.start_reader(tx.clone(), crate::shutdown::Shutdown::new());
        let out = SourceOutput {
            source: "src".into(),
            targets: Arc::new([SinkTarget::new("s".into(), tx, &cfg).with_disk(w)]),
            counts: Some(SourceCounts::new("src")),
            flow: 0,
            outstanding: None,
        };
        // Nobody delivers anything, and the source's batches are settled (the fluent source
        // acks its chunks, the syslog source reads on) — far past max_events.
        for _ in 0..50 {
            let (cb, done) = callback();
            tokio::time::timeout(Duration::from_secs(10), out.send(events(100), Some(cb)))
                .await
                .expect("a disk buffer with room never makes the source wait")
                .unwrap();
            // The writer thread settles it once written, a moment after `send` returns.
            let mut settled = done.try_recv();
            for _ in 0..1000 {
                if settled.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                settled = done.try_recv();
            }
            assert_eq!(settled, Ok(true), "settled once written");
        }
        // The sink reads them back from disk, in order.
        let mut input = SinkInput::new("s".into(), Queue::new(rx), None, None);
        for _ in 0..50 {
            let sb = input.recv().await.unwrap();
            assert_eq!(sb.batch.len(), 100);
            assert_eq!(&sb.batch.events[99].message[..], b"line 99");
            sb.ack.delivered();
        }
        drop(out);
        buf.close().await;
    }

    #[tokio::test]
    async fn a_stopped_sink_does_not_stop_the_others() {
        let (out, mut inputs) = output(&[(10, WhenFull::Block), (10, WhenFull::Block)]);
        let dead = inputs.remove(0);
        drop(dead);
        let (cb, rx) = callback();
        out.send(events(1), Some(cb)).await.unwrap();
        inputs[0].recv().await.unwrap().ack.delivered();
        assert_eq!(
            rx.try_recv(),
            Ok(false),
            "not delivered to the stopped sink"
        );
    }
}
