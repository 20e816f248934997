//! The metadata service: one record per container (`Arc<ContainerMeta>`), listed at start and
//! kept current from Docker's `/events` stream (create/start/rename → inspect, die, destroy).
//! When the daemon restarts or the stream fails, it reconnects with endless backoff, lists
//! the containers again and reconciles: unchanged records keep their `Arc`, changed ones are
//! replaced, vanished ones removed — so no container is left without metadata after a dockerd
//! restart (Vector's docker_logs stops there: vectordotdev/vector#19681, #23847).
//!
//! Readers stay lock-free on their per-line path: they look a record up once per batch (a read
//! lock and an `Arc` clone), and re-check only when [`MetadataService::generation`] moved.

use super::client::{connect, DockerHost};
use super::events::{parse_event, ContainerEvent, EventKind};
use super::record::RecordBuilder;
use crate::backoff::Backoff;
use crate::event::ContainerMeta;
use crate::metrics as m;
use anyhow::Context;
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use logwharf_config::docker::EnrichOptions;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often a quiet events stream is checked by pinging the daemon.
const HEALTH_INTERVAL: Duration = Duration::from_secs(15);
/// Inspect requests in flight while (re-)listing.
const INSPECT_CONCURRENCY: usize = 8;

/// What changed, for sources that follow containers.
#[derive(Debug, Clone)]
pub enum MetaChange {
    /// A container event, with the record as it is after the event (`None` once destroyed or
    /// when the container could not be inspected).
    Event(ContainerEvent, Option<Arc<ContainerMeta>>),
    /// The service (re)connected and re-listed every container: re-read [`MetadataService::snapshot`].
    Resynced,
}

/// The connection state, for waiters and `validate --connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Connecting,
    Ready,
    Unreachable(String),
}

#[derive(Default)]
struct Table {
    records: HashMap<String, Arc<ContainerMeta>>,
    running: HashSet<String>,
}

struct Inner {
    host: DockerHost,
    builder: RecordBuilder,
    table: RwLock<Table>,
    generation: AtomicU64,
    /// Set once the first listing is done (before the state says `Ready` for the first time).
    listed: AtomicBool,
    changes: broadcast::Sender<MetaChange>,
    state: watch::Sender<State>,
    client: Mutex<Option<Docker>>,
}

/// Shared container metadata from one Docker daemon. Dropping the last handle stops it.
pub struct MetadataService {
    inner: Arc<Inner>,
    _stop: DropGuard,
}

