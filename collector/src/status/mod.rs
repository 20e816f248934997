//! The daemon's live state, as `GET /status` reports it and `logwharf status`/`top` show it:
//! per source, per container and sink, per sink, per receiver.
//!
//! Components register cheap state here — atomics and small mutexes updated at batch
//! granularity, never per event — and the report is built only when asked ([`report`]). One
//! process-wide [`Registry`] ([`global`]), like the metrics recorder: the hooks sit deep in
//! sources and sinks, where threading a handle through would touch every constructor.
//! Taps (`GET /tap`) hang off it too ([`tap`]).

mod container;
mod meter;
mod report;
mod sink;
pub mod tap;

pub use container::{time_to_loss, ContainerStats, Delivered, PositionStats};
pub use meter::Meter;
pub use sink::{BufferFill, BufferProbe, SinkStats};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A source's totals.
#[derive(Default)]
pub struct SourceStats {
    kind: OnceLock<&'static str>,
    events: Meter,
    bytes: Meter,
}

impl SourceStats {
    /// A batch of `events` events, `bytes` message bytes, entered the pipeline.
    pub fn sent(&self, events: u64, bytes: u64) {
        self.events.add(events);
        self.bytes.add(bytes);
    }
}

/// A receiving source's connections and refused input.
#[derive(Default)]
pub struct ReceiverStats {
    connections: AtomicI64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReceiverStats {
    /// `n` connections are open now.
    pub fn set_connections(&self, n: usize) {
        self.connections.store(n as i64, Ordering::Relaxed);
    }

    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

/// (source, container id).
type ContainerKey = (Arc<str>, String);

/// Everything `/status` reports.
#[derive(Default)]
pub struct Registry {
    sources: Mutex<BTreeMap<Arc<str>, Arc<SourceStats>>>,
    sinks: Mutex<BTreeMap<Arc<str>, Arc<SinkStats>>>,
    receivers: Mutex<BTreeMap<Arc<str>, Arc<ReceiverStats>>>,
    containers: Mutex<BTreeMap<ContainerKey, Arc<ContainerStats>>>,
    taps: tap::TapHub,
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// The process's registry.
pub fn global() -> &'static Registry {
    GLOBAL.get_or_init(Registry::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn entry<T: Default>(m: &Mutex<BTreeMap<Arc<str>, Arc<T>>>, name: &str) -> Arc<T> {
    let mut g = lock(m);
    if let Some(e) = g.get(name) {
        return e.clone();
    }
    let e = Arc::new(T::default());
    g.insert(name.into(), e.clone());
    e
}

impl Registry {
    pub fn source(&self, name: &str) -> Arc<SourceStats> {
        entry(&self.sources, name)
    }

    /// Registers a source with its `type`.
    pub fn register_source(&self, name: &str, kind: &'static str) -> Arc<SourceStats> {
        let s = self.source(name);
        let _ = s.kind.set(kind);
        s
    }

    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        entry(&self.sinks, name)
    }

    /// Registers a sink with its `type`.
    pub fn register_sink(&self, name: &str, kind: &'static str) -> Arc<SinkStats> {
        let s = self.sink(name);
        let _ = s.kind.set(kind);
        s
    }

    pub fn receiver(&self, source: &str) -> Arc<ReceiverStats> {
        entry(&self.receivers, source)
    }

    /// The entry of a container a source reads, with Docker's rotation limits for it (made
    /// anew: a container read again after a restart of its reader starts over).
    pub fn container(
        &self,
        source: &Arc<str>,
        id: &str,
        max_size: Option<u64>,
        max_file: Option<u32>,
    ) -> Arc<ContainerStats> {
        let c = Arc::new(ContainerStats::new(source.clone(), id, max_size, max_file));
        lock(&self.containers).insert((source.clone(), id.to_string()), c.clone());
        c
    }

    /// A container is no longer read by `source`.
    pub fn remove_container(&self, source: &Arc<str>, id: &str) {
        lock(&self.containers).remove(&(source.clone(), id.to_string()));
    }

    /// The container entry, if `source` reads it (drops are counted where the batch is).
    pub fn find_container(&self, source: &Arc<str>, id: &str) -> Option<Arc<ContainerStats>> {
        lock(&self.containers)
            .get(&(source.clone(), id.to_string()))
            .cloned()
    }

    /// A sink a reload removed: gone from the report, with its position in every container
    /// (a draining instance still counts into the entries it holds, unseen).
    pub fn remove_sink(&self, name: &str) {
        lock(&self.sinks).remove(name);
        for c in lock(&self.containers).values() {
            lock(&c.sinks).retain(|p| &*p.sink != name);
        }
    }

    /// A source a reload removed: gone from the report, with its containers and receiver.
    pub fn remove_source(&self, name: &str) {
        lock(&self.sources).remove(name);
        lock(&self.receivers).remove(name);
        lock(&self.containers).retain(|(source, _), _| &**source != name);
    }

    pub fn taps(&self) -> &tap::TapHub {
        &self.taps
    }
}
