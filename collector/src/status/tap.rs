//! Taps: copies of the batches flowing through the router for `GET /tap` clients.
//!
//! The router offers each batch ([`TapHub::offer`]) — one relaxed load when nobody taps. A
//! client's queue is bounded in events and bytes; what does not fit is dropped for that client
//! and counted, never waited for, so a tap that reads nothing costs the pipeline a lock, a
//! pass comparing container records (with a container filter) and a counter per batch. Without a sink named, a tap sees batches as the
//! source sends them (for a source that reads once per sink, the json-file source, as read for
//! its first sink); with one, what that sink's filter lets through to it.

use crate::event::{Batch, ContainerMeta, Event};
use globset::GlobSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// A client's queue: at most this many events…
pub const TAP_MAX_EVENTS: usize = 10_000;
/// …and message bytes.
pub const TAP_MAX_BYTES: usize = 8 << 20;

/// What a tap wants.
#[derive(Default)]
pub struct TapFilter {
    pub source: Option<String>,
    pub sink: Option<String>,
    /// Container names (or ids) matching one of these globs.
    pub containers: Option<GlobSet>,
}

impl TapFilter {
    fn takes_container(&self, c: Option<&ContainerMeta>) -> bool {
        let Some(g) = &self.containers else {
            return true;
        };
        c.is_some_and(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| g.is_match(n.trim_start_matches('/')))
                || g.is_match(&c.id)
        })
    }
}

struct Client {
    filter: TapFilter,
    /// Batches with their message bytes.
    tx: mpsc::UnboundedSender<(Arc<Batch>, usize)>,
    queued: Arc<Queued>,
}

#[derive(Default)]
struct Queued {
    events: AtomicUsize,
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// The receiving end of a tap.
pub struct Tap {
    rx: mpsc::UnboundedReceiver<(Arc<Batch>, usize)>,
    queued: Arc<Queued>,
    _registration: Arc<()>,
}

impl Tap {
    /// The next batch, and how many events were dropped for this client since the last call.
    pub async fn next(&mut self) -> Option<(Arc<Batch>, u64)> {
        let (b, bytes) = self.rx.recv().await?;
        self.queued
            .events
            .fetch_sub(b.events.len(), Ordering::Relaxed);
        self.queued.bytes.fetch_sub(bytes, Ordering::Relaxed);
        Some((b, self.queued.dropped.swap(0, Ordering::Relaxed)))
    }
}

#[derive(Default)]
pub struct TapHub {
    active: AtomicUsize,
    clients: Mutex<Vec<(Weak<()>, Client)>>,
}

impl TapHub {
    /// Whether anyone taps (one relaxed load: the router asks per batch).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// A new tap client; it ends when the returned [`Tap`] is dropped.
    pub fn subscribe(&self, filter: TapFilter) -> Tap {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        let reg = Arc::new(());
        let mut g = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        g.push((
            Arc::downgrade(&reg),
            Client {
                filter,
                tx,
                queued: queued.clone(),
            },
        ));
        self.active.store(g.len(), Ordering::Relaxed);
        Tap {
            rx,
            queued,
            _registration: reg,
        }
    }