type Registry = Mutex<HashMap<EnrichOptions, Weak<MetadataService>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl MetadataService {
    /// The service for these options, shared by every source that asks with equal options
    /// (one connection, one record per container). Starts it on first use; needs a runtime.
    pub fn shared(opts: &EnrichOptions) -> anyhow::Result<Arc<MetadataService>> {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = reg.get(opts).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let s = Arc::new(Self::start(opts.clone())?);
        reg.insert(opts.clone(), Arc::downgrade(&s));
        Ok(s)
    }

    /// A service of its own (tests; `shared` is what sources use).
    pub fn start(opts: EnrichOptions) -> anyhow::Result<MetadataService> {
        let host = DockerHost::resolve(opts.host.as_deref())?;
        let (changes, _) = broadcast::channel(4096);
        let (state, _) = watch::channel(State::Connecting);
        let inner = Arc::new(Inner {
            host,
            builder: RecordBuilder::new(opts),
            table: RwLock::new(Table::default()),
            generation: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            changes,
            state,
            client: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run(inner.clone(), stop.clone()));
        Ok(MetadataService {
            inner,
            _stop: stop.drop_guard(),
        })
    }

    pub fn host(&self) -> &DockerHost {
        &self.inner.host
    }

    /// The record of a container, if known. A read lock and an `Arc` clone: call it once per
    /// batch, not per line.
    pub fn get(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        self.inner.read().records.get(id).cloned()
    }

    /// Whether the container was running at the last event or listing.
    pub fn is_running(&self, id: &str) -> bool {
        self.inner.read().running.contains(id)
    }

    /// Every record, with whether the container runs.
    pub fn snapshot(&self) -> Vec<(Arc<ContainerMeta>, bool)> {
        let t = self.inner.read();
        t.records
            .values()
            .map(|m| (m.clone(), t.running.contains(&m.id)))
            .collect()
    }

    /// Moves whenever a record is added, replaced or removed: a reader holding records
    /// re-checks them when this differs from the value it saw (one atomic load per batch).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MetaChange> {
        self.inner.changes.subscribe()
    }

    pub fn state(&self) -> State {
        self.inner.state.borrow().clone()
    }

    /// A connected client (for inspect and log requests), when the daemon answers.
    pub fn client(&self) -> Option<Docker> {
        self.inner
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the first listing is done (true) or `timeout` passes / the daemon is found
    /// unreachable before any listing (false). A listing done once stays done: when the
    /// connection broke since (the state already moved on to `Unreachable` while it
    /// reconnects), the records are there and are reconciled on the reconnect.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.state.subscribe();
        let r =
            tokio::time::timeout(timeout, rx.wait_for(|s| !matches!(s, State::Connecting))).await;
        matches!(r, Ok(Ok(s)) if *s == State::Ready) || self.inner.listed.load(Ordering::Acquire)
    }

    /// The record of `id`, waiting at most `timeout` for it to become known: a container seen
    /// on disk before its `create` event is inspected at once when the daemon answers, and
    /// waited for while the service is still connecting. Returns at once when the daemon is
    /// unreachable or does not know the container.
    pub async fn wait_for(&self, id: &str, timeout: Duration) -> Option<Arc<ContainerMeta>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.state.subscribe();
        loop {
            if let Some(m) = self.get(id) {
                return Some(m);
            }
            match self.state() {
                State::Unreachable(_) => return None,
                State::Ready => {
                    return match tokio::time::timeout_at(deadline, self.refresh(id)).await {
                        Ok(m) => m,
                        Err(_) => self.get(id),
                    }
                }
                State::Connecting => {
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        return self.get(id);
                    }
                }
            }
        }
    }

    /// Inspects one container now (outside the event flow) and stores its record.
    pub async fn refresh(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        let docker = self.client()?;
        refresh(&self.inner, &docker, id).await
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `meta`, keeping the existing `Arc` when nothing changed; returns the stored one.
    fn upsert(&self, meta: ContainerMeta, running: Option<bool>) -> Arc<ContainerMeta> {
        let mut t = self.write();
        if let Some(r) = running {
            if r {
                t.running.insert(meta.id.clone());
            } else {
                t.running.remove(&meta.id);
            }
        }
        if let Some(old) = t.records.get(&meta.id) {
            if **old == meta {
                return old.clone();
            }
        }
        let a = Arc::new(meta);
        t.records.insert(a.id.clone(), a.clone());
        drop(t);
        self.generation.fetch_add(1, Ordering::AcqRel);
        a
    }

    fn remove(&self, id: &str) {
        let mut t = self.write();
        t.running.remove(id);
        if t.records.remove(id).is_some() {
            drop(t);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

async fn run(inner: Arc<Inner>, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut down_logged = false;
    loop {
        let r = tokio::select! {
            r = session(&inner, &stop, &mut backoff, &mut down_logged) => r,
            _ = stop.cancelled() => return,
        };
        *inner.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let Err(e) = r else { return };
        let msg = format!("{e:#}");
        metrics::counter!(m::DOCKER_RECONNECTS, "host" => inner.host.to_string()).increment(1);
        if !down_logged {
            tracing::warn!(
                host = %inner.host,
                error = %msg,
                "Docker daemon unavailable: container metadata and API log streams wait for it; retrying with backoff (lines are shipped with the container id only meanwhile)"
            );
            down_logged = true;
        } else {
            tracing::debug!(host = %inner.host, error = %msg, attempt = backoff.attempts(), "Docker daemon still unavailable");
        }
        inner.state.send_replace(State::Unreachable(msg));
        tokio::select! {
            _ = backoff.wait() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One connection: connect, list and reconcile, then follow events until something fails.
async fn session(
    inner: &Arc<Inner>,
    stop: &CancellationToken,
    backoff: &mut Backoff,
    down_logged: &mut bool,
) -> anyhow::Result<()> {
    let docker = connect(&inner.host).await?;
    // Events since just before the listing: nothing that happens during it is missed.
    let since = crate::time::now_nanos();
    let n = relist(inner, &docker).await?;
    *inner.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(docker.clone());
    inner.listed.store(true, Ordering::Release);
    inner.state.send_replace(State::Ready);
    if *down_logged {
        tracing::info!(host = %inner.host, containers = n, "connected to the Docker daemon; containers re-listed");
    } else {
        tracing::info!(host = %inner.host, containers = n, "connected to the Docker daemon");
    }
    *down_logged = false;
    backoff.reset();
    let _ = inner.changes.send(MetaChange::Resynced);

    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "event".to_string(),
            EventKind::ALL.iter().map(|s| s.to_string()).collect(),
        ),
    ]);
    let opts = EventsOptions {
        since: Some(format!(
            "{}.{:09}",
            since.div_euclid(1_000_000_000),
            since.rem_euclid(1_000_000_000)
        )),
        until: None,
        filters: Some(filters),
    };
    let mut events = docker.events(Some(opts));
    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    health.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = health.tick() => {
                tokio::time::timeout(Duration::from_secs(10), docker.ping())
                    .await
                    .context("the Docker daemon stopped answering (ping timed out)")?
                    .context("the Docker daemon stopped answering")?;
            }
            ev = events.next() => match ev {
                None => anyhow::bail!("the events stream ended (is dockerd restarting?)"),
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("the events stream failed")),
                Some(Ok(msg)) => match parse_event(&msg) {
                    Some(ev) => handle(inner, &docker, ev).await,
                    None => tracing::trace!(?msg, "ignored Docker event"),
                },
            },
        }
    }
}