    /// A batch of `source` (for `sink`, or as the source sent it when `None`) flows; `bytes`
    /// is its events' message bytes (the router counted them already).
    ///
    /// Per client, what it takes is counted first (one pass comparing container records, no
    /// allocation): a client whose queue has no room for that gets a counter increment and
    /// nothing else — no copy, no encoding (that is the client's task, as it reads).
    pub fn offer(&self, source: &str, sink: Option<&str>, batch: &Arc<Batch>, bytes: usize) {
        let mut g = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|(alive, _)| alive.strong_count() > 0);
        self.active.store(g.len(), Ordering::Relaxed);
        for (_, c) in g.iter() {
            let f = &c.filter;
            if f.sink.as_deref() != sink || f.source.as_deref().is_some_and(|s| s != source) {
                continue;
            }
            let n = match taken(f, batch) {
                0 => continue,
                n => n,
            };
            let q = &c.queued;
            if q.events.load(Ordering::Relaxed) + n > TAP_MAX_EVENTS {
                q.dropped.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            let (mine, bytes) = if n == batch.events.len() {
                (batch.clone(), bytes)
            } else {
                let mut t = Takes::new(f);
                let events: Vec<Event> = batch
                    .events
                    .iter()
                    .filter(|e| t.event(e))
                    .cloned()
                    .collect();
                let bytes = events.iter().map(Event::size).sum();
                let b = Batch {
                    source: batch.source.clone(),
                    events,
                };
                (Arc::new(b), bytes)
            };
            if q.bytes.load(Ordering::Relaxed) + bytes > TAP_MAX_BYTES {
                q.dropped.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            q.events.fetch_add(n, Ordering::Relaxed);
            q.bytes.fetch_add(bytes, Ordering::Relaxed);
            let _ = c.tx.send((mine, bytes));
        }
    }
}

/// How many events of `batch` the filter takes.
fn taken(f: &TapFilter, batch: &Batch) -> usize {
    if f.containers.is_none() {
        return batch.events.len();
    }
    let mut t = Takes::new(f);
    batch.events.iter().filter(|e| t.event(e)).count()
}

/// A filter's answer per event, asked once per run of events of one container record (a
/// json-file batch is one container's).
struct Takes<'a> {
    filter: &'a TapFilter,
    last: Option<(*const ContainerMeta, bool)>,
}

impl<'a> Takes<'a> {
    fn new(filter: &'a TapFilter) -> Self {
        Takes { filter, last: None }
    }

    fn event(&mut self, e: &Event) -> bool {
        let ptr = e.container.as_ref().map_or(std::ptr::null(), Arc::as_ptr);
        match self.last {
            Some((p, t)) if p == ptr => t,
            _ => {
                let t = self.filter.takes_container(e.container.as_deref());
                self.last = Some((ptr, t));
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;
    use bytes::Bytes;

    fn batch(names: &[&str]) -> Arc<Batch> {
        let events = names
            .iter()
            .map(|n| {
                let mut m = ContainerMeta::from_id(format!("id-{n}"));
                m.name = Some(n.to_string());
                let mut e = Event::new(0, Stream::Stdout, Bytes::from_static(b"x"));
                e.container = Some(Arc::new(m));
                e
            })
            .collect();
        Arc::new(Batch {
            source: "src".into(),
            events,
        })
    }

    #[tokio::test]
    async fn a_tap_gets_its_containers_and_is_told_what_it_missed() {
        let hub = TapHub::default();
        assert!(!hub.active());
        let filter = TapFilter {
            containers: crate::filter::glob_set(&["web-*".to_string()]).unwrap(),
            ..TapFilter::default()
        };
        let mut tap = hub.subscribe(filter);
        assert!(hub.active());
        hub.offer("src", None, &batch(&["web-1", "db", "web-2"]), 3);
        hub.offer("src", Some("sink"), &batch(&["web-3"]), 1); // for a sink it did not name
        let (b, dropped) = tap.next().await.unwrap();
        let names: Vec<_> = b
            .events
            .iter()
            .map(|e| e.container.as_ref().unwrap().name.clone().unwrap())
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
        assert_eq!(dropped, 0);
        // A client that does not read: past its bound, batches are dropped and counted.
        let big: Vec<&str> = vec!["web-x"; TAP_MAX_EVENTS];
        hub.offer("src", None, &batch(&big), big.len());
        hub.offer("src", None, &batch(&["web-y"]), 1);
        let (b, dropped) = tap.next().await.unwrap();
        assert_eq!(b.events.len(), TAP_MAX_EVENTS);
        assert_eq!(dropped, 1, "web-y did not fit");
        hub.offer("src", None, &batch(&["web-z"]), 1);
        let (_, dropped) = tap.next().await.unwrap();
        assert_eq!(dropped, 0);
        drop(tap);
        hub.offer("src", None, &batch(&["web-1"]), 1);
        assert!(!hub.active());
    }
}