/// Lists every container (running or not), inspects each, and reconciles the table.
async fn relist(inner: &Arc<Inner>, docker: &Docker) -> anyhow::Result<usize> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .context("listing containers")?;
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    let inspected: Vec<_> = futures_util::stream::iter(ids.iter().cloned())
        .map(|id| {
            let docker = docker.clone();
            async move {
                match docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                {
                    Ok(c) => Ok(Some(c)),
                    // Removed between the listing and the inspect.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(None),
                    Err(e) => {
                        Err(anyhow::Error::new(e).context(format!("inspecting container {id}")))
                    }
                }
            }
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .try_collect()
        .await?;
    let mut seen = HashSet::new();
    for c in inspected.into_iter().flatten() {
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if let Some(meta) = inner.builder.build(&c) {
            seen.insert(meta.id.clone());
            inner.upsert(meta, Some(running));
        }
    }
    let gone: Vec<String> = inner
        .read()
        .records
        .keys()
        .filter(|id| !seen.contains(*id))
        .cloned()
        .collect();
    for id in gone {
        inner.remove(&id);
    }
    Ok(seen.len())
}

async fn refresh(inner: &Arc<Inner>, docker: &Docker, id: &str) -> Option<Arc<ContainerMeta>> {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(c) => {
            let running = c.state.as_ref().and_then(|s| s.running);
            inner.builder.build(&c).map(|m| inner.upsert(m, running))
        }
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "inspect failed");
            None
        }
    }
}

async fn handle(inner: &Arc<Inner>, docker: &Docker, ev: ContainerEvent) {
    tracing::debug!(container = %ev.id, event = ev.kind.as_str(), "Docker event");
    let meta = match ev.kind {
        EventKind::Create | EventKind::Start | EventKind::Rename => {
            refresh(inner, docker, &ev.id).await
        }
        EventKind::Die => {
            inner.write().running.remove(&ev.id);
            inner.read().records.get(&ev.id).cloned()
        }
        EventKind::Destroy => {
            inner.remove(&ev.id);
            None
        }
        EventKind::Oom | EventKind::Kill => inner.read().records.get(&ev.id).cloned(),
    };
    let _ = inner.changes.send(MetaChange::Event(ev, meta));
}
